"""The `hlp` command line end to end on synthetic data: the contracts other tools rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def hlp(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "hlp.cli", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"hlp {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_root):
    """One real `hlp train` run of the quickstart on the small synthetic set, two seeds, the epoch
    chosen by 2-fold cross-validation as experiments/youtube.yaml does (carve: tests/train/test_distributed.py)."""
    work = tmp_path_factory.mktemp("train")
    hlp("train", str(EXPERIMENTS / "quickstart.yaml"), "--set", f"data.root={synth_root}",
        "--set", "train.epochs=3", "--set", "train.seeds=[0,1]", "--set", "tracking.experiment=cli-test",
        "--set", "eval.selection=kfold", "--set", "eval.folds=2", "--output", "out", cwd=work)
    return work


def test_data_synth_writes_umt_layout(tmp_path):
    result = hlp("data", "synth", "--out", str(tmp_path / "d"), "--videos", "5", cwd=tmp_path)
    assert json.loads(result.stdout)["videos"] == {"synth_a": 5, "synth_b": 5}
    base = tmp_path / "d" / "youtube"
    anno = json.loads((base / "youtube_anno.json").read_text())
    assert len(anno) == 10
    for vid, entry in anno.items():
        assert (base / "video_features" / f"{vid}_rgb.npy").is_file()
        assert (base / "audio_features" / f"{vid}.npy").is_file()
        assert len(entry["match"]) == len(entry["clip"])


@pytest.mark.slow
def test_train_writes_metrics_contract(trained, synth_root):
    metrics = json.loads((trained / "out" / "metrics.json").read_text())
    assert {"dataset", "protocol", "variant", "seeds", "domains", "mean_val_map", "mean_test_map"} <= set(metrics)
    assert (metrics["dataset"], metrics["protocol"], metrics["variant"], metrics["seeds"]) == ("youtube", "umt", "co_av", [0, 1])
    assert set(metrics["domains"]) == {"synth_a", "synth_b"}
    for values in metrics["domains"].values():
        assert {"val_map", "test_map", "test_map_std"} <= set(values)
        assert 0.0 <= values["test_map"] <= 1.0 and values["test_map_std"] >= 0.0
        per_seed = [s["test_map"] for s in values["per_seed"]]
        assert values["test_map"] == pytest.approx(sum(per_seed) / 2)
    assert metrics["mean_test_map"] == pytest.approx(
        sum(v["test_map"] for v in metrics["domains"].values()) / 2)
    assert metrics["selection"] == "kfold" and 0.0 <= metrics["mean_ensemble_test_map"] <= 1.0
    assert all(0.0 <= v["ensemble_test_map"] <= 1.0 for v in metrics["domains"].values())


@pytest.mark.slow
def test_scores_file_covers_every_test_clip(trained, synth_root):
    scores = json.loads((trained / "out" / "scores_test.json").read_text())
    anno = json.loads((synth_root / "youtube" / "youtube_anno.json").read_text())
    splits = json.loads((synth_root / "youtube" / "splits.json").read_text())
    expected = {vid for d in splits.values() for vid in d["val"]}
    assert set(scores) == expected
    for vid, values in scores.items():
        assert len(values) == len(anno[vid]["match"])


@pytest.mark.slow
def test_evaluate_reproduces_train_metrics(trained, synth_root):
    result = hlp("evaluate", "youtube", "--data-root", str(synth_root), "--scores", "out/scores_test.json",
                 cwd=trained)
    printed = json.loads(result.stdout)
    metrics = json.loads((trained / "out" / "metrics.json").read_text())
    for domain, value in printed["domains"].items():
        assert value == pytest.approx(metrics["domains"][domain]["per_seed"][0]["test_map"], abs=1e-9)
    assert printed["mean"] == pytest.approx(sum(printed["domains"].values()) / 2)


@pytest.mark.slow
def test_evaluate_names_missing_extra_and_misaligned_videos(trained, synth_root):
    scores = json.loads((trained / "out" / "scores_test.json").read_text())
    victim = sorted(scores)[0]
    cases = {
        "missing": ({k: v for k, v in scores.items() if k != victim}, f"missing for test video(s) ['{victim}']"),
        "extra": ({**scores, "not_a_video": [0.1]}, "not_a_video"),
        "length": ({**scores, victim: scores[victim][:-1]}, f"video {victim}: {len(scores[victim]) - 1} scores"),
    }
    for name, (payload, needle) in cases.items():
        path = trained / f"{name}.json"
        path.write_text(json.dumps(payload))
        result = hlp("evaluate", "youtube", "--data-root", str(synth_root), "--scores", str(path), cwd=trained,
                     check=False)
        assert result.returncode == 2, name
        assert needle in result.stderr.replace("\n", ""), (name, result.stderr)


@pytest.mark.slow
def test_train_logs_to_mlflow(trained):
    client = MlflowClient(tracking_uri=f"sqlite:///{trained / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cli-test")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["loss.lambda_hpcl"] == "0.3"
    assert run.data.tags["variant"] == "co_av" and run.data.tags["dataset"] == "youtube"
    history = client.get_metric_history(run.info.run_id, "seed0.fold0.synth_a.loss_hpcl")
    assert [m.step for m in history] == [1, 2, 3]
    for fold in ("fold0", "fold1"):  # each fold's validation curve, epochs 0-3, and its mean over domains
        assert len(client.get_metric_history(run.info.run_id, f"seed1.{fold}.synth_a.val_map")) == 4
        assert len(client.get_metric_history(run.info.run_id, f"seed1.{fold}.val_map")) == 4
    metrics = json.loads((trained / "out" / "metrics.json").read_text())
    chosen = metrics["domains"]["synth_a"]["per_seed"][0]["best_epoch"]
    final = client.get_metric_history(run.info.run_id, "seed0.synth_a.loss_hpcl")  # the model on all videos
    assert [m.step for m in final] == list(range(1, chosen + 1))
    assert "test_map.synth_a" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.json", "scores_test.json", "timelines.png"} <= artifacts


def test_config_errors_exit_2_with_the_key(tmp_path):
    result = hlp("train", str(EXPERIMENTS / "quickstart.yaml"), "--set", "loss.lamda_rank=1", cwd=tmp_path,
                 check=False)
    assert result.returncode == 2
    assert "loss.lambda_rank" in result.stderr


def test_missing_data_root_is_clear(tmp_path):
    result = hlp("train", str(EXPERIMENTS / "quickstart.yaml"), "--set", f"data.root={tmp_path}/none",
                 "--set", "tracking.enabled=false", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "annotation file not found" in result.stderr
