"""Training losses of the paper: segment CE (eq 10), HPCL (eq 8), hard-pair ranking (eq 9), total (eq 11).

Every loss takes a (B,T) bool mask with True = valid clip; padded clips never contribute.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hlp.models.highlight import HighlightOutput
from hlp.models.settings import LossSettings


def _zero(like: Tensor) -> Tensor:
    """A zero that keeps the autograd graph, so `loss.backward()` works when no term qualifies."""
    return like.sum() * 0.0


def ce_loss(logits: dict[str, Tensor], targets: Tensor, mask: Tensor) -> Tensor:
    """Eq 10: BCE-with-logits per head (soft targets allowed), mean over all valid clips, summed over heads."""
    m = mask.bool()
    total = targets.new_zeros(())
    for head_logits in logits.values():
        bce = F.binary_cross_entropy_with_logits(head_logits, targets.to(head_logits.dtype), reduction="none")
        total = total + bce[m].sum() / m.sum().clamp(min=1)
    return total


def hpcl_loss(embedding: Tensor, labels: Tensor, mask: Tensor, temperature: float, normalize: bool = True) -> Tensor:
    """Eq 8, segment-wise supervised contrast within each video (batch row).

    Query i, positive j (another valid clip with the same label), negatives N_i (valid clips with
    the other label): -log(e^{s_ij} / (e^{s_ij} + sum_{k in N_i} e^{s_ik})), s = q.k / temperature.
    Eq 8 prints e^{q.k+} without tau in the denominator; that is a typo (eq 6, InfoNCE, has tau in
    every term), so tau is applied everywhere. Terms are averaged over the query's positives, then
    summed over valid clips and divided by the number of valid clips |T|: queries without positives
    add 0 but still count in |T|, as eq 8's 1/|T| is written. The result is averaged over rows with
    at least one positive pair; 0 (with graph) if none. normalize=True L2-normalises first (SupCon).
    """
    z = F.normalize(embedding, dim=-1) if normalize else embedding
    m, y = mask.bool(), labels.bool()
    sim = z @ z.transpose(1, 2) / temperature
    eye = torch.eye(sim.shape[1], dtype=torch.bool, device=sim.device)
    pair = m[:, :, None] & m[:, None, :] & ~eye
    same = y[:, :, None] == y[:, None, :]
    pos, neg = pair & same, pair & ~same
    # Most-negative finite fill instead of -inf keeps logsumexp and its gradient NaN-free.
    neg_lse = sim.masked_fill(~neg, torch.finfo(sim.dtype).min).logsumexp(dim=-1, keepdim=True)
    terms = torch.where(pos, torch.logaddexp(sim, neg_lse) - sim, torch.zeros_like(sim))
    per_query = terms.sum(-1) / pos.sum(-1).clamp(min=1)
    per_row = per_query.sum(-1) / m.sum(-1).clamp(min=1)
    rows = pos.flatten(1).any(-1)
    return per_row[rows].mean() if rows.any() else _zero(embedding)


def watershed_pairs(labels: Tensor, region: int) -> Tensor:
    """Eq 9 hard pairs of one video: (c-k, c+k) for each watershed c and k = 1..region.

    A watershed is an index c >= 1 with labels[c] != labels[c-1]. An index outside the video is
    replaced with c (the paper says so for c-k < 0; done at both ends); pairs with i == j are
    dropped and duplicates removed. Returns a sorted LongTensor (P, 2) with i < j.
    """
    if region < 0:
        raise ValueError(f"region must be >= 0, got {region}")
    n = labels.shape[0]
    c = (labels[1:] != labels[:-1]).nonzero().flatten() + 1
    k = torch.arange(1, region + 1, device=labels.device)
    c = c[:, None]
    i = torch.where(c - k < 0, c, c - k)
    j = torch.where(c + k > n - 1, c, c + k)
    pairs = torch.stack([i.flatten(), j.flatten()], dim=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return torch.unique(pairs, dim=0) if len(pairs) else pairs.new_zeros((0, 2))


def rank_loss(
    embedding: Tensor, labels: Tensor, mask: Tensor, margin: float, region: int, normalize: bool = True
) -> Tensor:
    """Eq 9 hinge max(margin - ||f_i - f_j||_2, 0) over the hard pairs of every video.

    Pairs are taken on each row's valid clips in order. Unlike eq 9's sum, the hinge is AVERAGED
    over all pairs in the batch: a sum would grow with the number of watersheds and the window
    length, so the paper's lambda_3 = 0.1 would mean something different for every video.
    Returns 0 (with graph) when there is no pair.
    """
    z = F.normalize(embedding, dim=-1) if normalize else embedding
    dists = []
    for row, (row_mask, row_labels) in enumerate(zip(mask.bool(), labels)):
        idx = row_mask.nonzero().flatten()
        pairs = idx[watershed_pairs(row_labels[idx].bool(), region)]
        dists.append((z[row, pairs[:, 0]] - z[row, pairs[:, 1]]).norm(dim=-1))
    d = torch.cat(dists) if dists else z.new_zeros(0)
    return (margin - d).clamp(min=0).mean() if len(d) else _zero(embedding)


class HighlightLoss(nn.Module):
    """Eq 11: lambda_ce * L_ce + lambda_hpcl * L_HPCL + lambda_rank * L_rank (paper: 1, 0.3, 0.1).

    Its settings, their defaults and checks are `LossSettings`.

    HPCL and rank use binary labels targets >= 0.5. A term whose lambda is 0 is not computed
    (reported as 0), so the CE-only baseline of Table 4 costs nothing extra.
    """

    def __init__(self, settings: LossSettings = LossSettings()) -> None:
        super().__init__()
        self.settings = settings
        self.lambda_ce, self.lambda_hpcl, self.lambda_rank = settings.lambda_ce, settings.lambda_hpcl, settings.lambda_rank
        self.temperature, self.margin, self.region = settings.temperature, settings.margin, settings.region
        self.normalize = settings.normalize

    def forward(self, output: HighlightOutput, targets: Tensor, mask: Tensor,
                labels: Tensor | None = None) -> dict[str, Tensor]:
        """Returns {"total", "ce", "hpcl", "rank"} scalars; `labels` (binary) default to targets >= 0.5."""
        zero = targets.new_zeros(())
        labels = targets >= 0.5 if labels is None else labels.bool()
        emb = output.embedding
        ce = ce_loss(output.logits, targets, mask) if self.lambda_ce else zero
        hpcl = hpcl_loss(emb, labels, mask, self.temperature, self.normalize) if self.lambda_hpcl else zero
        rank = rank_loss(emb, labels, mask, self.margin, self.region, self.normalize) if self.lambda_rank else zero
        total = self.lambda_ce * ce + self.lambda_hpcl * hpcl + self.lambda_rank * rank
        return {"total": total, "ce": ce, "hpcl": hpcl, "rank": rank}
