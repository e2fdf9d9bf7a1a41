"""Sweep costs: parallel trials, and the fixed cost of a trial, measured in one run.

    python benchmarks/sweep_costs.py [--trials 8] [--epochs 3]

1. Parallelism: the wall time of `--trials` short trials at max_concurrent 1 against 2, as a
   ratio. Each trial is a Tune driver (no CPU reserved, idle while it waits) plus one Ray Train
   worker (1 CPU, 1 thread: one seed, `search.seeds=[0]`); Ray is told the machine has 4 logical
   CPUs, as before the driver stopped reserving one, while the real work runs on the cores there are.
2. Fixed cost: trials of 0 epochs (data loading, Ray Train start, MLflow child run, the
   epoch-0 validation), as seconds per trial at max_concurrent 1.
ASHA cannot stop these trials (grace period = epochs), so every trial does the same work.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import ray

from hlp.config import load_config
from hlp.data.synth import SynthSpec, write_synthetic
from hlp.sweep.run import search
from hlp.tracking import Tracker

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "hpcl.yaml"
SMALL = ["model.d_model=32", "model.heads=2", "model.d_k=32", "model.d_v=32", "model.ffn_dim=64"]


def timed_search(work: Path, name: str, trials: int, epochs: int, concurrent: int) -> tuple[float, list[float]]:
    cfg = load_config(EXPERIMENT, [
        *SMALL, f"name={name}", f"data.root={work / 'data'}", f"train.epochs={epochs}", "train.seeds=[0]",
        "search.seeds=[0]", "train.threads=1", f"search.num_samples={trials}", f"search.max_concurrent={concurrent}",
        f"search.grace_period={max(1, epochs)}", f"resources.storage_path={work / 'ray'}",
        f"tracking.uri=sqlite:///{work / 'mlflow.db'}", f"tracking.experiment={name}",
    ])
    parent = Tracker(cfg.tracking.uri, cfg.tracking.experiment, name, {}, True)
    start = time.perf_counter()
    grid = search(cfg, parent.run_id, log=lambda line: None)
    wall = time.perf_counter() - start
    return wall, [r.metrics.get("time_total_s", float("nan")) for r in grid]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fixed-trials", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hlp-sweep-costs-"))
    write_synthetic(str(work / "data"), SynthSpec(videos_per_domain=16, min_clips=40, max_clips=80))
    ray.init(num_cpus=4)

    one, _ = timed_search(work, "conc1", args.trials, args.epochs, 1)
    two, _ = timed_search(work, "conc2", args.trials, args.epochs, 2)
    zero, per_trial = timed_search(work, "zero", args.fixed_trials, 0, 1)
    result = {
        "trials": args.trials, "epochs": args.epochs,
        "wall_s_concurrency_1": round(one, 1), "wall_s_concurrency_2": round(two, 1),
        "speedup_2_over_1": round(one / two, 3),
        "fixed_cost_s_per_trial": round(zero / args.fixed_trials, 1),
        "zero_epoch_trial_time_total_s": [round(t, 1) for t in per_trial],
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
