"""Architecture variants of the paper's Table 3, each a plain builder with one shared signature."""

from __future__ import annotations

from collections.abc import Callable

from hlp.models.attention import AttentionConfig
from hlp.models.highlight import CrossModalFusion, GlobalInit, HighlightModel, ModalityStream


def _config(
    d_model: int, heads: int, layers: int, d_k: int, d_v: int, ffn_dim: int, dropout: float
) -> AttentionConfig:
    return AttentionConfig(d_model, heads, layers, d_k, d_v, ffn_dim, dropout)


def _two_streams(
    visual_dim: int, audio_dim: int, cfg: AttentionConfig, global_init: GlobalInit
) -> dict[str, ModalityStream]:
    return {
        "visual": ModalityStream(visual_dim, "visual", cfg, global_init),
        "audio": ModalityStream(audio_dim, "audio", cfg, global_init),
    }


def v_only(
    visual_dim: int, audio_dim: int, *, d_model: int = 256, heads: int = 8, layers: int = 2, d_k: int = 512,
    d_v: int = 512, ffn_dim: int = 1024, dropout: float = 0.5, global_init: GlobalInit = "mean",
    score_weights: dict[str, float] | None = None,
) -> HighlightModel:
    """V Only: visual stream alone, head "visual", embedding F̂_v; audio is never read."""
    cfg = _config(d_model, heads, layers, d_k, d_v, ffn_dim, dropout)
    stream = ModalityStream(visual_dim, "visual", cfg, global_init)
    return HighlightModel(cfg, {"visual": stream}, score_weights=score_weights)


def a_only(
    visual_dim: int, audio_dim: int, *, d_model: int = 256, heads: int = 8, layers: int = 2, d_k: int = 512,
    d_v: int = 512, ffn_dim: int = 1024, dropout: float = 0.5, global_init: GlobalInit = "mean",
    score_weights: dict[str, float] | None = None,
) -> HighlightModel:
    """A Only: audio stream alone, head "audio", embedding F̂_a; visual is never read."""
    cfg = _config(d_model, heads, layers, d_k, d_v, ffn_dim, dropout)
    stream = ModalityStream(audio_dim, "audio", cfg, global_init)
    return HighlightModel(cfg, {"audio": stream}, score_weights=score_weights)


def av(
    visual_dim: int, audio_dim: int, *, d_model: int = 256, heads: int = 8, layers: int = 2, d_k: int = 512,
    d_v: int = 512, ffn_dim: int = 1024, dropout: float = 0.5, global_init: GlobalInit = "mean",
    score_weights: dict[str, float] | None = None,
) -> HighlightModel:
    """AV: per-clip concat of visual and audio, one projection and one stream, head "fused"."""
    cfg = _config(d_model, heads, layers, d_k, d_v, ffn_dim, dropout)
    stream = ModalityStream(visual_dim + audio_dim, "concat", cfg, global_init)
    return HighlightModel(cfg, {"fused": stream}, score_weights=score_weights)


def cr_av(
    visual_dim: int, audio_dim: int, *, d_model: int = 256, heads: int = 8, layers: int = 2, d_k: int = 512,
    d_v: int = 512, ffn_dim: int = 1024, dropout: float = 0.5, global_init: GlobalInit = "mean",
    score_weights: dict[str, float] | None = None,
) -> HighlightModel:
    """CR-AV: each modality's F_n attends over the other's F_n only (Joint-VA style cross-attention)."""
    cfg = _config(d_model, heads, layers, d_k, d_v, ffn_dim, dropout)
    streams = _two_streams(visual_dim, audio_dim, cfg, global_init)
    return HighlightModel(cfg, streams, CrossModalFusion(cfg, "cross"), score_weights)


def co_av(
    visual_dim: int, audio_dim: int, *, d_model: int = 256, heads: int = 8, layers: int = 2, d_k: int = 512,
    d_v: int = 512, ffn_dim: int = 1024, dropout: float = 0.5, global_init: GlobalInit = "mean",
    score_weights: dict[str, float] | None = None,
) -> HighlightModel:
    """CO-AV, the full model: each modality's F_n attends over the joint [F_v; F_a] (eq 4-5)."""
    cfg = _config(d_model, heads, layers, d_k, d_v, ffn_dim, dropout)
    streams = _two_streams(visual_dim, audio_dim, cfg, global_init)
    return HighlightModel(cfg, streams, CrossModalFusion(cfg, "co"), score_weights)


VARIANTS: dict[str, Callable[..., HighlightModel]] = {
    "v_only": v_only,
    "a_only": a_only,
    "av": av,
    "cr_av": cr_av,
    "co_av": co_av,
}


def build_model(variant: str, visual_dim: int, audio_dim: int, **kwargs: object) -> HighlightModel:
    """Build a Table 3 variant by name; kwargs are the builders' keyword arguments."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown model variant {variant!r}; valid variants: {', '.join(VARIANTS)}")
    return VARIANTS[variant](visual_dim, audio_dim, **kwargs)
