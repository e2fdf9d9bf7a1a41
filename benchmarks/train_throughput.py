"""Forward+backward throughput of co_av on the CPU (batch 32, T = 20, the paper's dimensions).

    python benchmarks/train_throughput.py [--variant co_av] [--steps 20] [--threads N]

Prints clips/s (clips = batch x T per step) after warm-up steps; also the CE-only loss for
comparison, since HPCL and the hard-pair ranking add their own cost.
"""

from __future__ import annotations

import argparse
import time

import torch

from hlp.models.losses import HighlightLoss
from hlp.models.settings import LossSettings
from hlp.models.variants import build_model


def measure(variant: str, steps: int, batch: int, window: int, lambdas: tuple[float, float, float]) -> float:
    torch.manual_seed(0)
    model = build_model(variant, 2048, 2048)
    loss_fn = HighlightLoss(LossSettings(*lambdas))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    visual, audio = torch.randn(batch, window, 2048), torch.randn(batch, window, 2048)
    targets = (torch.rand(batch, window) > 0.6).float()
    mask = torch.ones(batch, window, dtype=torch.bool)
    model.train()
    for step in range(steps + 3):
        if step == 3:
            start = time.perf_counter()
        loss = loss_fn(model(visual, audio, mask), targets, mask)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch * window / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="co_av")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    full = measure(args.variant, args.steps, args.batch, args.window, (1.0, 0.3, 0.1))
    ce_only = measure(args.variant, args.steps, args.batch, args.window, (1.0, 0.0, 0.0))
    print(f"{args.variant} forward+backward, batch {args.batch}, T={args.window}, {torch.get_num_threads()} threads")
    print(f"  CE + HPCL + rank : {full:8.1f} clips/s")
    print(f"  CE only          : {ce_only:8.1f} clips/s")
    print(f"  ratio (full / CE-only): {full / ce_only:.3f}")


if __name__ == "__main__":
    main()
