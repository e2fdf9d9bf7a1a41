"""t-SNE of one report panel with OpenMP's default threads vs one thread, in the same process.

    python benchmarks/tsne_threads.py [--points 400] [--dim 32]

Run it while the machine is busy (e.g. beside `hlp reproduce`) to see why reproduce/figures.py limits
t-SNE to one thread: on a loaded 2-CPU machine the default threads spin against the other work.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits


def timed(x: np.ndarray, threads: int | None) -> float:
    start = time.perf_counter()
    if threads is None:
        TSNE(2, init="pca", random_state=0).fit_transform(x)
    else:
        with threadpool_limits(threads):
            TSNE(2, init="pca", random_state=0).fit_transform(x)
    return time.perf_counter() - start


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=400)
    parser.add_argument("--dim", type=int, default=32)
    args = parser.parse_args()
    x = np.random.default_rng(0).normal(size=(args.points, args.dim)).astype(np.float32)
    default, single = timed(x, None), timed(x, 1)
    print(f"default threads {default:.2f} s, one thread {single:.2f} s: {default / single:.1f}x")
