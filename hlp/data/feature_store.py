"""The Parquet feature store that `hlp extract` writes and training reads.

Layout under a local directory or `s3://` prefix:
- `store.json`: the clip grid and the extractors (name, version, weights, dim) every row used.
- `clips/<video>/chunk-NNNNN.parquet`: one file per chunk of `chunk_clips` clips, one row per
  clip. A chunk's name follows from the video and its position, so a retried or resumed
  write replaces the same file: no two writers collide and no clip is stored twice.
- `manifest/<video>.json`: `done` (with its clip count) or `failed` (with the reason). Only
  `done` videos are read; the chunks of an interrupted video are rewritten on the next run.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hlp.storage import filesystem

FORMAT = "hlp-feature-store/1"


class StoreError(ValueError):
    """A store that is missing, of another format, or made with other settings."""


def schema(visual_dim: int, audio_dim: int) -> pa.Schema:
    return pa.schema([
        ("video_id", pa.string()),
        ("clip_index", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("visual", pa.list_(pa.float32(), visual_dim)),
        ("audio", pa.list_(pa.float32(), audio_dim)),
        ("has_audio", pa.bool_()),
        ("visual_extractor", pa.string()),
        ("visual_version", pa.string()),
        ("audio_extractor", pa.string()),
        ("audio_version", pa.string()),
    ])


@dataclass(frozen=True)
class Clips:
    """The clips of one chunk (or one whole video), row-aligned."""

    clip_index: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    visual: np.ndarray  # (n, Dv) float32
    audio: np.ndarray  # (n, Da) float32
    has_audio: bool


def video_key(video_id: str) -> str:
    """A path-safe, collision-free name (YouTube ids start with '-', user ids may hold '/')."""
    return quote(video_id, safe="-_.")


class FeatureStore:
    def __init__(self, uri: str, meta: dict) -> None:
        self.uri, self.meta = uri, meta
        self.fs, self.base = filesystem(uri)

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, uri: str) -> FeatureStore:
        fs, base = filesystem(uri)
        path = f"{base}/store.json"
        if not fs.exists(path):
            raise StoreError(f"not a feature store: {path} is missing (write one with `hlp extract` "
                             f"or `hlp data import-umt`)")
        meta = json.loads(fs.cat_file(path))
        if meta.get("format") != FORMAT:
            raise StoreError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        return cls(uri, meta)

    @classmethod
    def create_or_check(cls, uri: str, meta: dict) -> FeatureStore:
        """A new store, or an existing one made with exactly these settings (else its rows
        would mix features of different networks or clip grids)."""
        meta = json.loads(json.dumps({"format": FORMAT, **meta}))  # compare as stored (tuples are lists)
        fs, base = filesystem(uri)
        if not fs.exists(f"{base}/store.json"):
            fs.makedirs(base, exist_ok=True)
            fs.pipe_file(f"{base}/store.json", json.dumps(meta, indent=1).encode())
            return cls(uri, meta)
        store = cls.open(uri)
        diff = {k: (store.meta.get(k), v) for k, v in meta.items() if store.meta.get(k) != v}
        if diff:
            details = "; ".join(f"{k}: store has {old!r}, asked {new!r}" for k, (old, new) in diff.items())
            raise StoreError(f"feature store {uri} was written with other settings ({details}); "
                             f"write to another output")
        return store

    @property
    def visual_dim(self) -> int:
        return int(self.meta["visual"]["dim"])

    @property
    def audio_dim(self) -> int:
        return int(self.meta["audio"]["dim"])

    # -- manifest ----------------------------------------------------------------------------
    def manifest(self) -> dict[str, dict]:
        paths = self.fs.glob(f"{self.base}/manifest/*.json")
        if not paths:
            return {}
        entries = [json.loads(raw) for raw in self.fs.cat(paths).values()]
        return {e["video_id"]: e for e in entries}

    def record(self, entry: dict) -> None:
        self.fs.makedirs(f"{self.base}/manifest", exist_ok=True)
        self.fs.pipe_file(f"{self.base}/manifest/{video_key(entry['video_id'])}.json",
                          json.dumps(entry, indent=1).encode())

    # -- clips -------------------------------------------------------------------------------
    def clear_video(self, video_id: str) -> None:
        """Drop what an interrupted run left of a video before it is written again."""
        self.clear_videos([video_id])

    def clear_videos(self, video_ids: list[str]) -> None:
        root = f"{self.base}/clips"
        keys = {video_key(v) for v in video_ids}
        present = {p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(root, detail=False)} if self.fs.exists(root) else set()
        for key in sorted(keys & present):
            self.fs.rm(f"{root}/{key}", recursive=True)

    def write_chunk(self, video_id: str, chunk: int, clips: Clips) -> None:
        table = self.table(video_id, clips)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        directory = f"{self.base}/clips/{video_key(video_id)}"
        self.fs.makedirs(directory, exist_ok=True)
        self.fs.pipe_file(f"{directory}/chunk-{chunk:05d}.parquet", buffer.getvalue())

    def table(self, video_id: str, clips: Clips) -> pa.Table:
        n = len(clips.clip_index)
        v, a = self.meta["visual"], self.meta["audio"]
        columns = {
            "video_id": [video_id] * n,
            "clip_index": clips.clip_index.astype(np.int32),
            "start_s": clips.start_s.astype(np.float64),
            "end_s": clips.end_s.astype(np.float64),
            "visual": _fixed(clips.visual, self.visual_dim),
            "audio": _fixed(clips.audio, self.audio_dim),
            "has_audio": [clips.has_audio] * n,
            "visual_extractor": [v["name"]] * n, "visual_version": [v["version"]] * n,
            "audio_extractor": [a["name"]] * n, "audio_version": [a["version"]] * n,
        }
        return pa.table(columns, schema=schema(self.visual_dim, self.audio_dim))

    def read_videos(self, video_ids: list[str] | None = None,
                    manifest: dict[str, dict] | None = None) -> dict[str, Clips]:
        """The clips of every `done` video (or of `video_ids` among them), in clip order;
        pass the manifest when it is already read (on S3 it is a listing and a file per video)."""
        done = {vid for vid, e in (manifest or self.manifest()).items() if e["status"] == "done"}
        wanted = sorted(done if video_ids is None else done & set(video_ids))
        keys = {video_key(vid) for vid in wanted}
        listed = self.fs.find(f"{self.base}/clips") if keys else []  # one listing, not one per video
        paths = sorted(p for p in listed if p.endswith(".parquet") and p.rsplit("/", 2)[-2] in keys)
        if not paths:
            return {}
        table = pq.read_table(paths, filesystem=self.fs, schema=schema(self.visual_dim, self.audio_dim))
        table = table.sort_by([("video_id", "ascending"), ("clip_index", "ascending")])
        return _split_by_video(table)


def _fixed(array: np.ndarray, dim: int) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(array, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, dim)


def _column(table: pa.Table, name: str, dim: int) -> np.ndarray:
    values = table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(table), dim)


def _split_by_video(table: pa.Table) -> dict[str, Clips]:
    ids = table.column("video_id").to_numpy(zero_copy_only=False)
    bounds = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    out: dict[str, Clips] = {}
    dv, da = table.schema.field("visual").type.list_size, table.schema.field("audio").type.list_size
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(ids)]):
        part = table.slice(int(start), int(stop - start))
        out[str(ids[start])] = Clips(
            clip_index=part.column("clip_index").to_numpy(), start_s=part.column("start_s").to_numpy(),
            end_s=part.column("end_s").to_numpy(), visual=_column(part, "visual", dv),
            audio=_column(part, "audio", da), has_audio=bool(part.column("has_audio")[0].as_py()),
        )
    return out
