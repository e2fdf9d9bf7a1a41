"""Extraction throughput: the Ray Data pipeline against a plain sequential loop, same videos.

    python benchmarks/extract_throughput.py [--videos 20] [--seconds 6] [--actors 1]

Both run on this machine on the same synthetic H.264 + AAC videos with the same (random,
seeded) r3d_18 + Cnn14 networks. The loop decodes a video, then runs the networks on its
clips, video after video, in this process. It times decoding and inference separately, so
the pipeline can also be set against its bound max(decode time, model time): the most that
overlapping the two stages can give. The model actors get the loop's torch threads (Ray
would give a 1-CPU actor one thread), so both sides use the same cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from hlp.config import config_from_dict
from hlp.extract.config import ExtractionConfig
from hlp.extract.embedding import ClipEmbedder
from hlp.extract.media import iter_chunks
from hlp.extract.pipeline import run_extraction
from hlp.extract.registry import VISUAL, audio_info, visual_info
from hlp.extract.synth_media import write_test_video


def write_videos(folder: Path, count: int, seconds: float) -> None:
    for i in range(count):
        write_test_video(folder / f"v{i:03d}.mp4", seconds, size=(240, 320), highlights=[(2.0, 4.0)], seed=i)


def sequential(folder: Path, batch: int) -> tuple[float, float, int]:
    """(decode seconds, model seconds, clips) for decode-then-infer, one video after another."""
    embed = ClipEmbedder(visual_info("r3d_18", "random"), audio_info("cnn14", "random"))
    decode = model = 0.0
    clips = 0
    for path in sorted(folder.glob("*.mp4")):
        chunks, start = [], time.perf_counter()
        chunks = list(iter_chunks(str(path), clip_seconds=2.0, last_clip="pad", contract=VISUAL["r3d_18"].contract,
                                  chunk_clips=batch))
        decode += time.perf_counter() - start
        start = time.perf_counter()
        for chunk in chunks:
            embed(chunk)
            clips += len(chunk.clip_index)
        model += time.perf_counter() - start
    return decode, model, clips


def pipeline(folder: Path, store: Path, batch: int, actors: int) -> float:
    cfg = config_from_dict({"inputs": str(folder), "output": str(store),
                            "visual": {"name": "r3d_18", "weights": "random"},
                            "audio": {"name": "cnn14", "weights": "random"},
                            "resources": {"batch_size": batch, "actors": actors,
                                          "threads": max(1, torch.get_num_threads() // actors)}},
                           schema=ExtractionConfig)
    start = time.perf_counter()
    summary = run_extraction(cfg, log=lambda line: None)
    assert not summary["failed"], summary["failed"]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--actors", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "videos"
        folder.mkdir()
        write_videos(folder, args.videos, args.seconds)
        import ray

        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False)
        pipeline(folder, Path(tmp) / "warmup", args.batch, args.actors)  # Ray's own start-up, not extraction
        wall = pipeline(folder, Path(tmp) / "store", args.batch, args.actors)
        ray.shutdown()
        decode, model, clips = sequential(folder, args.batch)
    loop = decode + model
    bound = max(decode, model)
    print(f"{args.videos} videos x {args.seconds:g} s, {clips} clips, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()} (loop)")
    print(f"sequential loop : {loop:7.1f} s  (decode {decode:.1f} s + model {model:.1f} s)  {clips / loop:.2f} clips/s")
    print(f"Ray Data        : {wall:7.1f} s  {clips / wall:.2f} clips/s  ({args.actors} model actor(s))")
    print(f"speed-up over the loop      : {loop / wall:.2f}x")
    print(f"fraction of the bound max(decode, model) = {bound:.1f} s reached: {bound / wall:.2f}")


if __name__ == "__main__":
    main()
