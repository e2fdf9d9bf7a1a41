"""Turning clip index windows of videos into padded tensors with a validity mask.

The model's attention honours the mask, so padding never changes a video's result and
videos of any lengths can share a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hlp.data.datasets import Video


@dataclass(frozen=True)
class Batch:
    visual: torch.Tensor  # (B, T, Dv)
    audio: torch.Tensor  # (B, T, Da)
    targets: torch.Tensor  # (B, T) float in [0, 1]
    mask: torch.Tensor  # (B, T) bool, True = real clip
    labels: torch.Tensor  # (B, T) bool: the binary labels contrast and ranking use, whatever the targets

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(*(t.to(device) for t in (self.visual, self.audio, self.targets, self.mask, self.labels)))


def soft_targets(video: Video, idx: np.ndarray | None = None) -> np.ndarray:
    """UMT's TVSum target of the clips `idx` (all when None): (sum of the annotators' 1-5 scores
    - count) / (4 x count), in [0, 1]. Only the window's rows are summed, per batch."""
    if video.annotator_scores is None:
        raise ValueError(f"video {video.video_id}: soft targets need annotator scores (TVSum)")
    scores = video.annotator_scores if idx is None else video.annotator_scores[idx]
    return ((scores.sum(1) - scores.shape[1]) / (4.0 * scores.shape[1])).astype(np.float32)


def collate(items: Sequence[tuple[Video, np.ndarray]], soft: bool = False) -> Batch:
    """Pad (video, clip indices) pairs to the longest window; `soft` takes TVSum's soft targets."""
    length = max(len(idx) for _, idx in items)
    first = items[0][0]
    visual = np.zeros((len(items), length, first.visual.shape[1]), np.float32)
    audio = np.zeros((len(items), length, first.audio.shape[1]), np.float32)
    targets = np.zeros((len(items), length), np.float32)
    mask = np.zeros((len(items), length), bool)
    labels = np.zeros((len(items), length), bool)
    for row, (video, idx) in enumerate(items):
        n = len(idx)
        visual[row, :n], audio[row, :n] = video.visual[idx], video.audio[idx]
        targets[row, :n] = soft_targets(video, idx) if soft else video.labels[idx]
        mask[row, :n], labels[row, :n] = True, video.labels[idx]
    return Batch(*(torch.from_numpy(a) for a in (visual, audio, targets, mask, labels)))
