"""Model-stage throughput of extraction on a GPU: clips/s of r3d_18 + Cnn14 with bf16 autocast.

    python benchmarks/extract_gpu.py [--batch 64] [--steps 20] [--device cuda]

Clips are decoded once from a synthetic video and reused, so the figure is the networks'
speed (the bound of the model stage), in fp32 and in bf16, through the same `ClipEmbedder`
the Ray Data actors use. Random (seeded) weights: speed does not depend on their values.
`--device cpu` runs a short smoke test where no GPU is lent.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hlp.extract.embedding import ClipEmbedder
from hlp.extract.media import ClipChunk, iter_chunks
from hlp.extract.registry import VISUAL, audio_info, visual_info
from hlp.extract.synth_media import write_test_video


def batch_of_clips(batch: int) -> ClipChunk:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        write_test_video(path, 8.0, size=(360, 640), highlights=[(2.0, 4.0)])
        chunk = next(iter_chunks(str(path), clip_seconds=2.0, last_clip="pad", contract=VISUAL["r3d_18"].contract,
                                 chunk_clips=4))
    pick = np.arange(batch) % len(chunk.clip_index)
    return ClipChunk(np.arange(batch), chunk.start_s[pick], chunk.end_s[pick], chunk.frames[pick],
                     chunk.audio[pick], True, False)


def clips_per_second(embed: ClipEmbedder, chunk: ClipChunk, steps: int, device: str) -> float:
    for _ in range(3):  # warm-up: cuDNN autotuning, allocator
        embed(chunk)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        embed(chunk)  # returns numpy, so each step ends synchronised
    return steps * len(chunk.clip_index) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    chunk = batch_of_clips(args.batch)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    rates = {}
    for bf16 in (False, True):
        embed = ClipEmbedder(visual_info("r3d_18", "random"), audio_info("cnn14", "random"), args.device, bf16=bf16)
        rates[bf16] = clips_per_second(embed, chunk, args.steps, args.device)
        print(f"{name}: r3d_18 + Cnn14, batch {args.batch}, {'bf16 autocast' if bf16 else 'fp32'}: "
              f"{rates[bf16]:.1f} clips/s")
    print(f"bf16 / fp32 = {rates[True] / rates[False]:.2f}")


if __name__ == "__main__":
    main()
