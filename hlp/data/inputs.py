"""A run's data, described the way MLflow records a dataset input, so the runs table's Dataset
column says what each run trained, validated and was tested on.

One input per domain and context (training, validation, test): the name (`youtube/parkour`),
a digest of the videos' features and labels and of the video ids each replica used (the carve
moves with the seed, so two runs with the same digest saw the same data the same way), the
source (the feature store, else the data root) and a profile (videos, clips, seeds, folds).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from hlp.data.datasets import Dataset, Video
from hlp.data.protocols import DomainSplit, kfold_splits

CONTEXTS = ("training", "validation", "test")  # MLflow's own names for a dataset input's context


@dataclass(frozen=True)
class DataInput:
    name: str
    digest: str
    source: str
    context: str
    profile: dict


def data_inputs(dataset: Dataset, source: str, splits: dict[int, dict[str, DomainSplit]], folds: int | None,
                contexts: tuple[str, ...] = CONTEXTS, digests: dict[str, str] | None = None) -> list[DataInput]:
    """`splits`: seed -> domain -> its split; `folds`: eval.folds under kfold selection, else None;
    `source`: where the features are read; `digests`: `video_digests(dataset)`, when several runs
    describe one dataset."""
    digests = digests if digests is not None else video_digests(dataset)
    domains = sorted({d for by_domain in splits.values() for d in by_domain})
    inputs = []
    for domain in domains:
        for context in contexts:
            used = {f"seed{seed}": _groups(by_domain[domain], context, folds, seed)
                    for seed, by_domain in sorted(splits.items()) if domain in by_domain}
            if context == "test":  # the published split, whatever the seed: one digest in every run
                used = {"": next(iter(used.values()))}
            inputs.append(_described(f"{dataset.name}/{domain}", source, context, used, digests))
    return inputs


def video_digests(dataset: Dataset) -> dict[str, str]:
    """Each video's features and labels, hashed (YouTube's 179 MB: 0.3 s)."""
    out = {}
    for video_id, video in dataset.videos.items():
        digest = hashlib.md5()
        for array in (video.visual, video.audio, video.labels):
            digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
        out[video_id] = digest.hexdigest()
    return out


def _groups(split: DomainSplit, context: str, folds: int | None, seed: int) -> list[list[Video]]:
    """The videos one seed reads in `context`, grouped as it reads them: under kfold the model kept
    trains on every training video, and the folds that chose its epoch validate on them in turns
    (MLflow keeps one input per dataset, so the two contexts must not describe the same thing)."""
    if context == "test":
        return [split.test]
    if folds is None:
        return [split.train if context == "training" else split.val]
    if context == "training":
        return [[*split.train, *split.val]]
    return [fold.val for fold in kfold_splits(split, folds, seed)]


def _described(name: str, source: str, context: str, used: dict[str, list[list[Video]]],
               digests: dict[str, str]) -> DataInput:
    """`used`: who read it (`seed0`; "" for everyone) -> the groups of videos it read."""
    digest = hashlib.md5()
    distinct: dict[str, Video] = {}
    for reader, groups in used.items():
        digest.update(f"{reader}:{'|'.join(','.join(v.video_id for v in g) for g in groups)};".encode())
        distinct.update({v.video_id: v for g in groups for v in g})
    for video_id in sorted(distinct):
        digest.update(digests[video_id].encode())
    profile = {"videos": len(distinct), "clips": sum(v.num_clips for v in distinct.values())}
    if "" not in used:
        profile["seeds"] = len(used)
    folds = max((len(groups) for groups in used.values()), default=1)
    if folds > 1:
        profile["folds"] = folds
    return DataInput(name, digest.hexdigest()[:12], source, context, profile)
