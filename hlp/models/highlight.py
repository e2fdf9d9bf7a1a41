"""The co-occurrence highlight model (paper 3.2-3.4, eq 7) composed from attention blocks.

Outputs at padded clips are finite but meaningless; consumers must apply the mask.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from hlp.models.attention import Decoder, Encoder
from hlp.models.settings import (
    DEFAULT_GLOBAL_INIT,
    AttentionConfig,
    GlobalInit,
    InputNorm,
)

MAX_LEARNED_POSITIONS = 1024  # clips; later positions share the last embedding (~34 min of 2 s clips)
Source = Literal["visual", "audio", "concat"]
FusionMode = Literal["co", "cross"]
DEFAULT_SCORE_WEIGHTS: dict[str, float] = {"fused": 1.0, "visual": 1.0, "audio": 1.0}


@dataclass
class HighlightOutput:
    """Per-head logits (B,T), segment embedding (B,T,E) for HPCL (eq 7), fused score (B,T) in [0,1]."""

    logits: dict[str, Tensor]
    embedding: Tensor
    score: Tensor


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x (B,T,d) over valid clips -> (B,1,d); padding never enters the sum."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1.0)


class GlobalContext(nn.Module):
    """Global decoder of 3.2: a query G cross-attends over F_n and F̂ = F_n + G (paper Table 5).

    init="random": G_init is a learned vector (DETR-style learned query).
    init="mean": G_init = masked mean of F_n + a learned offset (starts at zero).
    init="none": no decoder, F̂ = F_n.
    """

    def __init__(self, cfg: AttentionConfig, init: GlobalInit = DEFAULT_GLOBAL_INIT) -> None:
        super().__init__()
        if init not in ("random", "mean", "none"):
            raise ValueError(f"global_init must be 'random', 'mean' or 'none', got {init!r}")
        self.init = init
        if init != "none":
            # Unit-scale random init matches the LayerNorm-ed segment features it is compared with.
            start = torch.randn(cfg.d_model) if init == "random" else torch.zeros(cfg.d_model)
            self.query = nn.Parameter(start)
            self.decoder = Decoder(cfg)

    def forward(self, f: Tensor, mask: Tensor) -> Tensor:
        """f (B,T,d) = F_n -> F̂ (B,T,d)."""
        if self.init == "none":
            return f
        g = self.query.expand(f.shape[0], 1, -1)
        if self.init == "mean":
            g = g + masked_mean(f, mask)
        return f + self.decoder(g, f, mask)


def sine_positions(length: int, dim: int, device: torch.device) -> Tensor:
    """The sinusoidal encoding of the standard transformer [53], (length, dim)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe


class PositionalEncoding(nn.Module):
    """Clip order for the otherwise permutation-invariant encoders: none, sine, or learned (UMT)."""

    def __init__(self, kind: str, dim: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "learned":
            self.table = nn.Parameter(torch.randn(MAX_LEARNED_POSITIONS, dim) * 0.02)

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "none":
            return x
        length = x.shape[1]
        if self.kind == "sine":
            return x + sine_positions(length, x.shape[-1], x.device)
        idx = torch.arange(length, device=x.device).clamp(max=MAX_LEARNED_POSITIONS - 1)
        return x + self.table[idx]


class ModalityStream(nn.Module):
    """Input projection (3.1) + positions + intra-modality encoder (eq 1-3) + global context; returns (F_n, F̂)."""

    def __init__(self, in_dim: int, source: Source, cfg: AttentionConfig, global_init: GlobalInit) -> None:
        super().__init__()
        self.source = source
        # The standard block normalises the projection so that the features and the positional
        # encoding (unit scale) add on equal terms; L2-normalised inputs would otherwise project to
        # ~0.02 and drown in the positions.
        linear = nn.Linear(in_dim, cfg.d_model)
        self.project = nn.Sequential(linear, nn.LayerNorm(cfg.d_model)) if cfg.block == "standard" else linear
        self.positions = PositionalEncoding(cfg.positional, cfg.d_model)
        self.encoder = Encoder(cfg)
        self.context = GlobalContext(cfg, global_init)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        f = self.encoder(self.positions(self.project(x)), mask)
        return f, self.context(f, mask)


class FeatureNorm(nn.Module):
    """Per-clip input normalisation: L2 (lighthouse, QD-DETR, UniVTG) or standardisation.

    The statistics are buffers, set from the training videos by `fit_statistics`, so a saved
    model carries them and scores a new video exactly as it was trained.
    """

    def __init__(self, dim: int, mode: InputNorm = "none") -> None:
        super().__init__()
        if mode not in ("none", "l2", "standardize"):
            raise ValueError(f"normalize must be 'none', 'l2' or 'standardize', got {mode!r}")
        self.mode = mode
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit_statistics(self, clips: Tensor) -> None:
        """clips (N, dim): every clip of the training videos."""
        self.mean.copy_(clips.mean(0))
        self.std.copy_(clips.std(0).clamp(min=1e-6))

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "l2":
            return nn.functional.normalize(x, dim=-1)
        if self.mode == "standardize":
            return (x - self.mean) / self.std
        return x


class InputPrep(nn.Module):
    """Normalise each modality, then drop input features (UMT: 0.5 on inputs, 0.1 inside)."""

    def __init__(self, visual_dim: int, audio_dim: int, normalize: InputNorm, dropout: float) -> None:
        super().__init__()
        self.visual, self.audio = FeatureNorm(visual_dim, normalize), FeatureNorm(audio_dim, normalize)
        self.dropout = nn.Dropout(dropout)

    def forward(self, visual: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        return self.dropout(self.visual(visual)), self.dropout(self.audio(audio))


class CrossModalFusion(nn.Module):
    """Inter-modality decoders, one per modality, queried by that modality's F_n.

    mode="co": memory is the 2T-long [F_v; F_a] (co-occurrence encoding, eq 4-5).
    mode="cross": memory is the other modality only (Joint-VA style, CR-AV of Table 3).
    """

    def __init__(self, cfg: AttentionConfig, mode: FusionMode) -> None:
        super().__init__()
        if mode not in ("co", "cross"):
            raise ValueError(f"fusion mode must be 'co' or 'cross', got {mode!r}")
        self.mode = mode
        self.visual = Decoder(cfg)
        self.audio = Decoder(cfg)

    def forward(self, f_v: Tensor, f_a: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """F_v_n, F_a_n (B,T,d), mask (B,T) -> (F̃_v, F̃_a)."""
        if self.mode == "cross":
            return self.visual(f_v, f_a, mask), self.audio(f_a, f_v, mask)
        joint, joint_mask = torch.cat([f_v, f_a], dim=1), torch.cat([mask, mask], dim=1)
        return self.visual(f_v, joint, joint_mask), self.audio(f_a, joint, joint_mask)


def make_head(in_dim: int, cfg: AttentionConfig) -> nn.Sequential:
    """Highlight classifier of 3.4: Linear -> ReLU -> Dropout -> Linear, one logit per clip."""
    return nn.Sequential(
        nn.Linear(in_dim, cfg.d_model), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.d_model, 1)
    )


def select_input(source: Source, visual: Tensor, audio: Tensor) -> Tensor:
    """A stream reads only its own modality, so single-modality variants never touch the other one."""
    if source == "visual":
        return visual
    if source == "audio":
        return audio
    return torch.cat([visual, audio], dim=-1)


def normalise_weights(weights: Mapping[str, float] | None, heads: list[str]) -> dict[str, float]:
    """Score weights restricted to the heads present and rescaled to sum to 1 (missing = 0)."""
    raw = {h: float((DEFAULT_SCORE_WEIGHTS if weights is None else weights).get(h, 0.0)) for h in heads}
    total = sum(raw.values())
    if any(w < 0 for w in raw.values()) or total <= 0:
        raise ValueError(f"score weights for heads {heads} must be >= 0 with a positive sum, got {raw}")
    return {h: w / total for h, w in raw.items()}


class HighlightModel(nn.Module):
    """Streams -> optional cross-modal fusion -> heads -> weighted score (paper Fig. 2).

    With fusion (needs streams "visual" and "audio"): heads "fused" on concat(F̃_v, F̃_a),
    "visual" on F̂_v, "audio" on F̂_a, and embedding concat(F̂_v + F̃_v, F̂_a + F̃_a) (eq 7).
    Without fusion: one head per stream on its F̂, embedding = concat of the F̂s.
    """

    def __init__(
        self,
        cfg: AttentionConfig,
        streams: Mapping[str, ModalityStream],
        fusion: CrossModalFusion | None = None,
        score_weights: Mapping[str, float] | None = None,
        inputs: InputPrep | None = None,
    ) -> None:
        super().__init__()
        self.inputs = inputs
        if fusion is not None and set(streams) != {"visual", "audio"}:
            raise ValueError(f"fusion needs exactly the streams 'visual' and 'audio', got {sorted(streams)}")
        self.streams = nn.ModuleDict(streams)
        self.fusion = fusion
        in_dims = {"fused": 2 * cfg.d_model} if fusion is not None else {}
        in_dims |= {name: cfg.d_model for name in streams}
        self.heads = nn.ModuleDict({name: make_head(d, cfg) for name, d in in_dims.items()})
        self.score_weights = normalise_weights(score_weights, list(self.heads))
        self.embedding_dim = cfg.d_model * len(streams)

    def _features(self, visual: Tensor, audio: Tensor, mask: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        # Zero padded clips so that even non-finite padding cannot reach valid outputs.
        pad = ~mask.unsqueeze(-1)
        return {
            name: stream(select_input(stream.source, visual, audio).masked_fill(pad, 0.0), mask)
            for name, stream in self.streams.items()
        }

    def forward(self, visual: Tensor, audio: Tensor, mask: Tensor | None = None) -> HighlightOutput:
        """visual (B,T,Dv), audio (B,T,Da), mask (B,T) bool True=valid (None: all valid)."""
        if mask is None:
            mask = torch.ones(visual.shape[:2], dtype=torch.bool, device=visual.device)
        mask = mask.bool()
        if self.inputs is not None:
            visual, audio = self.inputs(visual, audio)
        feats = self._features(visual, audio, mask)
        head_inputs = {name: hat for name, (_, hat) in feats.items()}
        if self.fusion is None:
            embedding = torch.cat(list(head_inputs.values()), dim=-1)
        else:
            (f_v, hat_v), (f_a, hat_a) = feats["visual"], feats["audio"]
            til_v, til_a = self.fusion(f_v, f_a, mask)
            head_inputs["fused"] = torch.cat([til_v, til_a], dim=-1)
            embedding = torch.cat([hat_v + til_v, hat_a + til_a], dim=-1)
        logits = {name: head(head_inputs[name]).squeeze(-1) for name, head in self.heads.items()}
        score = sum(w * logits[h].sigmoid() for h, w in self.score_weights.items())
        return HighlightOutput(logits=logits, embedding=embedding, score=score)


class ClipMLP(nn.Module):
    """The floor every results table shows: a per-clip MLP on [visual; audio], no context at all.

    Same inputs, output contract and losses as `HighlightModel`, so it trains under the same
    recipe; its embedding is the last hidden layer.
    """

    def __init__(self, visual_dim: int, audio_dim: int, cfg: AttentionConfig, inputs: InputPrep | None = None) -> None:
        super().__init__()
        self.inputs = inputs
        self.body = nn.Sequential(
            nn.Linear(visual_dim + audio_dim, cfg.d_model), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.d_model, cfg.d_model), nn.ReLU(), nn.Dropout(cfg.dropout),
        )
        self.head = nn.Linear(cfg.d_model, 1)
        self.embedding_dim = cfg.d_model

    def forward(self, visual: Tensor, audio: Tensor, mask: Tensor | None = None) -> HighlightOutput:
        if self.inputs is not None:
            visual, audio = self.inputs(visual, audio)
        hidden = self.body(torch.cat([visual, audio], dim=-1))
        logit = self.head(hidden).squeeze(-1)
        return HighlightOutput(logits={"fused": logit}, embedding=hidden, score=logit.sigmoid())
