"""Training-window sampling of paper section 4.2.

Highlight datasets are heavily imbalanced, so a plain contiguous window of T segments often
holds no positive (or no negative) clip, and contrastive learning and hard-pair ranking then
have nothing to compare. The paper requires both classes at a ratio of at least 1:2 and, when
a window falls short, re-samples more clips from the same video while keeping temporal order.
"""

from __future__ import annotations

import math

import numpy as np


def meets_ratio(num_pos: int, num_neg: int, min_ratio: float) -> bool:
    """min(pos, neg) / max(pos, neg) >= min_ratio: the paper's "not less than 1:2" for 0.5."""
    big = max(num_pos, num_neg)
    return big > 0 and min(num_pos, num_neg) / big >= min_ratio


def minority_needed(length: int, min_ratio: float) -> int:
    """Fewest minority clips a window of `length` needs, i.e. ceil(length*r/(1+r)).

    Computed by search with `meets_ratio` itself so float rounding can never disagree with
    the check; when no split reaches the ratio (r = 1 with odd length) it returns the most
    balanced split, length // 2.
    """
    ok = (m for m in range(length // 2 + 1) if meets_ratio(m, length - m, min_ratio))
    return next(ok, length // 2)


def can_contrast(labels: np.ndarray) -> bool:
    """True when the video has both classes; one-class videos cannot give contrastive windows."""
    labels = np.asarray(labels, dtype=bool)
    return bool(labels.any() and not labels.all())


def windows_per_video(num_clips: int, length: int, per_clip: float = 1.0) -> int:
    """Windows to draw per epoch so each clip is seen about `per_clip` times in expectation."""
    if length < 1 or num_clips < 0 or per_clip <= 0:
        raise ValueError(f"need length >= 1, num_clips >= 0 and per_clip > 0, got {length}, {num_clips}, {per_clip}")
    return max(1, math.ceil(per_clip * num_clips / length))


def _rebalance(
    window: np.ndarray, labels: np.ndarray, min_ratio: float, rng: np.random.Generator
) -> np.ndarray:
    """Swap random majority clips of the window for random minority clips from elsewhere.

    Best effort: if the rest of the video lacks enough minority clips, all of them are used
    and the result may stay below the ratio (a one-class video comes back unchanged).
    """
    in_window = labels[window]
    minority = in_window.sum() * 2 < len(window)  # the class (True/False) that is scarcer here
    have = int((in_window == minority).sum())
    outside = np.setdiff1d(np.flatnonzero(labels == minority), window)
    k = min(minority_needed(len(window), min_ratio) - have, len(outside))
    if k <= 0:
        return window
    drop = rng.choice(window[in_window != minority], size=k, replace=False)
    add = rng.choice(outside, size=k, replace=False)
    return np.sort(np.concatenate((np.setdiff1d(window, drop), add)))


def sample_window(
    labels: np.ndarray, length: int, min_ratio: float, rng: np.random.Generator
) -> np.ndarray:
    """Sorted unique clip indices of one training window of `length` clips.

    The offset of the contiguous window is the first draw from `rng`; the window is returned
    unchanged when it meets `min_ratio`, otherwise rebalanced (see `_rebalance`). Videos of
    at most `length` clips come back whole; the trainer pads them.
    """
    labels = np.asarray(labels, dtype=bool).ravel()
    if length < 1 or not 0 < min_ratio <= 1:
        raise ValueError(f"need length >= 1 and 0 < min_ratio <= 1, got {length}, {min_ratio}")
    n = len(labels)
    if n <= length:
        return np.arange(n)
    start = int(rng.integers(0, n - length + 1))
    window = np.arange(start, start + length)
    pos = int(labels[window].sum())
    if meets_ratio(pos, length - pos, min_ratio):
        return window
    return _rebalance(window, labels, min_ratio, rng)
