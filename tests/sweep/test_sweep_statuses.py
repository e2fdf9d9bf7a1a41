"""What a sweep's runs say about how each trial ended (issue 23): FINISHED for a trial that ran
its epochs, and for one that ASHA stopped (tagged `stopped_early` with the epoch it reached);
KILLED is for Ctrl-C (tests/sweep/test_sweep_interrupt.py), FAILED for errors. One space, with a
learning rate that makes a trial useless, so that ASHA has something to stop; and every run
records its data as MLflow dataset inputs."""

from __future__ import annotations

import subprocess

import pytest
from mlflow.tracking import MlflowClient
from ray_processes import isolated_env
from support import mlflow_runs, sweep_command

pytestmark = pytest.mark.slow
BAD_LR_REGION = "search.space={train.lr: {type: categorical, values: [0.001, 1.0e-8]}}"  # 1e-8 learns nothing


def _sweep(tmp_path, synth_root, ray_tmpdir, *sets: str) -> list:
    command = sweep_command(synth_root, "search.num_samples=4", "search.reduction_factor=2", BAD_LR_REGION, *sets)
    result = subprocess.run(command, cwd=tmp_path, env=isolated_env(ray_tmpdir), capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = mlflow_runs(tmp_path / "mlflow.db", "hpcl-sweep")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("hpcl-sweep")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    for final in [r for r in runs if "role" in r.data.tags]:  # the finals hold the models; trials none
        models = client.search_logged_models([experiment.experiment_id],
                                             filter_string=f"source_run_id = '{final.info.run_id}'")
        assert sorted(m.name for m in models) == ["model-synth_a", "model-synth_b"]
    assert not [m for m in client.search_logged_models([experiment.experiment_id])
                if m.source_run_id not in {r.info.run_id for r in runs if "role" in r.data.tags}]
    for run in runs:  # trials read training and validation videos only; the parent and the finals test too
        contexts = {i.tags[0].value for i in run.inputs.dataset_inputs}
        names = {i.dataset.name for i in run.inputs.dataset_inputs}
        assert names == {"youtube/synth_a", "youtube/synth_b"}, run.info.run_name
        assert contexts == ({"training", "validation"} if "trial_id" in run.data.tags else
                            {"training", "validation", "test"}), run.info.run_name
    return [r for r in runs if "trial_id" in r.data.tags]


def test_no_trial_is_stopped_when_the_grace_period_is_every_epoch(tmp_path, synth_root, ray_tmpdir):
    """ASHA's rung at the last epoch would stop a worse trial there, before its final report: it
    had trained every epoch and was recorded KILLED and `stopped_early` (issue 23, at 89c5347)."""
    trials = _sweep(tmp_path, synth_root, ray_tmpdir, "train.epochs=2", "search.grace_period=2")
    assert len(trials) == 4
    assert {r.data.params["train.lr"] for r in trials} == {"0.001", "1e-08"}  # a bad trial to stop, if ASHA could
    assert [r.info.status for r in trials] == ["FINISHED"] * 4
    assert not [r.info.run_name for r in trials if "stopped_early" in r.data.tags]
    assert all("val_map" in r.data.metrics and "val_map.synth_a" in r.data.metrics for r in trials)


def test_a_trial_that_asha_stops_is_finished_and_marked_alone(tmp_path, synth_root, ray_tmpdir):
    trials = _sweep(tmp_path, synth_root, ray_tmpdir, "train.epochs=3", "search.grace_period=1")
    assert [r.info.status for r in trials] == ["FINISHED"] * 4
    stopped = [r for r in trials if r.data.tags.get("stopped_early") == "true"]
    assert stopped and all(r.data.params["train.lr"] == "1e-08" for r in stopped)
    for run in stopped:  # the epoch it reached, and its curve ends there
        reached = int(run.data.tags["stopped_at_epoch"])
        assert 1 <= reached < 3 and max(m.step for m in _history(tmp_path, run, "val_map")) == reached
    assert all("stopped_at_epoch" not in r.data.tags for r in trials if r not in stopped)


def _history(tmp_path, run, key: str) -> list:
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(run.info.run_id, key)
