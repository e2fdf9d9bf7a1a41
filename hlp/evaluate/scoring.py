"""Scoring every clip of a whole video of any length.

Two ways, chosen on the validation split (`eval.scoring: auto`):
- `full`: one forward pass over the whole video, so attention sees all of it. The model
  trained on T-clip windows then attends over far longer sequences than it saw.
- `sliding`: windows of the training length T with a stride; each clip's score is the
  mean over the windows that cover it, matching the training context exactly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from hlp.data.batching import collate
from hlp.data.datasets import Video

ScoringMode = Literal["full", "sliding"]


@torch.no_grad()
def score_video(model: torch.nn.Module, video: Video, mode: ScoringMode, window: int, stride: int) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    if mode == "full" or video.num_clips <= window:
        starts = [0]
        size = video.num_clips
    else:
        size = window
        starts = list(range(0, video.num_clips - window + 1, stride))
        if starts[-1] + window < video.num_clips:
            starts.append(video.num_clips - window)  # the tail is always covered
    total = np.zeros(video.num_clips, np.float64)
    count = np.zeros(video.num_clips, np.float64)
    for chunk in range(0, len(starts), 64):
        group = starts[chunk : chunk + 64]
        batch = collate([(video, np.arange(s, s + size)) for s in group]).to(device)
        scores = model(batch.visual, batch.audio, batch.mask).score.float().cpu().numpy()
        for row, s in enumerate(group):
            total[s : s + size] += scores[row]
            count[s : s + size] += 1
    return (total / count).astype(np.float32)


def score_videos(
    model: torch.nn.Module, videos: list[Video], mode: ScoringMode, window: int, stride: int
) -> dict[str, np.ndarray]:
    return {v.video_id: score_video(model, v, mode, window, stride) for v in videos}
