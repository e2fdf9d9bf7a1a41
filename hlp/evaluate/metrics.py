"""Highlight-detection metrics, following the UMT release's evaluation protocols.

Both benchmarks score each video on its own (highlights are relative to their video)
with the same trapezoid-rule AP, so one ranking helper serves both.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def _validated(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reject mismatched or NaN inputs: silently broadcasting them would give a wrong AP."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels)
    if len(scores) != len(labels):
        raise ValueError(f"scores have length {len(scores)} but labels have length {len(labels)}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; a ranking over NaN is undefined")
    return scores, labels


def _ranking(scores: np.ndarray) -> np.ndarray:
    """Clip indices by descending score; a stable sort so ties keep temporal order
    (the earlier clip ranks first), which makes the metric deterministic."""
    return np.argsort(-scores, kind="stable")


def _trapezoid_ap(ranked: np.ndarray) -> float:
    """Trapezoid AP over ranked binary labels, with rec_0 = 0 and prc_0 = 1.

    num_pos is the positives in `ranked` itself; that is what the top-k variant needs.
    """
    ranked = np.asarray(ranked, dtype=bool)
    num_pos = int(ranked.sum())
    if num_pos == 0:
        return 0.0
    hits = np.cumsum(ranked)
    rec = np.concatenate(([0.0], hits / num_pos))
    prc = np.concatenate(([1.0], hits / np.arange(1, len(ranked) + 1)))
    return float(np.sum(np.diff(rec) * (prc[:-1] + prc[1:]) / 2))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of one video over its full ranking; 0.0 when the video has no positive clip.

    Ties in `scores` are broken by a stable sort: the earlier clip ranks first.
    """
    scores, labels = _validated(scores, labels)
    return _trapezoid_ap(labels.astype(bool)[_ranking(scores)])


def youtube_video_ap(scores: np.ndarray, match: np.ndarray) -> float:
    """YouTube Highlights AP: borderline (0) and negative (-1) windows are both non-highlights."""
    return average_precision(scores, np.asarray(match) > 0)


def _above_lower_median(column: np.ndarray) -> np.ndarray:
    """Binarise one annotator's scores as score > lower median (sorted[(n-1)//2]), as UMT does."""
    lower_median = np.sort(column)[(len(column) - 1) // 2]
    return column > lower_median


def tvsum_video_top5_map(
    scores: np.ndarray, annotator_scores: np.ndarray, top_k: int = 5
) -> float:
    """TVSum top-k mAP of one video: AP over the first `top_k` ranked clips, mean over annotators.

    Ties in `scores` are broken by a stable sort (earlier clip first). Videos shorter than
    `top_k` use all their clips.
    """
    annotator_scores = np.asarray(annotator_scores, dtype=np.float64)
    if annotator_scores.ndim != 2:
        shape = annotator_scores.shape
        raise ValueError(f"annotator_scores must be (clips, annotators), got {shape}")
    scores, _ = _validated(scores, annotator_scores)
    top = _ranking(scores)[:top_k]
    aps = [_trapezoid_ap(_above_lower_median(col)[top]) for col in annotator_scores.T]
    return float(np.mean(aps))


def mean_over_videos(values: Iterable[float]) -> float:
    """Unweighted mean of per-video scores; an empty list is an upstream bug, so it raises."""
    values = np.asarray(list(values), dtype=np.float64)
    if values.size == 0:
        raise ValueError("mean_over_videos needs at least one video")
    return float(values.mean())
