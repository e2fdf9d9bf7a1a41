"""Readers for the UMT release layout of TVSum and YouTube Highlights.

Layout (see ../shared/data/README.md): `<name>_anno.json`, `splits.json`,
`video_features/<vid>_rgb.npy` + `<vid>_opt.npy` (I3D, concatenated to the visual vector)
and `audio_features/<vid>.npy` (PANN). A bad video never stops a long job: under
`on_bad="skip"` it is recorded in `Dataset.skipped` with the file and the reason, and under
`on_bad="error"` the same message is raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from hlp.config import DataConfig
from hlp.data.feature_store import FeatureStore, StoreError
from hlp.storage import filesystem, read_json, read_npy, resolve_root

DatasetName = Literal["youtube", "tvsum"]


class DataError(ValueError):
    """Bad input data; the message names the file and the video."""

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(f"{reason} [{path}]" if path else reason)
        self.reason, self.path = reason, path


@dataclass(frozen=True)
class Video:
    video_id: str
    domain: str
    visual: np.ndarray  # (T, Dv) float32
    audio: np.ndarray  # (T, Da) float32
    labels: np.ndarray  # (T,) bool: the binary highlight label the losses use
    match: np.ndarray | None = None  # YouTube: +1 / 0 / -1 per clip, for mAP
    annotator_scores: np.ndarray | None = None  # TVSum: (T, 20) scores 1-5, for top-5 mAP

    @property
    def num_clips(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Skipped:
    video_id: str
    domain: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.domain}/{self.video_id}: {self.reason} ({self.path})"


@dataclass
class Dataset:
    name: DatasetName
    root: str
    videos: dict[str, Video]
    splits: dict[str, dict[str, list[str]]]
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    features: dict | None = None  # the feature store's extractors and clip grid; None for the UMT release

    def domain_videos(self, domain: str) -> list[Video]:
        return [v for v in self.videos.values() if v.domain == domain]


def load_dataset(
    name: DatasetName,
    root: str,
    domains: list[str] | None = None,
    on_bad: Literal["skip", "error"] = "skip",
    features: str | None = None,
    visual_streams: tuple[str, ...] = ("rgb", "opt"),
) -> Dataset:
    """Read every annotated video of `domains` (all when None) that has features: from the
    UMT layout under `root`, or from the Parquet store at `features` when it is given."""
    if name not in ("youtube", "tvsum"):
        raise DataError(f"unknown dataset {name!r}; expected 'youtube' or 'tvsum'")
    root = resolve_root(root)
    fs, base = filesystem(root)
    anno_path = f"{base}/{name}/{name}_anno.json"
    if not fs.exists(anno_path):
        raise FileNotFoundError(f"annotation file not found: {anno_path} (data root {root!r})")
    annotations = read_json(fs, anno_path)
    splits = read_json(fs, f"{base}/{name}/splits.json")
    wanted = _check_domains(domains, annotations, anno_path)
    source = _StoreFeatures(features) if features else UmtFeatures(fs, f"{base}/{name}", tuple(visual_streams))
    dataset = Dataset(name=name, root=root, videos={}, splits=splits, features=source.meta)
    reader = _VideoReader(source, anno_path, name)
    for video_id, entry in annotations.items():
        domain = entry.get("domain") if isinstance(entry, dict) else None
        if domain not in wanted:
            continue
        try:
            dataset.videos[video_id] = reader.read(video_id, entry, dataset.notes)
        except DataError as exc:
            if on_bad == "error":
                raise
            dataset.skipped.append(Skipped(video_id, str(domain), exc.path, exc.reason))
    return dataset


READ_KEYS = ("dataset", "root", "domains", "on_bad", "features", "visual_streams")  # what a read depends on


def load_dataset_for(data: DataConfig) -> Dataset:
    """The dataset an experiment's `data:` section names: every command reads its data here."""
    return load_dataset(data.dataset, data.root, data.domains, data.on_bad, data.features, tuple(data.visual_streams))


def changes_read(keys) -> bool:
    """Whether setting these dotted keys can change what `load_dataset_for` reads (`data.root`
    does, `data.normalize` does not), so one loaded copy cannot serve every value."""
    parts = (key.split(".") for key in keys)
    return any(len(p) > 1 and p[0] == "data" and p[1] in READ_KEYS for p in parts)


def grouped_skips(skipped: list) -> list[str]:
    """One line per domain and reason (a release without a domain's features skips 100+ videos);
    metrics.json keeps the full list."""
    groups: dict[tuple[str, str], list] = {}
    for item in skipped:
        groups.setdefault((item.domain, item.reason.split(": ", 1)[-1]), []).append(item)
    return [str(items[0]) if len(items) == 1 else
            f"{len(items)} videos of {domain}: {reason} (e.g. {items[0].path})"
            for (domain, reason), items in groups.items()]


def _check_domains(domains: list[str] | None, annotations: dict, anno_path: str) -> set[str]:
    if not isinstance(annotations, dict):
        raise DataError(f"{anno_path}: expected a mapping of video id to annotation")
    known = {e.get("domain") for e in annotations.values() if isinstance(e, dict)} - {None}
    if domains is None:
        return known
    unknown = [d for d in domains if d not in known]
    if unknown:
        raise DataError(f"unknown domain(s) {unknown} in {anno_path}; known: {sorted(known)}")
    return set(domains)


class _VideoReader:
    """Reads and checks one video's features and labels."""

    def __init__(self, source: UmtFeatures | _StoreFeatures, anno_path: str, name: DatasetName) -> None:
        self.source, self.anno_path, self.name = source, anno_path, name

    def read(self, video_id: str, entry: dict, notes: list[str]) -> Video:
        visual, audio = self.source.visual(video_id), self.source.audio(video_id)
        if self.name == "youtube":
            match = _youtube_match(video_id, entry, self.anno_path)
            extra: dict = {"match": match}
            label_len = len(match)
        else:
            scores = _tvsum_scores(video_id, entry, self.anno_path)
            extra = {"annotator_scores": scores}
            label_len = len(scores)
        length = min(len(visual), len(audio), label_len)
        if len({len(visual), len(audio), label_len}) > 1:
            notes.append(
                f"{video_id}: cropped visual {len(visual)}, audio {len(audio)}, labels {label_len} to {length} clips"
            )
        extra = {k: v[:length] for k, v in extra.items()}
        labels = extra["match"] > 0 if "match" in extra else top_half(extra["annotator_scores"])
        return Video(video_id, entry["domain"], visual[:length], audio[:length], labels, **extra)



class UmtFeatures:
    """`video_features/<vid>_<stream>.npy` (concatenated in `streams` order) and `audio_features/<vid>.npy`."""

    meta = None

    def __init__(self, fs, base: str, streams: tuple[str, ...]) -> None:
        self.fs, self.base, self.streams = fs, base, streams

    def visual(self, video_id: str) -> np.ndarray:
        parts = [self.read(video_id, f"video_features/{video_id}_{s}.npy") for s in self.streams]
        length = min(len(p) for p in parts)
        return np.concatenate([p[:length] for p in parts], axis=1)

    def audio(self, video_id: str) -> np.ndarray:
        return self.read(video_id, f"audio_features/{video_id}.npy")

    def read(self, video_id: str, relative: str) -> np.ndarray:
        path = f"{self.base}/{relative}"
        if not self.fs.exists(path):
            raise DataError(f"video {video_id}: missing feature file", path)
        try:
            array = read_npy(self.fs, path)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"video {video_id}: unreadable feature file ({exc})", path) from None
        return _checked(array, video_id, path)


class _StoreFeatures:
    """The `done` videos of a Parquet feature store, read in one pass."""

    def __init__(self, uri: str) -> None:
        try:
            store = FeatureStore.open(uri)
            self.manifest = store.manifest()
            self.clips = store.read_videos(manifest=self.manifest)
        except StoreError as exc:
            raise DataError(str(exc), uri) from None
        self.uri, self.meta = uri, store.meta

    def visual(self, video_id: str) -> np.ndarray:
        return _checked(self._clips(video_id).visual, video_id, self.uri)

    def audio(self, video_id: str) -> np.ndarray:
        return _checked(self._clips(video_id).audio, video_id, self.uri)

    def _clips(self, video_id: str):
        if video_id not in self.clips:
            entry = self.manifest.get(video_id)
            why = f"extraction failed: {entry['reason']}" if entry else "not in the feature store"
            raise DataError(f"video {video_id}: missing features ({why})", self.uri)
        return self.clips[video_id]


def _checked(array: np.ndarray, video_id: str, path: str) -> np.ndarray:
    if array.ndim != 2 or len(array) == 0:
        raise DataError(f"video {video_id}: expected a (clips, dim) array, got shape {array.shape}", path)
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise DataError(f"video {video_id}: NaN or Inf in {bad} clip(s) of the features", path)
    return array


def _youtube_match(video_id: str, entry: dict, anno_path: str) -> np.ndarray:
    try:
        match = np.asarray(entry["match"], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"video {video_id}: malformed annotation, 'match' ({exc!r})", anno_path) from None
    if match.ndim != 1 or len(match) == 0 or not np.isin(match, (-1, 0, 1)).all():
        raise DataError(f"video {video_id}: malformed annotation, 'match' must be a list of -1/0/1", anno_path)
    return match


def _tvsum_scores(video_id: str, entry: dict, anno_path: str) -> np.ndarray:
    try:
        scores = np.asarray(entry["anno"], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"video {video_id}: malformed annotation, 'anno' ({exc!r})", anno_path) from None
    if scores.ndim != 2 or len(scores) == 0 or not np.isfinite(scores).all():
        raise DataError(
            f"video {video_id}: malformed annotation, 'anno' must be clips x annotators numbers", anno_path
        )
    return scores


def top_half(annotator_scores: np.ndarray) -> np.ndarray:
    """Paper protocol labels: clips whose mean score is in the top 50 % of their video."""
    mean = annotator_scores.mean(axis=1)
    return mean >= np.median(mean)
