"""Scoring predicted clip scores under each dataset's published metric.

YouTube Highlights uses per-video mAP over the full ranking; TVSum uses top-5 mAP against
each of the 20 annotators (../shared/data/README.md). Both protocols of a dataset are scored
with its published metric, so numbers stay comparable with the paper's tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hlp.data.datasets import Dataset, Video
from hlp.data.protocols import held_out_ids
from hlp.evaluate.metrics import (
    mean_over_videos,
    tvsum_video_top5_map,
    youtube_video_ap,
)


class ScoresError(ValueError):
    """A scores file that does not match the split it claims to score."""


def video_map(video: Video, scores: np.ndarray) -> float:
    if video.match is not None:
        return youtube_video_ap(scores, video.match)
    if video.annotator_scores is not None:
        return tvsum_video_top5_map(scores, video.annotator_scores)
    raise ValueError(f"video {video.video_id} has neither 'match' nor annotator scores")


def video_aps(videos: Sequence[Video], scores: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Each video's AP (top-5 mAP on TVSum): what paired comparisons resample."""
    return {v.video_id: video_map(v, np.asarray(scores[v.video_id])) for v in videos}


def domain_map(videos: Sequence[Video], scores: Mapping[str, np.ndarray]) -> float:
    return mean_over_videos(list(video_aps(videos, scores).values()))


def evaluate_scores(dataset: Dataset, protocol: str, scores: Mapping[str, Sequence[float]]) -> dict:
    """Test mAP per domain for a `{video_id: [score per clip]}` mapping.

    The domains are those of the scored ids; within them every test video must be present
    with exactly one score per clip, so a partial or misaligned file cannot pass silently.
    """
    split = {d: held_out_ids(dataset, protocol, d) for d in sorted(_domains_of(dataset, scores))}
    extra = sorted(set(scores) - {vid for ids in split.values() for vid in ids})
    if extra:
        raise ScoresError(f"extra video id(s) that are not in the {protocol} test split: {extra}")
    result: dict[str, float] = {}  # never empty: _domains_of refuses a file without a video of the dataset
    for domain, ids in split.items():
        missing = [vid for vid in ids if vid not in scores]
        if missing:
            raise ScoresError(f"domain {domain!r}: scores missing for test video(s) {missing}")
        for vid in ids:
            _check_scores(dataset.videos[vid], scores[vid])
        result[domain] = domain_map([dataset.videos[v] for v in ids], {v: np.asarray(scores[v], float) for v in ids})
    return {"domains": result, "mean": float(np.mean(list(result.values())))}


def _domains_of(dataset: Dataset, scores: Mapping[str, Sequence[float]]) -> set[str]:
    """The scored domains; none at all is refused, since a mean over no video is made up (it read 0)."""
    if not scores:
        raise ScoresError(f"no scored video: the file holds no video id (expected {{video_id: [score per clip]}} "
                          f"for the {dataset.name} test videos)")
    unknown = [vid for vid in scores if vid not in dataset.videos]
    if len(unknown) == len(scores):
        shown = ", ".join(repr(v) for v in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise ScoresError(f"no scored video of {dataset.name}: none of its {len(unknown)} video id(s) ({shown}) is a "
                          f"{dataset.name} video with features; are these scores of another dataset?")
    if unknown:
        raise ScoresError(f"extra video id(s) not in the {dataset.name} test data with features: {unknown}")
    return {dataset.videos[vid].domain for vid in scores}


def _check_scores(video: Video, scores: Sequence[float]) -> None:
    _check_numbers(video.video_id, scores)
    if len(scores) != video.num_clips:
        raise ScoresError(
            f"video {video.video_id}: {len(scores)} scores for {video.num_clips} clips"
        )
    if not np.isfinite(np.asarray(scores, dtype=float)).all():
        raise ScoresError(f"video {video.video_id}: NaN or Inf in the scores")


def _check_numbers(video_id: str, scores: object) -> None:
    """A JSON list of numbers: numpy would turn "0.5" into a number and fail on "a" with a bare
    traceback, so anything else (strings, booleans, nulls, nested lists) is named here."""
    if isinstance(scores, np.ndarray) and scores.ndim == 1 and scores.dtype.kind in "fiu":
        return
    if isinstance(scores, (str, bytes)) or not isinstance(scores, Sequence):
        raise ScoresError(f"video {video_id}: expected a list of scores (one number per clip), "
                          f"got {type(scores).__name__}")
    for index, value in enumerate(scores):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise ScoresError(f"video {video_id}: score {index} is {value!r} ({type(value).__name__}), "
                              f"not a number")
