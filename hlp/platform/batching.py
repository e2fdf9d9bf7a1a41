"""Turning clip index windows of videos into padded tensors with a validity mask.

The model's attention honours the mask, so padding never changes a video's result and
videos of any lengths can share a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hlp.platform.datasets import Video


@dataclass(frozen=True)
class Batch:
    visual: torch.Tensor  # (B, T, Dv)
    audio: torch.Tensor  # (B, T, Da)
    targets: torch.Tensor  # (B, T) float in [0, 1]
    mask: torch.Tensor  # (B, T) bool, True = real clip

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(*(t.to(device) for t in (self.visual, self.audio, self.targets, self.mask)))


def collate(items: Sequence[tuple[Video, np.ndarray]]) -> Batch:
    """Pad (video, clip indices) pairs to the longest window."""
    length = max(len(idx) for _, idx in items)
    first = items[0][0]
    visual = np.zeros((len(items), length, first.visual.shape[1]), np.float32)
    audio = np.zeros((len(items), length, first.audio.shape[1]), np.float32)
    targets = np.zeros((len(items), length), np.float32)
    mask = np.zeros((len(items), length), bool)
    for row, (video, idx) in enumerate(items):
        n = len(idx)
        visual[row, :n], audio[row, :n] = video.visual[idx], video.audio[idx]
        targets[row, :n], mask[row, :n] = video.labels[idx], True
    return Batch(*(torch.from_numpy(a) for a in (visual, audio, targets, mask)))
