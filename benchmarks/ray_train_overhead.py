"""Ray Train overhead: steady-state epoch time of the same training through a 1-worker
TorchTrainer against the plain single-process loop, in one run on the same data.

    python benchmarks/ray_train_overhead.py [--epochs 6] [--threads 2] [--videos 48]

Both run `train.loop.fit` on the same synthetic set, with the same seed and thread count; the
Ray side is `train.ray_train.fit_with_ray` (epoch times come from the worker, through MLflow).
Steady state: median over epochs 2..N (epoch 0 scores the untrained model, epoch 1 warms up).
Prints both and their ratio (plain / Ray; 1.0 = no overhead, the goal is >= 0.95).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from hlp.cluster import ensure_ray
from hlp.config import load_config
from hlp.data.synth import SynthSpec, write_synthetic
from hlp.train.loop import fit
from hlp.train.ray_train import fit_with_ray
from hlp.train.runs import load_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--videos", type=int, default=48, help="videos per synthetic domain")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hlp-overhead-"))
    write_synthetic(str(work / "data"), SynthSpec(videos_per_domain=args.videos, min_clips=60, max_clips=160,
                                                  rgb_dim=512, audio_dim=1024))
    cfg = load_config(None, [
        f"data.root={work / 'data'}", f"train.epochs={args.epochs}", "train.seeds=[0]",
        f"train.threads={args.threads}", f"resources.cpus_per_worker={args.threads}",
        f"resources.storage_path={work / 'ray'}", f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
        "tracking.experiment=overhead", "eval.scoring=full",
    ])

    plain: list[float] = []
    clock = [time.perf_counter()]

    def tick(record, state) -> None:
        now = time.perf_counter()
        plain.append(now - clock[0])
        clock[0] = now

    fit(load_splits(cfg, 0), cfg, 0, on_epoch=tick, score_test=False)

    from hlp.tracking import Tracker

    ensure_ray(None)
    run = Tracker(cfg.tracking.uri, cfg.tracking.experiment, "ray", {}, True)
    fit_with_ray(cfg, 0, run.run_id, score_test=False)
    history = run.client.get_metric_history(run.run_id, "seed0.epoch_time_s")
    ray_times = [m.value for m in sorted(history, key=lambda m: m.step)]

    steady_plain, steady_ray = statistics.median(plain[2:]), statistics.median(ray_times[2:])
    print(f"epochs 2..{args.epochs}, {args.threads} threads, {args.videos} videos/domain x 2 domains")
    print(f"plain loop : median epoch {steady_plain:.3f} s   ({', '.join(f'{t:.2f}' for t in plain)})")
    print(f"Ray Train  : median epoch {steady_ray:.3f} s   ({', '.join(f'{t:.2f}' for t in ray_times)})")
    print(f"throughput ratio Ray / plain = {steady_plain / steady_ray:.3f}  (goal >= 0.95)")


if __name__ == "__main__":
    main()
