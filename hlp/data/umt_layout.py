"""`hlp data import-umt` / `export-umt`: the UMT release layout <-> the Parquet feature store.

With both directions, the public features and our own extraction go through one training
path (`data.format: parquet`), and our features can be fed to UMT-layout tools.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

import numpy as np

from hlp.data.datasets import DataError, UmtFeatures
from hlp.data.feature_store import Clips, FeatureStore, StoreError
from hlp.storage import filesystem, read_json, write_npy

RELEASE = "umt-release"


def import_umt(root: str, dataset: str, out: str, streams: tuple[str, ...] = ("rgb", "opt"),
               log: Callable[[str], None] = print) -> dict:
    """Every video with features under `root/<dataset>/` into the store at `out`."""
    fs, base = filesystem(root)
    folder = f"{base}/{dataset}"
    ids = sorted(posixpath.basename(p)[: -len(".npy")] for p in fs.glob(f"{folder}/audio_features/*.npy"))
    if not ids:
        raise DataError(f"no audio_features/*.npy under {folder}: not a UMT release folder", folder)
    source = UmtFeatures(fs, folder, streams)
    store = FeatureStore.create_or_check(out, _meta(streams, source, ids[0]))
    times = _clip_times(fs, folder, dataset)
    counts = {"done": 0, "failed": 0}
    for vid in ids:
        status = _import_video(store, source, vid, times.get(vid))
        counts[status["status"]] += 1
        store.record(status)
        if status["status"] == "failed":
            log(f"failed: {vid}: {status['reason']}")
    return {"store": out, "videos": len(ids), **counts}


def _meta(streams: tuple[str, ...], source: UmtFeatures, vid: str) -> dict:
    """The store's settings, with each stream's width read from the first video."""
    parts = [[s, int(source.read(vid, f"video_features/{vid}_{s}.npy").shape[1])] for s in streams]
    audio_dim = int(source.audio(vid).shape[1])
    return {"clip_seconds": 2.0, "last_clip": "pad", "chunk_clips": None,
            "visual": {"name": "i3d_" + "+".join(streams), "version": RELEASE, "weights": None,
                       "dim": sum(d for _, d in parts)},
            "audio": {"name": "pann_cnn14", "version": RELEASE, "weights": None, "dim": audio_dim},
            "visual_parts": parts, "frame_contract": None}


def _clip_times(fs, folder: str, dataset: str) -> dict[str, np.ndarray]:
    """YouTube Highlights windows are 100 frames with stride 50 (in the annotation file); TVSum
    clips are 2 s."""
    path = f"{folder}/{dataset}_anno.json"
    if dataset != "youtube" or not fs.exists(path):
        return {}
    out = {}
    for vid, entry in read_json(fs, path).items():
        try:
            out[vid] = np.asarray(entry["clip"], float) / float(entry["fps"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            continue  # fall back to the 2 s grid
    return out


def _import_video(store: FeatureStore, source: UmtFeatures, vid: str, times: np.ndarray | None) -> dict:
    try:
        visual, audio = source.visual(vid), source.audio(vid)
    except DataError as exc:
        return {"video_id": vid, "status": "failed", "reason": str(exc)}
    if visual.shape[1] != store.visual_dim or audio.shape[1] != store.audio_dim:
        return {"video_id": vid, "status": "failed",
                "reason": f"feature sizes {visual.shape[1]}/{audio.shape[1]}, the store holds "
                          f"{store.visual_dim}/{store.audio_dim}"}
    n = min(len(visual), len(audio))  # the release's streams can differ by a row or two
    index = np.arange(n)
    if times is not None and len(times) >= n:
        start, end = times[:n, 0], times[:n, 1]
    else:
        start, end = index * 2.0, index * 2.0 + 2.0
    store.clear_video(vid)
    store.write_chunk(vid, 0, Clips(index, start, end, visual[:n], audio[:n], True))
    return {"video_id": vid, "status": "done", "reason": "", "clips": n, "chunks": 1, "has_audio": True}


def export_umt(store_uri: str, out: str, dataset: str) -> dict:
    """The store's `done` videos as `out/<dataset>/video_features/<vid>_<part>.npy` and
    `audio_features/<vid>.npy` (float32). Annotations and splits are not features: copy them."""
    store = FeatureStore.open(store_uri)
    parts = store.meta.get("visual_parts")
    if not parts or sum(d for _, d in parts) != store.visual_dim:
        raise StoreError(f"{store_uri}: store.json does not say how the visual vector splits into streams")
    fs, base = filesystem(out)
    folder = f"{base}/{dataset}"
    for sub in ("video_features", "audio_features"):
        fs.makedirs(f"{folder}/{sub}", exist_ok=True)
    videos = store.read_videos()
    for vid, clips in videos.items():
        offset = 0
        for name, dim in parts:
            write_npy(fs, f"{folder}/video_features/{vid}_{name}.npy", clips.visual[:, offset: offset + dim])
            offset += dim
        write_npy(fs, f"{folder}/audio_features/{vid}.npy", clips.audio)
    return {"out": out, "dataset": dataset, "videos": len(videos), "visual_streams": [n for n, _ in parts]}
