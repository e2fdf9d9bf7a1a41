"""Sweep costs: parallel trials, the fixed cost of a trial and where it goes, measured in one run.

    python benchmarks/sweep_costs.py [--trials 8] [--epochs 3] [--fixed-trials 4]

1. Parallelism: the wall time of `--trials` short trials at max_concurrent 1 against 2, as a
   ratio. Each trial is Tune's function trainable (no CPU reserved, reused from trial to trial)
   whose one replica (one seed, `search.seeds=[0]`) trains as a Ray task on a pooled worker
   process (1 CPU, 1 thread). Beside each, the share of the machine's CPU time that was busy
   (Linux /proc/stat): near 1 at concurrency 2, the cores are the limit, and only less work per
   trial, not more overlap, makes trials faster. The peak number of trials that ran at once
   shows that the sweep's concurrency limit, which follows what the cluster can place, kept 2
   on this cluster (it prints why when it lowers it).
2. Fixed cost: trials of 0 epochs (data from the object store, the replica task, MLflow child run, the epoch-0 validation, the figure), as seconds of sweep wall time
   per trial at max_concurrent 1. Issue 22 asks at most 5 s.
3. Where the fixed cost goes: the same number of Tune trials that do nothing (reused, as hlp's
   are), trials that run one empty replica task (hlp's pattern, its floor), and trials that run a TorchTrainer whose worker does nothing (the
   pattern before issue 22, with the settings hlp gives a Ray it starts,
   `hlp.cluster.LOCAL_TRAIN_ENV`), as seconds per trial and as the ratio of the two patterns.
4. Why: the actors and the worker processes that Ray started for the 0-epoch trials, per trial
   (from Ray's actor and worker tables), and the CPU seconds that importing what each kind of
   process needs costs (a fresh `python -c "import ..."`, as a new process would).
All parts run on one Ray started as `hlp` starts one. ASHA cannot stop these trials (grace
period = epochs).
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

from hlp.cluster import ensure_ray
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


def peak_at_once(tracking_uri: str, experiment: str) -> int:
    """The most trials that ran at the same moment, from their MLflow runs' start and end
    (milliseconds; Tune's own timestamps are whole seconds): what search.max_concurrent became
    on this cluster."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    runs = [r for r in client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
            if "trial_id" in r.data.tags and r.info.end_time]
    running = peak = 0
    for _, step in sorted([(r.info.end_time, -1) for r in runs] + [(r.info.start_time, 1) for r in runs]):
        running += step  # an end before a start at a tie
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
    actors, workers = actor_ids(), worker_pids()
    (busy, total), start = cpu_ticks(), time.perf_counter()
    grid = search(cfg, parent.run_id, log=lambda line: print(line, file=sys.stderr), dataset=load_dataset_for(cfg.data))
    wall = time.perf_counter() - start
    busy_after, total_after = cpu_ticks()
    PEAKS[name] = peak_at_once(cfg.tracking.uri, cfg.tracking.experiment)
    STARTED[name] = {"trial_processes": len(actor_ids() - actors), "worker_processes": len(worker_pids() - workers)}
    return wall, [r.metrics.get("time_total_s", float("nan")) for r in grid], (busy_after - busy) / (total_after - total)


PEAKS: dict[str, int] = {}  # search name -> the most trials that ran at once
STARTED: dict[str, dict[str, int]] = {}  # search name -> the processes Ray started for it


def actor_ids() -> set[str]:
    from ray._private import state  # Ray's actor table, dead actors included (private, fine for a benchmark)

    return set(state.actors())


def actors_started(before: set[str], trials: int) -> dict[str, float]:
    """Actors started since `before`, per trial, by class; every actor is a process of its own."""
    from ray._private import state

    new = [a for i, a in state.actors().items() if i not in before]
    counts = Counter(a["ActorClassName"] for a in new)
    return {name: round(n / trials, 2) for name, n in counts.most_common()}


def worker_pids() -> set[int]:
    """Every worker process Ray has started (task workers and actors, dead ones included)."""
    from ray.util.state import list_workers

    return {w.pid for w in list_workers(limit=10_000, raise_on_missing_output=False)}


# What each kind of process of a trial imports before it can do its part (once per process:
# the trial's and the replicas' processes are reused).
IMPORTS = {
    "trial (Tune actor: hlp.sweep.trial)": "hlp.sweep.trial",
    "replica task (hlp.sweep.replicas, then the loop: torch)": "hlp.sweep.replicas, hlp.train.loop",
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


@ray.remote(num_cpus=1, max_retries=0)
def _empty_replica():
    yield {"epoch": 0}


def _empty_replica_trial(params: dict) -> None:
    for ref in _empty_replica.options(scheduling_strategy="DEFAULT").remote():
        ray.get(ref)
    tune.report({"val_map": 0.0})


def _empty_trainer_trial(params: dict) -> None:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    TorchTrainer(_idle_worker, scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                 run_config=RunConfig(name=tune.get_context().get_trial_id(), storage_path=params["storage"],
                                      callbacks=[TuneReportCallback()])).fit()


def per_trial(work: Path, trainable, trials: int) -> float:
    """Seconds per trial of `trials` in a row, as `hlp sweep` schedules them (no CPU for the
    trial's own process, reused from one trial to the next)."""
    tuner = tune.Tuner(tune.with_resources(trainable, {"CPU": 0, "memory": DRIVER_MEMORY}),
                       param_space={"storage": str(work / "train")},
                       tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=1, reuse_actors=True),
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
    ensure_ray("local")  # as `hlp sweep` starts Ray on a machine of one's own

    one, _, busy_one = timed_search(work, "conc1", args.trials, args.epochs, 1)
    two, _, busy_two = timed_search(work, "conc2", args.trials, args.epochs, 2)
    actors = actor_ids()
    zero, in_trial, _ = timed_search(work, "zero", args.fixed_trials, 0, 1)
    census = actors_started(actors, args.fixed_trials)
    empty = per_trial(work, _empty_trial, args.fixed_trials)
    replica = per_trial(work, _empty_replica_trial, args.fixed_trials)
    trainer = per_trial(work, _empty_trainer_trial, args.fixed_trials)
    ray.shutdown()
    fixed = zero / args.fixed_trials
    imports = {kind: import_cpu_s(module) for kind, module in IMPORTS.items()}
    result = {
        "trials": args.trials, "epochs": args.epochs, "cpus": os.cpu_count(),
        "wall_s_concurrency_1": round(one, 1), "wall_s_concurrency_2": round(two, 1),
        "speedup_2_over_1": round(one / two, 3),
        "peak_trials_at_once": {"concurrency_1": PEAKS["conc1"], "concurrency_2": PEAKS["conc2"]},
        "cpu_busy_concurrency_1": round(busy_one, 2), "cpu_busy_concurrency_2": round(busy_two, 2),
        # Each concurrent stream of trials warms its own processes once (imports: import_cpu_s).
        "processes_started": {"concurrency_1": STARTED["conc1"], "concurrency_2": STARTED["conc2"]},
        "fixed_cost_s_per_trial": round(fixed, 1),
        "zero_epoch_trial_time_total_s": [round(t, 1) for t in in_trial],
        "breakdown_s_per_trial": {
            "tune_trial_doing_nothing": round(empty, 1),
            "empty_replica_task": round(replica - empty, 1),
            "empty_torchtrainer_hlp_local_settings (before issue 22)": round(trainer - empty, 1),
            "hlp_work_beyond_the_empty_replica": round(fixed - replica, 1),
        },
        "torchtrainer_trial_over_replica_trial": round(trainer / replica, 2),
        "actors_started_per_zero_epoch_trial": census,
        "worker_processes_started_per_zero_epoch_trial": round(STARTED["zero"]["worker_processes"] / args.fixed_trials, 2),
        "import_cpu_s": imports,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
