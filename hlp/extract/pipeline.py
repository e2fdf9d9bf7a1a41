"""`hlp extract`: videos -> clip features in a Parquet store, sharded by Ray Data.

Two stages, as in Ray's batch-inference examples: CPU tasks decode a video into chunks of
clips (streaming, so a long video never sits in memory), and an actor pool holds the networks
and writes each chunk's features. The driver only follows the stream and marks each video
`done` in the manifest once all its chunks are written, or `failed` with the reason; a rerun
skips `done` videos, so an interrupted job resumes without redoing or duplicating work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np

from hlp.cluster import ensure_ray, verbose
from hlp.data.feature_store import Clips, FeatureStore
from hlp.extract.config import ExtractionConfig
from hlp.extract.embedding import ClipEmbedder
from hlp.extract.inputs import VideoInput, list_inputs, open_video
from hlp.extract.media import ClipChunk, MediaError, iter_chunks
from hlp.extract.registry import VISUAL, ExtractorInfo, audio_info, visual_info

Progress = Callable[[int, int], None]  # (videos finished, videos pending)
# Per decode task: FFmpeg's frame pool for a 4K H.264 stream (16 reference frames of ~12 MB)
# plus one chunk of clips (16 x 16 x 112 x 112 x 3 bytes and 16 x 64000 audio floats).
DECODE_MEMORY = 512 * 2**20


def store_meta(cfg: ExtractionConfig) -> dict:
    """What every row of the store shares; resolving the weights here fails before Ray starts."""
    visual = visual_info(cfg.visual.name, cfg.visual.weights).as_dict()
    return {
        "clip_seconds": cfg.clip.seconds, "last_clip": cfg.clip.last, "chunk_clips": cfg.resources.batch_size,
        "visual": visual, "audio": audio_info(cfg.audio.name, cfg.audio.weights).as_dict(),
        "visual_parts": [["rgb", visual["dim"]]],  # one RGB stream (the UMT release has rgb + optical flow)
        "frame_contract": asdict(VISUAL[cfg.visual.name].contract),
    }


@dataclass
class _Tracking:
    """What the driver knows of one video while its chunks stream past."""

    clips: dict[int, int] = field(default_factory=dict)  # chunk -> clips (a retried chunk counts once)
    last: int | None = None
    duration_s: float = 0.0
    nodes: set[str] = field(default_factory=set)


def run_extraction(cfg: ExtractionConfig, log: Callable[[str], None] = print,
                   progress: Progress | None = None) -> dict:
    meta = store_meta(cfg)
    inputs = list_inputs(cfg.inputs)
    store = FeatureStore.create_or_check(cfg.output, meta)
    done = {vid for vid, e in store.manifest().items() if e["status"] == "done"}
    pending = [v for v in inputs if v.video_id not in done]
    log(f"{len(inputs)} videos: {len(inputs) - len(pending)} already done, {len(pending)} to extract into {cfg.output}")
    started = time.time()
    # What an interrupted run left of the pending videos goes first (here, once, not in a decode
    # task that Ray may retry while its earlier chunks are already counted).
    store.clear_videos([v.video_id for v in pending])
    if pending:
        with _ray_data_output(log):
            finished = _stream(cfg, store, pending, progress)
    else:
        finished = {}
    failed = {vid: e["reason"] for vid, e in finished.items() if e["status"] == "failed"}
    for vid, reason in failed.items():
        log(f"failed: {vid}: {reason}")
    return {"store": cfg.output, "videos": len(inputs), "already_done": len(inputs) - len(pending),
            "done": len(finished) - len(failed), "failed": failed,
            "clips": sum(e.get("clips", 0) for e in finished.values()), "seconds": round(time.time() - started, 1)}


@contextmanager
def _ray_data_output(log: Callable[[str], None]) -> Iterator[None]:
    """Without --verbose, Ray Data says nothing on the console below ERROR: not its start, its
    per-operator progress every few seconds, its "execution finished", nor its own progress bars
    (hlp's bar counts the videos). Its log file (logs/ray-data in Ray's session folder) keeps
    everything. One line of it hlp says itself: the execution plan, which shows that decoding
    is a stage of its own, not fused into the model actors. A RAY_DATA_LOGGING_CONFIG of the
    user's own is theirs, and is left alone."""
    import os

    import ray.data  # configures the "ray.data" logger
    from ray.data._internal import logging as data_logging

    if verbose():
        yield
        return
    context = ray.data.DataContext.get_current()
    bars = context.enable_progress_bars
    context.enable_progress_bars = False
    console = data_logging.DEFAULT_CONFIG.get("handlers", {}).get("console", {})
    level = console.get("level")
    own_config = os.environ.get(data_logging.RAY_DATA_LOGGING_CONFIG_ENV_VAR_NAME) is None and "level" in console
    if own_config:
        console["level"] = "ERROR"  # read again each time Ray Data configures its logger (per dataset)
        data_logging.configure_logging()
    plan = _PlanLine(log)
    executor = logging.getLogger("ray.data._internal.execution.streaming_executor")  # where Ray logs the plan
    executor.addHandler(plan)
    try:
        yield
    finally:
        executor.removeHandler(plan)
        context.enable_progress_bars = bars
        if own_config:
            console["level"] = level
            data_logging.configure_logging()


class _PlanLine(logging.Handler):
    """Says Ray Data's "Execution plan of Dataset ...: A -> B -> C" as hlp's own `plan: A -> B -> C`."""

    def __init__(self, log: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Execution plan of Dataset"):
            self._log(f"Ray Data plan: {message.partition(': ')[2]}")


def _stream(cfg: ExtractionConfig, store: FeatureStore, pending: list[VideoInput],
            progress: Progress | None) -> dict[str, dict]:
    import ray
    from ray.data import ActorPoolStrategy

    ensure_ray(cfg.resources.address)
    res = cfg.resources
    items = [{"video_id": v.video_id, "uri": v.uri} for v in pending]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    # Ray Data spreads tasks over the nodes by default (DataContext.scheduling_strategy). The
    # memory reservation keeps a node from taking more decode tasks than it can hold and, as the
    # stages' resources then differ, keeps Ray Data from fusing the decode tasks into the model
    # actors, which would serialise decoding and inference.
    ds = ds.map_batches(decode_videos, batch_size=1, num_cpus=res.decode_cpus, memory=DECODE_MEMORY, fn_kwargs={
        "clip_seconds": cfg.clip.seconds, "last_clip": cfg.clip.last,
        "visual": cfg.visual.name, "chunk_clips": res.batch_size})
    ds = ds.map_batches(EmbedAndWrite, batch_size=1, compute=ActorPoolStrategy(size=res.actors),
                        num_gpus=res.gpus_per_actor, num_cpus=res.cpus_per_actor, fn_constructor_kwargs={
                            "store_uri": cfg.output, "threads": res.threads, "bf16": res.bf16})
    tracking: dict[str, _Tracking] = {}
    finished: dict[str, dict] = {}
    for row in ds.iter_rows():
        entry = _follow(row, tracking, finished)
        if entry is not None:
            if entry["status"] == "failed":
                store.clear_video(entry["video_id"])  # chunks made before a mid-file error are not kept
            store.record(entry)
            finished[entry["video_id"]] = entry
            if progress:
                progress(len(finished), len(pending))
    for video in pending:  # nothing should be left; if it is, say so rather than lose it
        if video.video_id not in finished:
            entry = _entry(video.video_id, video.uri, "failed", "incomplete: the pipeline ended before its last chunk")
            store.record(entry)
            finished[video.video_id] = entry
    return finished


def _follow(row: dict, tracking: dict[str, _Tracking], finished: dict[str, dict]) -> dict | None:
    """The manifest entry a row completes, if any."""
    vid = str(row["video_id"])
    if vid in finished:
        return None  # a failed video's chunks still in flight
    if row["status"] == "failed":
        return _entry(vid, str(row["uri"]), "failed", str(row["reason"]))
    t = tracking.setdefault(vid, _Tracking())
    t.clips[int(row["chunk"])] = int(row["clips"])
    t.nodes.update({str(row["decode_node"]), str(row["model_node"])})
    if row["last"]:
        t.last, t.duration_s = int(row["chunk"]), float(row["duration_s"])
    if t.last is None or len(t.clips) != t.last + 1:
        return None
    del tracking[vid]
    return _entry(vid, str(row["uri"]), "done", "", clips=sum(t.clips.values()), has_audio=bool(row["has_audio"]),
                  duration_s=t.duration_s, chunks=t.last + 1, nodes=sorted(t.nodes))


def _entry(video_id: str, uri: str, status: str, reason: str, **extra) -> dict:
    return {"video_id": video_id, "source": uri, "status": status, "reason": reason,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _row(video_id: str, uri: str, **values) -> dict[str, np.ndarray]:
    """One Ray Data row (a batch of one); failure rows carry the same columns, empty."""
    row = {"video_id": video_id, "uri": uri, "status": "ok", "reason": "", "chunk": -1, "last": False,
           "has_audio": False, "duration_s": 0.0, "clips": 0, "decode_node": _node_id(), "model_node": "",
           "clip_index": np.zeros(0, np.int64), "start_s": np.zeros(0), "end_s": np.zeros(0),
           "frames": np.zeros((0, 1, 1, 1, 3), np.uint8), "audio": np.zeros((0, 1), np.float32)}
    row.update(values)
    return {k: np.expand_dims(np.asarray(v), 0) for k, v in row.items()}


def decode_videos(batch: dict[str, np.ndarray], *, clip_seconds: float, last_clip: str,
                  visual: str, chunk_clips: int) -> Iterator[dict[str, np.ndarray]]:
    """CPU stage: one video in, its chunks out (a generator, so chunks stream downstream)."""
    for vid, uri in zip(batch["video_id"], batch["uri"]):
        vid, uri = str(vid), str(uri)
        try:
            with open_video(uri) as source:
                for i, chunk in enumerate(iter_chunks(source, clip_seconds=clip_seconds, last_clip=last_clip,
                                                      contract=VISUAL[visual].contract, chunk_clips=chunk_clips)):
                    yield _row(vid, uri, chunk=i, last=chunk.last, has_audio=chunk.has_audio,
                               duration_s=float(chunk.end_s[-1]), clips=len(chunk.clip_index),
                               clip_index=chunk.clip_index, start_s=chunk.start_s, end_s=chunk.end_s,
                               frames=chunk.frames, audio=chunk.audio)
        except MediaError as exc:
            yield _row(vid, uri, status="failed", reason=str(exc))
        except Exception as exc:  # noqa: BLE001 - a bad video must not stop the job
            yield _row(vid, uri, status="failed", reason=f"{type(exc).__name__}: {exc}")


class EmbedAndWrite:
    """Model stage: holds both networks (built once per actor) and writes each chunk's rows."""

    def __init__(self, store_uri: str, threads: int | None, bf16: bool) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.store = FeatureStore.open(store_uri)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.embed = ClipEmbedder(ExtractorInfo(**self.store.meta["visual"]), ExtractorInfo(**self.store.meta["audio"]),
                                  device, bf16)
        self.node = _node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {k: v for k, v in batch.items() if k not in ("frames", "audio", "clip_index", "start_s", "end_s")}
        out["model_node"] = np.array([self.node])
        if batch["status"][0] != "ok":
            return out
        chunk = ClipChunk(clip_index=batch["clip_index"][0], start_s=batch["start_s"][0], end_s=batch["end_s"][0],
                          frames=batch["frames"][0], audio=batch["audio"][0], has_audio=bool(batch["has_audio"][0]),
                          last=bool(batch["last"][0]))
        visual, audio = self.embed(chunk)
        if not (np.isfinite(visual).all() and np.isfinite(audio).all()):
            out["status"], out["reason"] = np.array(["failed"]), np.array(["the extractor produced NaN or Inf features"])
            return out
        self.store.write_chunk(str(batch["video_id"][0]), int(batch["chunk"][0]),
                               Clips(chunk.clip_index, chunk.start_s, chunk.end_s, visual, audio, chunk.has_audio))
        return out
