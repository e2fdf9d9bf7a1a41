"""Architecture variants of the paper's Table 3, each a plain builder with one shared signature.

The block sizes travel as one typed `AttentionConfig` (`hlp.models.settings`), so every variant is
built from the same dimensions and an ablation changes the wiring only.
"""

from __future__ import annotations

from collections.abc import Callable

from hlp.models.highlight import (
    ClipMLP,
    CrossModalFusion,
    HighlightModel,
    InputPrep,
    ModalityStream,
)
from hlp.models.settings import (
    DEFAULT_GLOBAL_INIT,
    AttentionConfig,
    GlobalInit,
    InputNorm,
)


def input_prep(visual_dim: int, audio_dim: int, arch: AttentionConfig, normalize: InputNorm) -> InputPrep | None:
    """None when it would be the identity, so models of the literal reading keep their state_dict keys."""
    if normalize == "none" and arch.input_dropout == 0:
        return None
    return InputPrep(visual_dim, audio_dim, normalize, arch.input_dropout)


def mlp(visual_dim: int, audio_dim: int, arch: AttentionConfig = AttentionConfig(), *,
        global_init: GlobalInit = DEFAULT_GLOBAL_INIT, score_weights: dict[str, float] | None = None,
           inputs: InputPrep | None = None) -> ClipMLP:
    """The per-clip MLP baseline (no attention, no order): global_init and score_weights do not apply."""
    return ClipMLP(visual_dim, audio_dim, arch, inputs)


def _two_streams(
    visual_dim: int, audio_dim: int, cfg: AttentionConfig, global_init: GlobalInit
) -> dict[str, ModalityStream]:
    return {
        "visual": ModalityStream(visual_dim, "visual", cfg, global_init),
        "audio": ModalityStream(audio_dim, "audio", cfg, global_init),
    }


def v_only(visual_dim: int, audio_dim: int, arch: AttentionConfig = AttentionConfig(), *,
           global_init: GlobalInit = DEFAULT_GLOBAL_INIT, score_weights: dict[str, float] | None = None,
           inputs: InputPrep | None = None) -> HighlightModel:
    """V Only: visual stream alone, head "visual", embedding F̂_v; audio is never read."""
    stream = ModalityStream(visual_dim, "visual", arch, global_init)
    return HighlightModel(arch, {"visual": stream}, score_weights=score_weights,
                          inputs=inputs)


def a_only(visual_dim: int, audio_dim: int, arch: AttentionConfig = AttentionConfig(), *,
           global_init: GlobalInit = DEFAULT_GLOBAL_INIT, score_weights: dict[str, float] | None = None,
           inputs: InputPrep | None = None) -> HighlightModel:
    """A Only: audio stream alone, head "audio", embedding F̂_a; visual is never read."""
    stream = ModalityStream(audio_dim, "audio", arch, global_init)
    return HighlightModel(arch, {"audio": stream}, score_weights=score_weights,
                          inputs=inputs)


def av(visual_dim: int, audio_dim: int, arch: AttentionConfig = AttentionConfig(), *,
       global_init: GlobalInit = DEFAULT_GLOBAL_INIT, score_weights: dict[str, float] | None = None,
           inputs: InputPrep | None = None) -> HighlightModel:
    """AV: per-clip concat of visual and audio, one projection and one stream, head "fused"."""
    stream = ModalityStream(visual_dim + audio_dim, "concat", arch, global_init)
    return HighlightModel(arch, {"fused": stream}, score_weights=score_weights,
                          inputs=inputs)


def cr_av(visual_dim: int, audio_dim: int, arch: AttentionConfig = AttentionConfig(), *,
          global_init: GlobalInit = DEFAULT_GLOBAL_INIT, score_weights: dict[str, float] | None = None,
           inputs: InputPrep | None = None) -> HighlightModel:
    """CR-AV: each modality's F_n attends over the other's F_n only (Joint-VA style cross-attention)."""
    streams = _two_streams(visual_dim, audio_dim, arch, global_init)
    return HighlightModel(arch, streams, CrossModalFusion(arch, "cross"), score_weights,
                          inputs)


def co_av(visual_dim: int, audio_dim: int, arch: AttentionConfig = AttentionConfig(), *,
          global_init: GlobalInit = DEFAULT_GLOBAL_INIT, score_weights: dict[str, float] | None = None,
           inputs: InputPrep | None = None) -> HighlightModel:
    """CO-AV, the full model: each modality's F_n attends over the joint [F_v; F_a] (eq 4-5)."""
    streams = _two_streams(visual_dim, audio_dim, arch, global_init)
    return HighlightModel(arch, streams, CrossModalFusion(arch, "co"), score_weights,
                          inputs)


VARIANTS: dict[str, Callable[..., HighlightModel]] = {
    "v_only": v_only,
    "a_only": a_only,
    "av": av,
    "cr_av": cr_av,
    "co_av": co_av,
    "mlp": mlp,
}


def build_model(variant: str, visual_dim: int, audio_dim: int, arch: AttentionConfig = AttentionConfig(),
                normalize: InputNorm = "none", **kwargs: object) -> HighlightModel:
    """Build a variant by name with its input normalisation and dropout; kwargs are the builders'
    keyword arguments."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown model variant {variant!r}; valid variants: {', '.join(VARIANTS)}")
    return VARIANTS[variant](visual_dim, audio_dim, arch, inputs=input_prep(visual_dim, audio_dim, arch, normalize),
                             **kwargs)
