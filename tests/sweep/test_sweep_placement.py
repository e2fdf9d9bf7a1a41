"""`hlp sweep` on a cluster too small for its trials (issue 15): a worker that no node can hold is
refused at once on the job's own Ray, and on a joined cluster a trial whose workers cannot be
placed fails in bounded time, naming the key, and is retried by `--resume` once a node joins.
(That max_concurrent trials never exceed what the cluster places is checked by the sweep of
test_sweep_faults, which asks for 2 at once where 1 fits: one sweep fewer in the suite.)

Each sweep runs on a real Ray: the job's own local one (the machine's CPUs), or a cluster
started beside the test with `ray start`, to which a node is then added."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from ray_processes import isolated_env
from support import mlflow_runs, sweep_command

from hlp.cluster import LOCAL_TRAIN_ENV

pytestmark = pytest.mark.slow


def _runs(db: Path) -> tuple[object, list]:
    """The sweep's parent run, and its trials' runs."""
    runs = mlflow_runs(db, "hpcl-sweep")
    [parent] = [r for r in runs if r.info.run_name == "sweep-hpcl"]
    return parent, [r for r in runs if "trial_id" in r.data.tags]


def test_a_worker_no_node_can_hold_is_refused_at_once(tmp_path, synth_root, ray_tmpdir):
    """On the job's own Ray (it never gets more nodes) the sweep is refused before any trial,
    naming the key, and its parent run ends FAILED."""
    started = time.monotonic()
    result = subprocess.run(sweep_command(synth_root, "resources.cpus_per_worker=64"), cwd=tmp_path,
                            env=isolated_env(ray_tmpdir), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    said = " ".join(result.stderr.split())
    assert "no node can hold one Ray Train worker: resources.cpus_per_worker asks 64 CPU per worker" in said
    assert time.monotonic() - started < 120
    parent, trials = _runs(tmp_path / "mlflow.db")
    assert parent.info.status == "FAILED" and trials == []


def test_an_unplaceable_trial_fails_in_bounded_time_and_resume_retries_it(tmp_path, synth_root, cluster_beside):
    """Joined to a 1-CPU cluster (an autoscaler might add nodes, so the sweep only warns), a trial
    whose worker asks 2 CPUs fails after resources.start_timeout_s with the keys to change, its run
    FAILED, and the sweep stops there. Once a node joins, `--resume` retries that trial in its own
    run, and the sweep finishes."""
    address, beside = cluster_beside
    env = {**beside, **LOCAL_TRAIN_ENV}  # Train's settings for a machine of one's own: a faster test
    command = sweep_command(synth_root, "search.num_samples=1", "search.max_concurrent=2", "train.epochs=1",
                     "search.grace_period=1", "resources.cpus_per_worker=2", "resources.start_timeout_s=5",
                     "resources.address=auto")  # the cluster whose address file lies under the env's RAY_TMPDIR
    started = time.monotonic()
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    said = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr[-3000:]
    assert "resources.cpus_per_worker asks 2 CPU per worker and the largest node has 1; a run waits up to 5 s" in said
    assert "search.max_concurrent 2 -> 1: the cluster has 1 CPU (1 node) and a trial needs 2" in said
    assert "the trial could not start 1 worker within 5 s (resources.start_timeout_s)" in said
    assert "--resume retries that trial" in said and elapsed < 150
    parent, [trial] = _runs(tmp_path / "mlflow.db")
    assert (parent.info.status, trial.info.status) == ("FAILED", "FAILED")

    # A node joins (Ray 2.60's local clusters ask for the token that `ray start --head` wrote).
    subprocess.run(["ray", "start", f"--address={address}", "--num-cpus=4"], env={**beside, "RAY_AUTH_MODE": "token"},
                   check=True, capture_output=True, timeout=180)
    resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    parent, [retried] = _runs(tmp_path / "mlflow.db")
    assert (retried.info.run_id, retried.info.status) == (trial.info.run_id, "FINISHED")  # its own run, reopened
    assert parent.info.status == "FINISHED" and (tmp_path / "out" / "sweep_summary.json").exists()


def test_the_limit_follows_nodes_as_they_come_and_go(monkeypatch):
    """The limiter Tune asks before each trial: search.max_concurrent lowered to what the live
    nodes place, raised as a node joins, lowered again when it leaves, and said each time."""
    import ray
    from optuna.samplers import TPESampler
    from ray.cluster_utils import Cluster
    from ray.tune.search.optuna import OptunaSearch

    from hlp.config import load_config
    from hlp.sweep.concurrency import ClusterLimiter

    cfg = load_config(None, ["search.max_concurrent=2", "search.seeds=[0]", "resources.cpus_per_worker=2"])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    try:
        ray.init(address=cluster.address, logging_level="ERROR")
        said: list[str] = []
        limiter = ClusterLimiter(OptunaSearch(metric="val_map", mode="max", sampler=TPESampler(seed=0)), cfg,
                                 said.append)
        assert limiter.follow_cluster() == 1
        node = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        assert limiter.follow_cluster() == 2
        cluster.remove_node(node)
        deadline = time.monotonic() + 60
        while limiter.follow_cluster() != 1 and time.monotonic() < deadline:  # the GCS marks it dead
            time.sleep(0.5)
        assert said == [
            "search.max_concurrent 2 -> 1: the cluster has 2 CPUs (1 node) and a trial needs 2 (1 worker x 2 CPU)",
            "search.max_concurrent 1 -> 2: the cluster has 4 CPUs (2 nodes) and a trial needs 2 (1 worker x 2 CPU)",
            "search.max_concurrent 2 -> 1: the cluster has 2 CPUs (1 node) and a trial needs 2 (1 worker x 2 CPU)",
        ]
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_fractional_gpus_let_trials_share_a_gpu(tmp_path):
    """On a Ray that declares 1 (logical) GPU, trials of 2 workers x 0.125 GPU: the limiter lowers
    search.max_concurrent 8 to 4 and says why in GPUs, the resource that binds (the 4 CPUs would
    hold 8 such trials), and Ray does hold those 4 trials' workers at once: 4 placement groups
    shaped as Ray Train reserves a trial's workers are placed, a 5th waits, and a task in each
    of the 8 bundles runs while all the others run, on the same GPU."""
    import ray
    from optuna.samplers import TPESampler
    from ray.tune.search.optuna import OptunaSearch
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from hlp.config import load_config
    from hlp.placement import worker_resources
    from hlp.sweep.concurrency import ClusterLimiter

    cfg = load_config(None, ["search.max_concurrent=8", "search.seeds=[0,1]", "resources.use_gpu=true",
                             "resources.gpus_per_worker=0.125", "resources.cpus_per_worker=0.25"])
    ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        said: list[str] = []
        limiter = ClusterLimiter(OptunaSearch(metric="val_map", mode="max", sampler=TPESampler(seed=0)), cfg,
                                 said.append)
        assert limiter.follow_cluster() == 4
        assert said == ["search.max_concurrent 8 -> 4: the cluster has 1 GPU (1 node) and a trial needs 0.25 "
                        "(2 workers x 0.125 GPU)"]

        bundles = [worker_resources(cfg.resources)] * 2  # one trial's workers, as ScalingConfig asks them
        groups = [ray.util.placement_group(bundles, strategy="PACK") for _ in range(5)]
        assert all(g.wait(timeout_seconds=60) for g in groups[:4])
        assert not groups[4].wait(timeout_seconds=2)  # no GPU share left for a fifth trial
        ray.util.remove_placement_group(groups[4])

        @ray.remote(num_cpus=0.25, num_gpus=0.125)
        def worker(folder: str, index: int, everyone: int) -> list:
            Path(folder, str(index)).touch()
            deadline = time.monotonic() + 120
            while len(list(Path(folder).iterdir())) < everyone and time.monotonic() < deadline:
                time.sleep(0.05)
            return [len(list(Path(folder).iterdir())), ray.get_gpu_ids()]

        refs = [worker.options(scheduling_strategy=PlacementGroupSchedulingStrategy(g, placement_group_bundle_index=b))
                .remote(str(tmp_path), 2 * i + b, 8) for i, g in enumerate(groups[:4]) for b in range(2)]
        seen = ray.get(refs, timeout=180)
        assert [count for count, _ in seen] == [8] * 8  # each saw all 8 under way before it returned
        assert len({tuple(gpus) for _, gpus in seen}) == 1 and len(seen[0][1]) == 1  # one GPU, shared
    finally:
        ray.shutdown()
