"""The `hlp` command line end to end on synthetic data: the contracts other tools rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from hlp.config import load_config
from hlp.data.datasets import load_dataset_for
from hlp.data.synth import SynthSpec, write_synthetic
from hlp.train.runs import run_inputs

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
WIDE = {"COLUMNS": "300"}  # Rich wraps stderr at 80 columns in a pipe; a path then stays on one line


def hlp(*args: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "hlp.cli", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=600, env={**os.environ, **(env or {})})
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
def test_train_logs_to_mlflow(trained, synth_root):
    client = MlflowClient(tracking_uri=f"sqlite:///{trained / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cli-test")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI's training view
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    # The data, as dataset inputs: each domain in each context, the digest that of the data and the split.
    inputs = {(i.dataset.name, i.tags[0].value): i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {(f"youtube/{d}", c) for d in ("synth_a", "synth_b") for c in ("training", "validation", "test")}
    assert json.loads(inputs[("youtube/synth_a", "validation")].profile) == {"videos": 7, "clips": 124, "seeds": 2, "folds": 2}
    assert json.loads(inputs[("youtube/synth_a", "training")].source) == {"uri": str(synth_root)}
    cfg = load_config(EXPERIMENTS / "quickstart.yaml", [f"data.root={synth_root}", "eval.selection=kfold", "eval.folds=2"])
    again = {(i.name, i.context): i.digest for i in run_inputs(cfg, load_dataset_for(cfg.data), [0, 1])}
    assert {k: d.digest for k, d in inputs.items()} == again
    assert again != {(i.name, i.context): i.digest for i in run_inputs(cfg, load_dataset_for(cfg.data), [0, 2])}
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


def test_an_error_naming_a_file_prints_whole_with_its_bracketed_path(tmp_path):
    """DataError says "reason [path]"; Rich used to read "[/path]" as a closing tag and crash."""
    write_synthetic(str(tmp_path / "d"), SynthSpec(videos_per_domain=4, min_clips=12, max_clips=20))
    bad = tmp_path / "d" / "youtube" / "video_features" / "synth_a_000_rgb.npy"
    bad.write_bytes(bad.read_bytes()[:100])  # a truncated .npy
    result = hlp("train", str(EXPERIMENTS / "quickstart.yaml"), "--set", f"data.root={tmp_path / 'd'}",
                 "--set", "data.on_bad=error", "--set", "tracking.enabled=false", cwd=tmp_path, check=False, env=WIDE)
    assert result.returncode == 2, result.stderr[-3000:]
    text = " ".join(result.stderr.split())
    assert "error: video synth_a_000: unreadable feature file" in text and f"[{bad}]" in text, text
    assert "MarkupError" not in text and "Traceback" not in text


def test_import_umt_on_a_missing_root_names_it(tmp_path):
    result = hlp("data", "import-umt", "--root", str(tmp_path / "nowhere"), "--dataset", "youtube",
                 "--out", str(tmp_path / "store"), cwd=tmp_path, check=False, env=WIDE)
    assert result.returncode == 2, result.stderr[-3000:]
    folder = tmp_path / "nowhere" / "youtube"
    assert f"not a UMT release folder [{folder}]" in " ".join(result.stderr.split()), result.stderr


def test_help_and_hints_keep_their_square_brackets(tmp_path):
    """Typer renders help, and Rich prints hints, as markup: an unescaped [word] vanishes."""
    help_text = hlp("evaluate", "--help", cwd=tmp_path, env={"COLUMNS": "200"}).stdout
    assert "JSON {video_id: [score per clip]}" in help_text, help_text
    hlp("data", "synth", "--out", "d", "--videos", "2", cwd=tmp_path)
    hlp("data", "import-umt", "--root", "d", "--dataset", "youtube", "--out", "store", "--streams", "rgb", cwd=tmp_path)
    export = hlp("data", "export-umt", "--store", "store", "--out", "e", cwd=tmp_path)
    assert "train on it with --set data.visual_streams=[rgb]" in export.stderr, export.stderr


class Exploit:
    """What a hostile checkpoint carries: unpickling it would run a shell command."""

    def __reduce__(self):
        return os.system, ("touch PWNED",)


def test_a_checkpoint_with_pickled_code_is_refused_without_torchs_advice(tmp_path):
    import torch

    torch.save({"format": "hlp-model/1", "x": Exploit()}, tmp_path / "evil.pt")
    result = hlp("predict", "video.mp4", "--checkpoint", "evil.pt", cwd=tmp_path, check=False, env=WIDE)
    text = " ".join(result.stderr.split())
    assert result.returncode == 2, text
    assert "evil.pt: not a safe model file" in text and "system" in text, text  # names the file and the object
    assert "weights_only" not in text and "safe_globals" not in text, text  # no advice to load it anyway
    assert not (tmp_path / "PWNED").exists()


def test_version_and_shell_completion(tmp_path):
    from importlib.metadata import version

    assert hlp("--version", cwd=tmp_path).stdout.strip() == f"hlp {version('hlp')}"
    command = str(Path(sys.executable).parent / "hlp")  # the installed script: completion keys on its name
    script = subprocess.run([command, "--show-completion", "bash"], capture_output=True, text=True, timeout=120)
    assert "complete -o default -F _hlp_completion hlp" in script.stdout, script.stdout + script.stderr
    # What the shell function asks for when `hlp con<TAB>` is typed: the command names that fit.
    asked = {**os.environ, "_HLP_COMPLETE": "complete_bash", "COMP_WORDS": "hlp con", "COMP_CWORD": "1"}
    completed = subprocess.run([command], capture_output=True, text=True, timeout=120, env=asked)
    assert completed.stdout.split() == ["config"], completed.stdout + completed.stderr


def test_config_show_prints_the_resolved_yaml_and_refuses_a_bad_one(tmp_path):
    shown = hlp("config", "show", str(EXPERIMENTS / "quickstart.yaml"), "--set", "train.epochs=3", cwd=tmp_path)
    resolved = yaml.safe_load(shown.stdout)
    assert resolved["train"]["epochs"] == 3 and resolved["loss"]["lambda_hpcl"] == 0.3  # --set, then a default
    extraction = yaml.safe_load(hlp("config", "show", str(EXPERIMENTS / "extract.yaml"), cwd=tmp_path).stdout)
    assert extraction["visual"]["name"] == "r3d_18"  # an extraction file is read as one
    bad = hlp("config", "show", str(EXPERIMENTS / "quickstart.yaml"), "--set", "train.epochs=abc", cwd=tmp_path,
              check=False, env=WIDE)
    assert bad.returncode == 2 and not bad.stdout
    assert "--set train.epochs=abc: train.epochs:" in bad.stderr and "quickstart.yaml" not in bad.stderr, bad.stderr
    assert list(tmp_path.iterdir()) == []  # validated, nothing run or written


def test_runs_lists_the_tracking_store_newest_first(tmp_path):
    from hlp.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    made = (("exp-a", "first-run", {"mean_test_map": 0.61234, "mean_val_map": 0.5}, "FINISHED"),
            ("exp-a", "second-run", {"val_map": 0.25}, "KILLED"),
            ("exp-b", "third-run", {"best_test_map": 0.7}, "FAILED"))
    for experiment, name, metrics, status in made:  # in this order, so third-run is the newest
        run = Tracker(uri, experiment, name, {})
        run.log_metrics(metrics)
        run.finish(status)

    listed = hlp("runs", "--tracking-uri", uri, cwd=tmp_path, env={"COLUMNS": "200"}).stdout
    rows = [line for line in listed.splitlines() if "-run" in line]
    assert [next(w for w in row.split() if w.endswith("-run")) for row in rows] == ["third-run", "second-run",
                                                                                   "first-run"], listed
    assert "exp-b" in rows[0] and "FAILED" in rows[0] and "0.7000" in rows[0]
    assert "KILLED" in rows[1] and "0.2500" in rows[1]
    assert "FINISHED" in rows[2] and "0.6123" in rows[2] and "0.5000" in rows[2]
    assert all(name in listed for name in ("mean_test_map", "mean_val_map", "val_map", "best_test_map"))
    # The newest run of exp-a only: the newer run of exp-b and the older one of exp-a are left out.
    newest_a = hlp("runs", "--tracking-uri", uri, "--experiment", "exp-a", "--limit", "1", cwd=tmp_path,
                   env={"COLUMNS": "200"}).stdout
    assert "second-run" in newest_a and "first-run" not in newest_a and "third-run" not in newest_a, newest_a


def test_runs_refuses_a_missing_store_and_credentials_in_the_uri(tmp_path):
    missing = hlp("runs", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}", cwd=tmp_path, check=False, env=WIDE)
    assert missing.returncode == 2 and "no tracking store" in missing.stderr, missing.stderr
    assert not (tmp_path / "none.db").exists()  # looking never creates a store
    token = hlp("runs", "--tracking-uri", "http://tok3n-xyz@127.0.0.1:5000", cwd=tmp_path, check=False, env=WIDE)
    assert token.returncode == 2 and "MLFLOW_TRACKING_TOKEN" in token.stderr, token.stderr
    assert "tok3n-xyz" not in token.stdout + token.stderr


def test_runs_shows_every_name_whole_at_80_columns_and_more_columns_when_wider(tmp_path):
    """Issue 23: at 80 columns every name was cut to 8 characters (`hpcl-sw…`)."""
    import re

    from hlp.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    names = {"hpcl-sweep": ("sweep-hpcl-youtube-umt-seeds-0-1", "hpcl-sweep-defaults-final-run"),
             "youtube-quickstart": ("quickstart-youtube-co-av-carve",)}
    for experiment, runs in names.items():
        for name in runs:
            run = Tracker(uri, experiment, name, {})
            run.log_metrics({"mean_test_map": 0.61234, "mean_val_map": 0.5, "best_test_map": 0.7})
            run.finish("FINISHED")
    wanted = [name for runs in names.values() for name in runs]

    def listed(columns: int) -> tuple[str, list[str]]:
        text = hlp("runs", "--tracking-uri", uri, cwd=tmp_path, env={"COLUMNS": str(columns)}).stdout
        header = next(line for line in text.splitlines() if "run" in line and "status" in line)
        return text, [cell.strip() for cell in re.split("[┃|]", header)[1:-1]]

    narrow, narrow_columns = listed(80)
    assert all(len(line) <= 80 for line in narrow.splitlines()), narrow
    assert all(name in narrow for name in wanted), narrow  # each name whole, on one line
    assert "…" not in narrow.split("left out")[0], narrow  # nothing in the table is cut
    assert narrow_columns[:2] == ["run", "status"], narrow_columns
    wide, wide_columns = listed(200)
    assert all(name in wide for name in wanted)
    assert set(narrow_columns) < set(wide_columns), (narrow_columns, wide_columns)  # wider: more columns
    assert wide_columns == ["experiment", "run", "status", "started", "mean_test_map", "mean_val_map",
                            "best_test_map"], wide_columns
    assert "left out at 80 columns: " in narrow and "left out" not in wide
