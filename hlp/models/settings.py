"""The settings of the model and its losses, declared once, with their checks.

Plain dataclasses without torch, so `hlp`'s config takes its defaults and checks from here
before torch loads (the CLI reports a typo at once). Each component takes its settings by
field name; the experiment config never reaches `hlp.models`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Block = Literal["paper", "standard"]
Positional = Literal["none", "sine", "learned"]
GlobalInit = Literal["random", "mean", "none"]
InputNorm = Literal["none", "l2", "standardize"]
DEFAULT_GLOBAL_INIT: GlobalInit = "mean"  # Table 5: the mean initialisation gives the headline result


@dataclass(frozen=True)
class AttentionConfig:
    """Hyper-parameters shared by every block, declared once: `hlp`'s config takes its defaults
    and its checks from here.

    Sizes: paper 4.2 (n = 2 layers, 8 heads, d = 256, d_k = d_v = 512). The rest is the standard
    encoder the paper builds on ([53]), as UMT and lighthouse run it: pre-norm residual blocks
    with W_O, dropout 0.5 on the input features and 0.1 inside, no positions (sine cost 0.008
    validation mAP on YouTube over 3 seeds; README: Recipe). `LITERAL` is eq. 1-3 as printed.
    """

    d_model: int = 256
    heads: int = 8
    layers: int = 2
    d_k: int = 512
    d_v: int = 512
    ffn_dim: int = 1024
    dropout: float = 0.1
    block: Block = "standard"
    positional: Positional = "none"  # added to each stream's projected input
    input_dropout: float = 0.5  # on the input features only, before the projection

    @staticmethod
    def check_each(values: Mapping[str, Any]) -> None:
        """Every setting on its own; the config refuses the same values, naming the key."""
        for name in ("d_model", "heads", "layers", "d_k", "d_v", "ffn_dim"):
            if values[name] < 1:
                raise ValueError(f"{name} must be >= 1, got {values[name]}")
        for name in ("dropout", "input_dropout"):
            if not 0 <= values[name] < 1:
                raise ValueError(f"{name} must be in [0, 1), got {values[name]}")
        if values["block"] not in ("paper", "standard"):
            raise ValueError(f"block must be 'paper' or 'standard', got {values['block']!r}")
        if values["positional"] not in ("none", "sine", "learned"):
            raise ValueError(f"positional must be 'none', 'sine' or 'learned', got {values['positional']!r}")

    def __post_init__(self) -> None:
        self.check_each(vars(self))
        # Between settings, so met when the blocks are built: a run with 3 heads on 16 dimensions
        # fails alone, and the rest of a long job (a reproduction's other rows) still runs.
        if self.d_k % self.heads or self.d_v % self.heads:
            raise ValueError(f"d_k={self.d_k} and d_v={self.d_v} must be divisible by heads={self.heads}")


# Eq. 1-3 read literally (experiments/paper-literal.yaml): post-norm, no W_O, no residual around
# the FFN, dropout 0.5 everywhere, nothing on the inputs.
LITERAL = {"block": "paper", "positional": "none", "dropout": 0.5, "input_dropout": 0.0}


@dataclass(frozen=True)
class LossSettings:
    """Eq 11's weights and the terms' settings. Section 4.2 gives the lambdas (1, 0.3, 0.1), the
    margin 0.7 and L = 3; tau is not given (0.1, the supervised-contrastive default range)."""

    lambda_ce: float = 1.0
    lambda_hpcl: float = 0.3
    lambda_rank: float = 0.1
    temperature: float = 0.1
    margin: float = 0.7
    region: int = 3
    normalize: bool = True  # L2-normalise the embedding before HPCL and the hinge (SupCon)

    @staticmethod
    def check_each(values: Mapping[str, Any]) -> None:
        """Every setting on its own; the config refuses the same values, naming the key."""
        for name in ("lambda_ce", "lambda_hpcl", "lambda_rank", "margin"):
            if values[name] < 0:
                raise ValueError(f"{name} must be >= 0, got {values[name]}")
        if values["temperature"] <= 0:
            raise ValueError(f"temperature must be > 0, got {values['temperature']}")
        if values["region"] < 1:  # L = 0 pairs nothing: eq 9 needs at least the watershed's neighbours
            raise ValueError(f"region must be >= 1, got {values['region']}")

    def __post_init__(self) -> None:
        self.check_each(vars(self))
