"""Behaviour of the model blocks and the Table 3 variants: shapes, masking, padding exactness, gradients."""

from __future__ import annotations

import pytest
import torch

from hlp.models.attention import (
    AttentionConfig,
    Decoder,
    Encoder,
    EncoderLayer,
    MultiHeadAttention,
)
from hlp.models.highlight import (
    CrossModalFusion,
    GlobalContext,
    HighlightModel,
    ModalityStream,
    make_head,
)
from hlp.models.variants import VARIANTS, build_model

CFG = AttentionConfig(d_model=16, heads=2, layers=2, d_k=8, d_v=12, ffn_dim=32, dropout=0.1, block="paper",
                      input_dropout=0.0)  # eq. 1-3 as printed; tests/train/test_recipe.py tests the standard block
DV, DA = 10, 6
ALL_VARIANTS = ["v_only", "a_only", "av", "cr_av", "co_av"]  # the Table 3 variants; mlp: tests/train/test_recipe.py


def lengths_mask(lengths: list[int], t: int) -> torch.Tensor:
    return torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]


def padded_pair(t_short: int = 7, t_long: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two videos of different lengths padded to the longer one, with random garbage in the padding."""
    visual, audio = torch.randn(2, t_long, DV), torch.randn(2, t_long, DA)
    return visual, audio, lengths_mask([t_short, t_long], t_long)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from threads, and OpenMP spin-waits badly on a busy 2-CPU box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- blocks


def test_config_rejects_heads_not_dividing_dims() -> None:
    with pytest.raises(ValueError, match="divisible"):
        AttentionConfig(d_k=10, heads=4)


def test_attention_ignores_masked_keys_and_never_nans() -> None:
    attn = MultiHeadAttention(CFG).eval()
    q, kv = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    mask = torch.tensor([[True, True, False, False, False], [False] * 5])
    out = attn(q, kv, mask)
    assert out.shape == (2, 3, CFG.d_v)
    torch.testing.assert_close(out[:1], attn(q[:1], kv[:1, :2], mask[:1, :2]), atol=1e-6, rtol=0)
    assert torch.isfinite(out).all()  # row 1 has no valid key at all


def test_value_residual_adds_values() -> None:
    """Eq 2: softmax(QK^T/sqrt(d_k)) S + S. With a single key the softmax is 1, so out = 2 S."""
    attn = MultiHeadAttention(CFG, value_residual=True).eval()
    x = torch.randn(1, 1, 16)
    torch.testing.assert_close(attn(x, x, torch.ones(1, 1, dtype=torch.bool)), 2 * attn.s(x))


def test_encoder_layer_shape_and_padding_exactness() -> None:
    layer = EncoderLayer(CFG).eval()
    x, mask = torch.randn(2, 12, 16), lengths_mask([7, 12], 12)
    out = layer(x, mask)
    assert out.shape == (2, 12, 16) and torch.isfinite(out).all()
    torch.testing.assert_close(out[0, :7], layer(x[:1, :7], mask[:1, :7])[0], atol=1e-5, rtol=0)
    assert Encoder(CFG)(x, mask).shape == (2, 12, 16)


def test_decoder_shape() -> None:
    out = Decoder(CFG).eval()(torch.randn(2, 1, 16), torch.randn(2, 9, 16), lengths_mask([4, 9], 9))
    assert out.shape == (2, 1, 16)


@pytest.mark.parametrize("init", ["random", "mean", "none"])
def test_global_context_each_init(init: str) -> None:
    ctx = GlobalContext(CFG, init).eval()
    f, mask = torch.randn(2, 12, 16), lengths_mask([7, 12], 12)
    out = ctx(f, mask)
    assert out.shape == f.shape
    torch.testing.assert_close(out[0, :7], ctx(f[:1, :7], mask[:1, :7])[0], atol=1e-5, rtol=0)
    if init == "none":
        assert out is f and not list(ctx.parameters())
    else:
        # F̂ = F_n + G with one G per video, broadcast over time.
        g = out - f
        torch.testing.assert_close(g[1], g[1, :1].expand(12, -1))


def test_global_context_mean_offset_starts_at_zero_and_rejects_unknown_init() -> None:
    assert torch.equal(GlobalContext(CFG, "mean").query, torch.zeros(16))
    with pytest.raises(ValueError, match="global_init"):
        GlobalContext(CFG, "zeros")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["co", "cross"])
def test_cross_modal_fusion_shapes_and_padding(mode: str) -> None:
    fusion = CrossModalFusion(CFG, mode).eval()  # type: ignore[arg-type]
    f_v, f_a, mask = torch.randn(2, 12, 16), torch.randn(2, 12, 16), lengths_mask([7, 12], 12)
    til_v, til_a = fusion(f_v, f_a, mask)
    assert til_v.shape == til_a.shape == (2, 12, 16)
    alone_v, alone_a = fusion(f_v[:1, :7], f_a[:1, :7], mask[:1, :7])
    torch.testing.assert_close(til_v[0, :7], alone_v[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(til_a[0, :7], alone_a[0], atol=1e-5, rtol=0)


def test_co_occurrence_sees_own_modality_but_cross_does_not() -> None:
    """Co (eq 4-5) attends over [F_v; F_a]; cross attends over the other modality only."""
    f_v, f_a, mask = torch.randn(1, 5, 16), torch.randn(1, 5, 16), torch.ones(1, 5, dtype=torch.bool)
    shuffled = f_v.clone()
    shuffled[:, 1:] = torch.randn(1, 4, 16)  # change the visual memory but keep query row 0
    cross = CrossModalFusion(CFG, "cross").eval()
    co = CrossModalFusion(CFG, "co").eval()
    torch.testing.assert_close(cross(f_v, f_a, mask)[0][:, 0], cross(shuffled, f_a, mask)[0][:, 0])
    assert not torch.allclose(co(f_v, f_a, mask)[0][:, 0], co(shuffled, f_a, mask)[0][:, 0])


def test_head_shape() -> None:
    assert make_head(32, CFG)(torch.randn(2, 5, 32)).squeeze(-1).shape == (2, 5)


def test_fusion_requires_visual_and_audio_streams() -> None:
    stream = ModalityStream(DV, "visual", CFG, "mean")
    with pytest.raises(ValueError, match="fusion"):
        HighlightModel(CFG, {"visual": stream}, CrossModalFusion(CFG, "co"))


# ---------------------------------------------------------------- variants

HEADS = {"v_only": {"visual"}, "a_only": {"audio"}, "av": {"fused"}, "cr_av": {"fused", "visual", "audio"}}
HEADS["co_av"] = HEADS["cr_av"]


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_variant_output_shapes(variant: str) -> None:
    model = build_model(variant, DV, DA, arch=CFG).eval()
    visual, audio, mask = padded_pair()
    out = model(visual, audio, mask)
    assert set(out.logits) == HEADS[variant]
    assert all(v.shape == (2, 12) for v in out.logits.values())
    emb_dim = 32 if variant in ("cr_av", "co_av") else 16
    assert model.embedding_dim == emb_dim and out.embedding.shape == (2, 12, emb_dim)
    assert out.score.shape == (2, 12) and ((out.score >= 0) & (out.score <= 1)).all()
    assert all(torch.isfinite(t).all() for t in [out.embedding, out.score, *out.logits.values()])


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_variant_padding_exactness(variant: str) -> None:
    """A batch of videos of lengths 7 and 12 equals each video run alone, at the valid clips."""
    model = build_model(variant, DV, DA, arch=CFG).eval()
    visual, audio, mask = padded_pair()
    batch = model(visual, audio, mask)
    for row, length in enumerate([7, 12]):
        alone = model(visual[row : row + 1, :length], audio[row : row + 1, :length])
        torch.testing.assert_close(batch.embedding[row, :length], alone.embedding[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(batch.score[row, :length], alone.score[0], atol=1e-5, rtol=0)
        for name, logits in batch.logits.items():
            torch.testing.assert_close(logits[row, :length], alone.logits[name][0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", ALL_VARIANTS)
@pytest.mark.parametrize("global_init", ["random", "mean", "none"])
def test_padding_values_do_not_leak(variant: str, global_init: str) -> None:
    model = build_model(variant, DV, DA, global_init=global_init, arch=CFG).eval()
    visual, audio, mask = padded_pair()
    before = model(visual, audio, mask)
    pad = ~mask[..., None]
    after = model(visual.masked_fill(pad, 1e6), audio.masked_fill(pad, float("nan")), mask)
    assert torch.equal(before.embedding[mask], after.embedding[mask])
    assert torch.equal(before.score[mask], after.score[mask])


def test_v_only_ignores_audio_and_a_only_ignores_visual() -> None:
    visual, audio, mask = padded_pair()
    v_model = build_model("v_only", DV, DA, arch=CFG).eval()
    torch.testing.assert_close(v_model(visual, audio, mask).score, v_model(visual, torch.randn_like(audio), mask).score)
    a_model = build_model("a_only", DV, DA, arch=CFG).eval()
    torch.testing.assert_close(a_model(visual, audio, mask).score, a_model(torch.randn_like(visual), audio, mask).score)


def test_co_av_gradients_reach_every_parameter() -> None:
    from hlp.models.losses import HighlightLoss

    model = build_model("co_av", DV, DA, arch=CFG).train()
    visual, audio, mask = padded_pair()
    targets = (torch.rand(2, 12) > 0.5).float()
    HighlightLoss()(model(visual, audio, mask), targets, mask)["total"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_score_is_normalised_weighted_sum_of_head_probabilities() -> None:
    model = build_model("co_av", DV, DA, score_weights={"fused": 2.0, "visual": 1.0, "audio": 1.0}, arch=CFG).eval()
    out = model(*padded_pair())
    p = {k: v.sigmoid() for k, v in out.logits.items()}
    torch.testing.assert_close(out.score, (2 * p["fused"] + p["visual"] + p["audio"]) / 4)
    single = build_model("v_only", DV, DA, arch=CFG).eval()  # default weights, only "visual" present
    assert single.score_weights == {"visual": 1.0}
    out = single(*padded_pair())
    torch.testing.assert_close(out.score, out.logits["visual"].sigmoid())


def test_score_weights_must_cover_a_present_head() -> None:
    with pytest.raises(ValueError, match="score weights"):
        build_model("v_only", DV, DA, score_weights={"fused": 1.0}, arch=CFG)


def test_default_dimensions_follow_the_paper() -> None:
    model = build_model("co_av", DV, DA).eval()
    assert model.embedding_dim == 512
    out = model(torch.randn(1, 4, DV), torch.randn(1, 4, DA))
    assert out.embedding.shape == (1, 4, 512) and set(out.logits) == HEADS["co_av"]


def test_build_model_rejects_unknown_variant_and_lists_valid_ones() -> None:
    assert list(VARIANTS) == [*ALL_VARIANTS, "mlp"]
    with pytest.raises(ValueError, match="'nope'.*v_only, a_only, av, cr_av, co_av, mlp"):
        build_model("nope", DV, DA)
