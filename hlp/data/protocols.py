"""Benchmark protocols: which videos train, which validate, which are the test split.

- `umt`: the per-domain train/val lists published with UMT. Their "val" list is what every
  paper reports on, so here it is the *test* split, scored once for the report.
- `paper`: the seed paper's TVSum protocol, per category the 2 longest videos train and the
  other 3 test (section 4.1). For YouTube Highlights the paper follows the published split
  ("we follow the training-test split of previous works [2, 59]"), so `paper` = `umt` there.

In both, the validation split that model selection and early stopping use is carved from
the training videos only: a fixed fraction, by video, by seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hlp.data.datasets import Dataset, Video


@dataclass(frozen=True)
class DomainSplit:
    domain: str
    train: list[Video]
    val: list[Video]
    test: list[Video]


def held_out_ids(dataset: Dataset, protocol: str, domain: str) -> list[str]:
    """The test video ids of one domain that have features, in the published order."""
    videos = dataset.domain_videos(domain)
    if protocol == "paper" and dataset.name == "tvsum":
        longest = _longest_two(videos)
        return [v.video_id for v in videos if v.video_id not in longest]
    if protocol not in ("umt", "paper"):
        raise ValueError(f"unknown protocol {protocol!r}; expected 'umt' or 'paper'")
    published = dataset.splits.get(domain, {}).get("val", [])
    return [vid for vid in published if vid in dataset.videos]


def training_ids(dataset: Dataset, protocol: str, domain: str) -> list[str]:
    videos = dataset.domain_videos(domain)
    if protocol == "paper" and dataset.name == "tvsum":
        return sorted(_longest_two(videos))
    published = dataset.splits.get(domain, {}).get("train", [])
    return [vid for vid in published if vid in dataset.videos]


def _longest_two(videos: list[Video]) -> set[str]:
    # Ties on length break by id so the protocol is deterministic.
    ranked = sorted(videos, key=lambda v: (-v.num_clips, v.video_id))
    return {v.video_id for v in ranked[:2]}


def carve_validation(ids: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split training ids into (train, val) by video; at least one of each when possible."""
    if len(ids) < 2:
        return list(ids), []
    n_val = min(len(ids) - 1, max(1, math.floor(fraction * len(ids) + 0.5)))
    order = np.random.default_rng(seed).permutation(len(ids))
    val = {ids[i] for i in order[:n_val]}
    return [i for i in ids if i not in val], [i for i in ids if i in val]


def kfold_splits(split: DomainSplit, folds: int, seed: int) -> list[DomainSplit]:
    """K folds over all training videos (the carved validation folded back in), by video, by seed:
    each fold validates on its share and trains on the rest; min(folds, videos) folds."""
    videos = [*split.train, *split.val]
    count = min(folds, len(videos))
    if count < 2:
        raise ValueError(f"domain {split.domain!r}: k-fold selection needs 2 training videos, has {len(videos)}")
    order = np.random.default_rng([seed, count]).permutation(len(videos))
    out = []
    for k in range(count):
        held = set(order[k::count].tolist())
        out.append(DomainSplit(split.domain, [v for i, v in enumerate(videos) if i not in held],
                               [v for i, v in enumerate(videos) if i in held], split.test))
    return out


def domain_split(dataset: Dataset, protocol: str, domain: str, val_fraction: float, seed: int) -> DomainSplit:
    train, val = carve_validation(training_ids(dataset, protocol, domain), val_fraction, seed)
    pick = lambda ids: [dataset.videos[i] for i in ids]  # noqa: E731
    return DomainSplit(domain, pick(train), pick(val), pick(held_out_ids(dataset, protocol, domain)))


def available_domains(dataset: Dataset, protocol: str, domains: list[str] | None) -> tuple[list[str], list[str]]:
    """(domains that can train and test, notes on those that cannot and why)."""
    wanted = domains if domains is not None else sorted({v.domain for v in dataset.videos.values()} | set(dataset.splits))
    usable, notes = [], []
    for domain in wanted:
        n_train, n_test = len(training_ids(dataset, protocol, domain)), len(held_out_ids(dataset, protocol, domain))
        if n_train < 2 or n_test < 1:
            notes.append(f"domain {domain!r} skipped: {n_train} train and {n_test} test videos have features")
        else:
            usable.append(domain)
    return usable, notes
