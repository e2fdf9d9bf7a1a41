"""Strict checkpoint loading for the extractor networks; takes an already-read dict, does no I/O.

A feature extractor that silently keeps random layers produces plausible-looking but
meaningless features, so loading is strict and a mismatch names what differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

_WRAPPERS = ("state_dict", "model")  # Hara's files: {"state_dict": ...}; PANNs': {"model": ...}
_PREFIX = "module."  # left by nn.DataParallel, as in Hara's files
_SHOWN = 5


def unwrap_state(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """The tensors of `state`: unwrapped from {"state_dict"|"model": ...}, "module." prefixes stripped."""
    for key in _WRAPPERS:
        if isinstance(state.get(key), Mapping):
            state = state[key]
            break
    others = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if others:
        raise ValueError(
            f"not a state dict: entries {others[:_SHOWN]} are not tensors "
            f"(expected name -> tensor, optionally wrapped as {{'state_dict': ...}} or {{'model': ...}})"
        )
    return {k.removeprefix(_PREFIX): v for k, v in state.items()}


def _preview(items: list[str]) -> str:
    more = f", ... ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def mismatches(model: nn.Module, tensors: Mapping[str, Tensor]) -> list[str]:
    """Human-readable differences between `model`'s state dict and `tensors`; empty when they fit.

    Missing BatchNorm `num_batches_tracked` counters are not differences: checkpoints saved
    before PyTorch 0.4 (such as Hara's 2017 files) lack them and torch fills them in.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in tensors if k not in expected]
    shapes = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in tensors.items()
        if k in expected and v.shape != expected[k].shape
    ]
    found = []
    if missing:
        found.append(f"{len(missing)} missing keys ({_preview(missing)})")
    if unexpected:
        found.append(f"{len(unexpected)} unexpected keys ({_preview(unexpected)})")
    if shapes:
        found.append(f"{len(shapes)} shape mismatches ({_preview(shapes)})")
    return found


def load_state(model: nn.Module, state: Mapping[str, Any]) -> None:
    """Load a checkpoint dict into `model` strictly; ValueError naming the differences if it does not fit."""
    tensors = unwrap_state(state)
    found = mismatches(model, tensors)
    if found:
        arch = getattr(model, "arch", type(model).__name__)
        raise ValueError(
            f"these weights are not for {arch}: " + "; ".join(found) + ". Check that the file matches the "
            "chosen architecture (and variant, e.g. the shortcut type or number of classes)."
        )
    model.load_state_dict(tensors, strict=True)
