"""Loss values checked against arithmetic done by hand on tiny examples (paper eq 8-11)."""

from __future__ import annotations

import math

import pytest
import torch

from hlp.models.highlight import HighlightOutput
from hlp.models.losses import (
    HighlightLoss,
    ce_loss,
    hpcl_loss,
    rank_loss,
    watershed_pairs,
)
from hlp.models.settings import LossSettings

R = 1 / math.sqrt(2)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from threads, and OpenMP spin-waits badly on a busy 2-CPU box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def bce(x: float, y: float) -> float:
    p = 1 / (1 + math.exp(-x))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def nce(pos: float, negs: list[float]) -> float:
    """-log(e^pos / (e^pos + sum e^neg)) with the similarities already divided by tau."""
    return -math.log(math.exp(pos) / (math.exp(pos) + sum(math.exp(n) for n in negs)))


def t(rows: list) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# ---------------------------------------------------------------- CE (eq 10)


def test_ce_soft_targets_masked_mean_summed_over_heads() -> None:
    logits = {"a": t([[0.0, 2.0, -1.0]]), "b": t([[1.0, -0.5, 3.0]])}
    targets, mask = t([[0.5, 1.0, 0.2]]), torch.tensor([[True, True, False]])
    # bce(0, 0.5) = log 2; bce(2, 1) = log(1 + e^-2)
    head_a = (math.log(2) + math.log(1 + math.exp(-2))) / 2
    head_b = (bce(1.0, 0.5) + bce(-0.5, 1.0)) / 2
    assert ce_loss(logits, targets, mask).item() == pytest.approx(head_a + head_b, rel=1e-6)


def test_ce_mean_is_over_all_valid_clips_and_ignores_padding() -> None:
    logits = {"a": t([[0.0, 2.0, -1.0], [1.0, 5.0, 5.0]])}
    targets = t([[0.5, 1.0, 0.2], [0.0, 0.3, 0.3]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    expected = (math.log(2) + math.log(1 + math.exp(-2)) + bce(1.0, 0.0)) / 3
    assert ce_loss(logits, targets, mask).item() == pytest.approx(expected, rel=1e-6)
    garbage = {"a": logits["a"].masked_fill(~mask, -40.0)}
    assert ce_loss(garbage, targets.masked_fill(~mask, 1.0), mask).item() == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- HPCL (eq 8)

# e0=(1,0), e1=(0,1), e2=(1,1), e3=(-1,0); labels 1,1,1,0; segment 3 has no positive.
EMB_RAW = t([[[1, 0], [0, 1], [1, 1], [-1, 0]]])
LAB_RAW = torch.tensor([[1, 1, 1, 0]])


def hpcl_raw_by_hand(tau: float) -> float:
    q0 = (nce(0 / tau, [-1 / tau]) + nce(1 / tau, [-1 / tau])) / 2  # pos e1, e2; neg e3
    q1 = (nce(0 / tau, [0 / tau]) + nce(1 / tau, [0 / tau])) / 2  # pos e0, e2; neg e3
    q2 = (nce(1 / tau, [-1 / tau]) + nce(1 / tau, [-1 / tau])) / 2  # pos e0, e1; neg e3
    return (q0 + q1 + q2 + 0.0) / 4  # q3 has no positive: contributes 0 but counts in |T|


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
def test_hpcl_unnormalised_by_hand(tau: float) -> None:
    got = hpcl_loss(EMB_RAW, LAB_RAW, torch.ones(1, 4, dtype=torch.bool), tau, normalize=False)
    assert got.item() == pytest.approx(hpcl_raw_by_hand(tau), rel=1e-5)


def test_hpcl_applies_tau_in_every_term_not_the_printed_typo() -> None:
    """Eq 8 prints e^{q.k+} (no tau) in the denominator; with q.k+ = 1 and tau = 0.5 the two differ."""
    tau = 0.5
    # e0 = e1 = (1,0) positives of each other, e2 = (-1,0) their negative; e2 has no positive.
    emb, lab = t([[[1, 0], [1, 0], [-1, 0]]]), torch.tensor([[1, 1, 0]])
    got = hpcl_loss(emb, lab, torch.ones(1, 3, dtype=torch.bool), tau, normalize=False).item()
    by_hand = 2 * nce(1 / tau, [-1 / tau]) / 3
    typo_total = 2 * -math.log(math.exp(1 / tau) / (math.exp(1) + math.exp(-1 / tau))) / 3
    assert got == pytest.approx(by_hand, rel=1e-5) and got != pytest.approx(typo_total, rel=1e-3)


def test_hpcl_normalised_by_hand() -> None:
    emb = t([[[3, 0], [0, 2], [1, 1], [-2, 0]]])  # unit: (1,0), (0,1), (r,r), (-1,0)
    lab, tau = torch.tensor([[1, 1, 0, 0]]), 0.1
    q0 = nce(0 / tau, [R / tau, -1 / tau])
    q1 = nce(0 / tau, [R / tau, 0 / tau])
    q2 = nce(-R / tau, [R / tau, R / tau])
    q3 = nce(-R / tau, [-1 / tau, 0 / tau])
    got = hpcl_loss(emb, lab, torch.ones(1, 4, dtype=torch.bool), tau, normalize=True)
    assert got.item() == pytest.approx((q0 + q1 + q2 + q3) / 4, rel=1e-5)


def test_hpcl_padding_and_rows_without_positive_pairs() -> None:
    emb = torch.cat([EMB_RAW, torch.randn(1, 2, 2)], dim=1)  # two padded clips
    lab = torch.tensor([[1, 1, 1, 0, 1, 0]])
    mask = torch.tensor([[True] * 4 + [False] * 2])
    assert hpcl_loss(emb, lab, mask, 0.5, normalize=False).item() == pytest.approx(hpcl_raw_by_hand(0.5), rel=1e-5)
    # Row 1 (labels 1,0 + padding) has no positive pair: it is left out of the batch mean.
    batch_emb = torch.cat([emb, torch.randn(1, 6, 2)])
    batch_lab = torch.cat([lab, torch.tensor([[1, 0, 1, 1, 1, 1]])])
    batch_mask = torch.cat([mask, torch.tensor([[True, True] + [False] * 4])])
    got = hpcl_loss(batch_emb, batch_lab, batch_mask, 0.5, normalize=False)
    assert got.item() == pytest.approx(hpcl_raw_by_hand(0.5), rel=1e-5)


def test_hpcl_single_class_row_counts_as_zero() -> None:
    emb = torch.cat([EMB_RAW, t([[[1, 2], [3, 4], [5, 6], [7, 8]]])])
    lab = torch.cat([LAB_RAW, torch.tensor([[0, 0, 0, 0]])])  # positives but no negatives: -log 1 = 0
    got = hpcl_loss(emb, lab, torch.ones(2, 4, dtype=torch.bool), 0.5, normalize=False)
    assert got.item() == pytest.approx(hpcl_raw_by_hand(0.5) / 2, rel=1e-5)


def test_hpcl_without_positive_pairs_is_zero_with_graph() -> None:
    emb = torch.randn(2, 3, 4, requires_grad=True)
    lab = torch.tensor([[1, 0, 1], [0, 1, 1]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    loss = hpcl_loss(emb, lab, mask, 0.1)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(emb.grad, torch.zeros_like(emb))


def test_hpcl_gradient_is_finite_for_extreme_similarities() -> None:
    emb = (torch.randn(2, 8, 4) * 50).requires_grad_()
    lab = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 0, 0, 1, 1]])
    hpcl_loss(emb, lab, torch.ones(2, 8, dtype=torch.bool), 0.01, normalize=False).backward()
    assert torch.isfinite(emb.grad).all()


# ---------------------------------------------------------------- hard pairs (eq 9)


def pairs(labels: list[int], region: int) -> list[list[int]]:
    return watershed_pairs(torch.tensor(labels, dtype=torch.bool), region).tolist()


def test_watershed_pairs_interior() -> None:
    # watersheds at 2 and 5
    assert pairs([0, 0, 1, 1, 1, 0, 0, 0], 1) == [[1, 3], [4, 6]]
    assert pairs([0, 0, 0, 1, 1, 1, 1], 3) == [[0, 6], [1, 5], [2, 4]]


def test_watershed_pairs_clamp_at_start() -> None:
    # c=1: (0,2); (-1->1, 3) = (1,3); (-2->1, 4) = (1,4)
    assert pairs([1, 0, 0, 0, 0, 0], 3) == [[0, 2], [1, 3], [1, 4]]


def test_watershed_pairs_clamp_at_end() -> None:
    # c=5, len 6: (4, 6->5), (3, 7->5), (2, 8->5)
    assert pairs([0, 0, 0, 0, 0, 1], 3) == [[2, 5], [3, 5], [4, 5]]


def test_watershed_pairs_region_larger_than_video_and_dedup() -> None:
    # c=1, len 2: k=1 gives (0, 2->1); k>=2 gives (1,1), dropped.
    assert pairs([0, 1], 5) == [[0, 1]]
    # c=2, len 4: (1,3), (0, 4->2), (-1->2, 5->2) dropped.
    assert pairs([0, 0, 1, 1], 3) == [[0, 2], [1, 3]]
    # c=1: (0,2) and (1,1) dropped; c=2: (1, 3->2) and (0, 4->2)=(0,2) duplicate.
    assert pairs([0, 1, 0], 2) == [[0, 2], [1, 2]]


def test_watershed_pairs_without_watershed_or_region() -> None:
    assert watershed_pairs(torch.ones(5, dtype=torch.bool), 3).shape == (0, 2)
    assert watershed_pairs(torch.tensor([True]), 3).shape == (0, 2)
    assert watershed_pairs(torch.tensor([True, False]), 0).shape == (0, 2)
    assert watershed_pairs(torch.tensor([True, False]), 1).dtype == torch.long


def test_rank_loss_unnormalised_by_hand() -> None:
    emb = t([[[0, 0], [0.3, 0], [0.3, 0.4], [1.3, 0]]])
    lab, mask = torch.tensor([[0, 0, 1, 1]]), torch.ones(1, 4, dtype=torch.bool)
    # region 2 -> pairs (0,2): d = 0.5 -> hinge 0.2; (1,3): d = 1.0 -> hinge 0
    got = rank_loss(emb, lab, mask, margin=0.7, region=2, normalize=False)
    assert got.item() == pytest.approx((0.2 + 0.0) / 2, rel=1e-5)


def test_rank_loss_normalised_by_hand() -> None:
    emb = t([[[2, 0], [1, 1], [0, 3], [5, 0]]])  # unit: (1,0), (r,r), (0,1), (1,0)
    lab, mask = torch.tensor([[0, 0, 1, 1]]), torch.ones(1, 4, dtype=torch.bool)
    d02, d13 = math.sqrt(2), math.sqrt((1 - R) ** 2 + R**2)
    got = rank_loss(emb, lab, mask, margin=1.5, region=2, normalize=True)
    assert got.item() == pytest.approx(((1.5 - d02) + (1.5 - d13)) / 2, rel=1e-5)


def test_rank_loss_averages_over_all_pairs_and_ignores_padding() -> None:
    row0 = t([[0, 0], [0.3, 0], [0.3, 0.4], [1.3, 0]])
    row1 = torch.cat([t([[0, 0], [0, 0.1]]), torch.randn(2, 2)])  # 2 valid clips, labels 1,0
    emb = torch.stack([row0, row1])
    lab = torch.tensor([[0, 0, 1, 1], [1, 0, 1, 1]])
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    # pairs: row 0 -> 0.2, 0.0 ; row 1 -> (0,1) d=0.1 -> 0.6 ; mean over the 3 pairs
    got = rank_loss(emb, lab, mask, margin=0.7, region=2, normalize=False)
    assert got.item() == pytest.approx((0.2 + 0.0 + 0.6) / 3, rel=1e-5)


def test_rank_loss_padding_labels_create_no_watershed() -> None:
    emb = torch.randn(1, 5, 3, requires_grad=True)
    lab, mask = torch.tensor([[0, 0, 0, 1, 1]]), torch.tensor([[True, True, True, False, False]])
    loss = rank_loss(emb, lab, mask, margin=0.7, region=3)
    assert loss.item() == 0.0 and loss.requires_grad


# ---------------------------------------------------------------- total (eq 11)


def make_output() -> tuple[HighlightOutput, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    logits = {"fused": torch.randn(2, 5), "visual": torch.randn(2, 5)}
    output = HighlightOutput(logits=logits, embedding=torch.randn(2, 5, 4), score=torch.rand(2, 5))
    targets = t([[0.9, 0.2, 0.6, 0.4, 0.7], [0.1, 0.8, 0.8, 0.3, 0.0]])
    mask = torch.tensor([[True] * 5, [True] * 4 + [False]])
    return output, targets, mask


def test_highlight_loss_weights_terms_and_binarises_targets() -> None:
    output, targets, mask = make_output()
    got = HighlightLoss(LossSettings(lambda_ce=1.0, lambda_hpcl=0.3, lambda_rank=0.1, temperature=0.2, margin=0.9, region=2))(
        output, targets, mask
    )
    labels = t([[1, 0, 1, 0, 1], [0, 1, 1, 0, 0]]).bool()
    ce = ce_loss(output.logits, targets, mask)
    hpcl = hpcl_loss(output.embedding, labels, mask, 0.2)
    rank = rank_loss(output.embedding, labels, mask, 0.9, 2)
    torch.testing.assert_close(got["ce"], ce)
    torch.testing.assert_close(got["hpcl"], hpcl)
    torch.testing.assert_close(got["rank"], rank)
    torch.testing.assert_close(got["total"], ce + 0.3 * hpcl + 0.1 * rank)
    assert hpcl > 0 and rank > 0


def test_highlight_loss_skips_terms_with_zero_lambda() -> None:
    output, targets, mask = make_output()
    # An unusable embedding proves HPCL and rank are never computed.
    broken = HighlightOutput(logits=output.logits, embedding=torch.empty(0), score=output.score)
    got = HighlightLoss(LossSettings(lambda_hpcl=0.0, lambda_rank=0.0))(broken, targets, mask)
    assert got["hpcl"].item() == 0.0 and got["rank"].item() == 0.0
    torch.testing.assert_close(got["total"], ce_loss(output.logits, targets, mask))


def test_highlight_loss_defaults_follow_the_paper_and_validate() -> None:
    loss = HighlightLoss()
    assert (loss.lambda_ce, loss.lambda_hpcl, loss.lambda_rank, loss.margin, loss.region) == (1.0, 0.3, 0.1, 0.7, 3)
    for bad in ({"temperature": 0.0}, {"margin": -0.1}, {"region": 0}, {"lambda_rank": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):  # each check names its setting
            LossSettings(**bad)
