"""Sweep costs: parallel trials, the fixed cost of a trial and where it goes, measured in one run.

    python benchmarks/sweep_costs.py [--trials 8] [--epochs 3]

1. Parallelism: the wall time of `--trials` short trials at max_concurrent 1 against 2, as a
   ratio. Each trial is a Tune driver (no CPU reserved, idle while it waits) plus one Ray Train
   worker (1 CPU, 1 thread: one seed, `search.seeds=[0]`). Beside each, the share of the
   machine's CPU time that was busy (Linux /proc/stat): near 1 at concurrency 2, the cores are
   the limit, and only less work per trial, not more overlap, makes trials faster. The peak
   number of trials that ran at once shows that the sweep's concurrency limit, which follows
   what the cluster can place, kept 2 on this cluster (it prints why when it lowers it).
2. Fixed cost: trials of 0 epochs (data from the object store, Ray Train start, MLflow child run,
   the epoch-0 validation), as seconds per trial at max_concurrent 1.
3. Where the fixed cost goes: the same number of Tune trials that do nothing, then trials that
   run a TorchTrainer whose worker does nothing (Ray Train V2's start and stop alone), with Ray's
   own settings and with the ones hlp gives a Ray it starts (`hlp.cluster.LOCAL_TRAIN_ENV`).
   What a 0-epoch trial costs beyond the empty TorchTrainer is hlp's own work.
4. Why the fixed cost has a floor: the actors (each its own new process) that Ray starts for each
   0-epoch trial, read from Ray's actor table, and the CPU seconds that importing what each kind
   of process needs costs (a fresh `python -c "import ..."`, as the process would).
Parts 1-2 run on a Ray started as `hlp` starts one; the Ray of part 3 with Ray's settings is a
second one, started after the first stops. ASHA cannot stop these trials (grace period = epochs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import ray
import ray.train
from ray import tune

from hlp.cluster import LOCAL_TRAIN_ENV, ensure_ray
from hlp.config import load_config
from hlp.data.datasets import load_dataset_for
from hlp.data.synth import SynthSpec, write_synthetic
from hlp.sweep.run import DRIVER_MEMORY, search
from hlp.tracking import Tracker

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "hpcl.yaml"
SMALL = ["model.d_model=32", "model.heads=2", "model.d_k=32", "model.d_v=32", "model.ffn_dim=64"]


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of all cores since boot: the first line of /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def peak_at_once(grid) -> int:
    """The most trials that ran at the same moment (from each trial's start and last report):
    what search.max_concurrent became on this cluster."""
    ends = [r.metrics["timestamp"] for r in grid if "timestamp" in r.metrics]
    starts = [r.metrics["timestamp"] - r.metrics.get("time_total_s", 0) for r in grid if "timestamp" in r.metrics]
    running = peak = 0
    for _, step in sorted([(t, -1) for t in ends] + [(t, 1) for t in starts]):  # an end before a start at a tie
        running += step
        peak = max(peak, running)
    return peak


def timed_search(work: Path, name: str, trials: int, epochs: int, concurrent: int) -> tuple[float, list[float], float]:
    cfg = load_config(EXPERIMENT, [
        *SMALL, f"name={name}", f"data.root={work / 'data'}", f"train.epochs={epochs}", "train.seeds=[0]",
        "search.seeds=[0]", "train.threads=1", f"search.num_samples={trials}", f"search.max_concurrent={concurrent}",
        f"search.grace_period={max(1, epochs)}", f"resources.storage_path={work / 'ray'}",
        f"tracking.uri=sqlite:///{work / 'mlflow.db'}", f"tracking.experiment={name}",
    ])
    parent = Tracker(cfg.tracking.uri, cfg.tracking.experiment, name, {}, True)
    (busy, total), start = cpu_ticks(), time.perf_counter()
    grid = search(cfg, parent.run_id, log=lambda line: print(line, file=sys.stderr), dataset=load_dataset_for(cfg.data))
    wall = time.perf_counter() - start
    busy_after, total_after = cpu_ticks()
    PEAKS[name] = peak_at_once(grid)
    return wall, [r.metrics.get("time_total_s", float("nan")) for r in grid], (busy_after - busy) / (total_after - total)


PEAKS: dict[str, int] = {}  # search name -> the most trials that ran at once


def actor_ids() -> set[str]:
    from ray._private import state  # Ray's actor table, dead actors included (private, fine for a benchmark)

    return set(state.actors())


def actors_started(before: set[str], trials: int) -> dict[str, float]:
    """Actors started since `before`, per trial, by class; every actor is a process of its own."""
    from ray._private import state

    new = [a for i, a in state.actors().items() if i not in before]
    counts = Counter(a["ActorClassName"] for a in new)
    return {name: round(n / trials, 2) for name, n in counts.most_common()}


# What each kind of process of a trial imports before it can do its part.
IMPORTS = {
    "trial driver (Tune actor: hlp.sweep.trial)": "hlp.sweep.trial",
    "Train controller (TorchConfig: ray.train.torch)": "ray.train.torch",
    "Train worker (hlp.train.ray_train)": "hlp.train.ray_train",
    "any Ray actor (ray)": "ray",
}


def import_cpu_s(module: str, repeats: int = 3) -> float:
    """CPU seconds (user + system) of a fresh interpreter importing `module`, the least of `repeats`."""
    best = float("inf")
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return round(best, 2)


def _idle_worker(config: dict) -> None:
    ray.train.report({"val_map": 0.0})


def _empty_trial(params: dict) -> None:
    tune.report({"val_map": 0.0})


def _empty_trainer_trial(params: dict) -> None:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    TorchTrainer(_idle_worker, scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                 run_config=RunConfig(name=tune.get_context().get_trial_id(), storage_path=params["storage"],
                                      callbacks=[TuneReportCallback()])).fit()


def per_trial(work: Path, trainable, trials: int) -> float:
    """Seconds per trial of `trials` in a row, as `hlp sweep` schedules them (no CPU for the driver)."""
    tuner = tune.Tuner(tune.with_resources(trainable, {"CPU": 0, "memory": DRIVER_MEMORY}),
                       param_space={"storage": str(work / "train")},
                       tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=1),
                       run_config=tune.RunConfig(storage_path=str(work / "tune"), name=f"{trainable.__name__}-{time.time_ns()}"))
    start = time.perf_counter()
    tuner.fit()
    return (time.perf_counter() - start) / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fixed-trials", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hlp-sweep-costs-"))
    write_synthetic(str(work / "data"), SynthSpec(videos_per_domain=16, min_clips=40, max_clips=80))
    user_env = {k: os.environ[k] for k in LOCAL_TRAIN_ENV if k in os.environ}
    ensure_ray("local")  # as `hlp sweep` starts Ray on a machine of one's own

    one, _, busy_one = timed_search(work, "conc1", args.trials, args.epochs, 1)
    two, _, busy_two = timed_search(work, "conc2", args.trials, args.epochs, 2)
    before = actor_ids()
    zero, in_trial, _ = timed_search(work, "zero", args.fixed_trials, 0, 1)
    census = actors_started(before, args.fixed_trials)
    empty = per_trial(work, _empty_trial, args.fixed_trials)
    trainer_hlp = per_trial(work, _empty_trainer_trial, args.fixed_trials)
    ray.shutdown()
    for key in set(LOCAL_TRAIN_ENV) - set(user_env):  # Ray's own settings, for the comparison
        del os.environ[key]
    ray.init(address="local")
    trainer_ray = per_trial(work, _empty_trainer_trial, args.fixed_trials)
    fixed = zero / args.fixed_trials
    imports = {kind: import_cpu_s(module) for kind, module in IMPORTS.items()}
    result = {
        "trials": args.trials, "epochs": args.epochs, "cpus": os.cpu_count(),
        "wall_s_concurrency_1": round(one, 1), "wall_s_concurrency_2": round(two, 1),
        "speedup_2_over_1": round(one / two, 3),
        "peak_trials_at_once": {"concurrency_1": PEAKS["conc1"], "concurrency_2": PEAKS["conc2"]},
        "cpu_busy_concurrency_1": round(busy_one, 2), "cpu_busy_concurrency_2": round(busy_two, 2),
        "fixed_cost_s_per_trial": round(fixed, 1),
        "zero_epoch_trial_time_total_s": [round(t, 1) for t in in_trial],
        "breakdown_s_per_trial": {
            "tune_trial_doing_nothing": round(empty, 1),
            "empty_torchtrainer_ray_defaults": round(trainer_ray - empty, 1),
            "empty_torchtrainer_hlp_local_settings": round(trainer_hlp - empty, 1),
            "hlp_work_beyond_the_empty_trainer": round(fixed - trainer_hlp, 1),
        },
        "actors_started_per_zero_epoch_trial": census,
        "import_cpu_s": imports,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
