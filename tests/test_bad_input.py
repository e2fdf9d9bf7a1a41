"""Issue 23, bad input as a new user types it: each ends in one short error (exit 2) that names the
file, the key or the `--set`, before any training; `hlp config show` refuses what the command that
runs the file refuses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hlp.cli import app
from hlp.config import ConfigError, config_from_dict, load_config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
QUICKSTART, HPCL = str(EXPERIMENTS / "quickstart.yaml"), str(EXPERIMENTS / "hpcl.yaml")


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def refused(result) -> str:
    """The one error line of a refusal (exit 2, no traceback), whitespace joined."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and not result.stdout, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


SWEEP_CASES = {
    "low above high": ("search.space={loss.lambda_ce: {type: float, low: 2.0, high: 0.5}}",
                       "search.space.loss.lambda_ce: needs low < high, got low 2.0 and high 0.5"),
    "empty space": ("search.space={}", "search.space is empty: nothing to sweep"),
    "unknown key": ("search.space={loss.lamda_ce: {type: float, low: 0.5, high: 2.0}}",
                    "search.space: unknown key 'loss.lamda_ce' (did you mean 'loss.lambda_ce'?)"),
    "logfloat from 0": ("search.space={loss.margin: {type: logfloat, low: 0, high: 1}}",
                        "search.space.loss.margin: logfloat needs low > 0, got 0.0"),
    "int from 1.5": ("search.space={loss.region: {type: int, low: 1.5, high: 4}}",
                     "search.space.loss.region: int bounds must be integers, got 1.5, 4.0"),
    "low equal to high": ("search.space={loss.margin: {type: float, low: 0.5, high: 0.5}}",
                          "search.space.loss.margin: needs low < high, got low 0.5 and high 0.5"),
    "no high": ("search.space={loss.margin: {type: float, low: 0.5}}",
                "search.space.loss.margin: float needs both low and high, got low 0.5 and high None"),
    "grace beyond epochs": ("search.grace_period=9",
                            "search.grace_period (9) exceeds train.epochs (8): ASHA could never stop a trial"),
    "choices for values": ("search.space={model.block: {type: categorical, choices: [paper, standard]}}",
                           "unknown key 'search.space.model.block.choices' (did you mean "
                           "'search.space.model.block.values'?)"),
}


@pytest.mark.parametrize("case", list(SWEEP_CASES))
def test_config_show_refuses_a_sweep_as_hlp_sweep_does(tmp_path, case):
    """Both commands run the same checks, so they print the very same line, before Ray starts."""
    item, needle = SWEEP_CASES[case]
    shown = refused(invoke("config", "show", HPCL, "--set", item))
    assert needle in shown, shown
    swept = refused(invoke("sweep", HPCL, "--set", f"data.root={tmp_path}", "--set", item,
                           "--output", str(tmp_path / "out")))
    assert swept == shown
    assert not (tmp_path / "out").exists()  # refused before it wrote anything


def test_the_space_checks_apply_to_a_sweep_only():
    """An experiment without a search section is a training run: no space needed."""
    assert invoke("config", "show", QUICKSTART).exit_code == 0
    assert invoke("config", "show", HPCL).exit_code == 0
    assert "nothing to sweep" in refused(invoke("config", "show", QUICKSTART, "--set", "search.num_samples=4"))


def test_a_threshold_outside_the_scores_range_is_refused_at_once(tmp_path):
    for threshold in ("2", "-0.1", "nan"):
        start = time.monotonic()
        line = refused(invoke("predict", "video.mp4", "--checkpoint", "model.pt", "--threshold", threshold))
        assert "--threshold" in line and "between 0 and 1" in line, line
        assert time.monotonic() - start < 5
    edge = invoke("predict", str(tmp_path / "video.mp4"), "--checkpoint", str(tmp_path / "none.pt"), "--threshold", "1")
    assert edge.exit_code == 2 and "--threshold" not in edge.stderr, edge.stderr  # 0 and 1 are scores too


@pytest.fixture
def scores_of(synth_root, tmp_path):
    """`hlp evaluate youtube` of a file holding `text`: its one error line."""
    def run(text: str | bytes) -> str:
        path = tmp_path / "scores.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return refused(invoke("evaluate", "youtube", "--data-root", str(synth_root), "--scores", str(path)))
    return run


def test_evaluate_refuses_a_file_without_a_video_of_the_dataset(scores_of, tmp_path):
    path = tmp_path / "scores.json"
    assert scores_of("{}") == f"error: {path}: no scored video: the file holds no video id (expected " \
                              "{video_id: [score per clip]} for the youtube test videos)"
    line = scores_of(json.dumps({f"tvsum_{i}": [0.5] for i in range(7)}))
    assert line.startswith(f"error: {path}: no scored video of youtube: none of its 7 video id(s) ('tvsum_0', ")
    assert "and 2 more" in line and "another dataset?" in line, line


@pytest.mark.parametrize("text, needle", [
    ("{not json", "not a JSON file (Expecting property name"),
    (b"\x89PNG\r\n\x1a\n\x00\xff", "not a JSON file ('utf-8' codec can't decode"),
    ("[[0.5, 0.2]]", "expected a JSON object {video_id: [score per clip]}, got an array"),
    ('"scores"', "got a string"),
    ("null", "got null"),
])
def test_evaluate_refuses_what_is_not_an_object_of_lists(scores_of, tmp_path, text, needle):
    line = scores_of(text)
    assert f"{tmp_path / 'scores.json'}" in line and needle in line, line


def test_evaluate_names_a_video_whose_scores_are_not_a_list(scores_of, synth_root):
    from hlp.data.datasets import load_dataset
    from hlp.data.protocols import held_out_ids

    dataset = load_dataset("youtube", str(synth_root))
    scores = {vid: [0.5] * dataset.videos[vid].num_clips for vid in held_out_ids(dataset, "umt", "synth_a")}
    victim = sorted(scores)[0]
    assert f"video {victim}: expected a list of scores (one number per clip), got float" in scores_of(
        json.dumps({**scores, victim: 0.5}))


def test_a_config_that_is_not_a_yaml_file_is_named(tmp_path):
    binary = tmp_path / "model.yaml"
    binary.write_bytes(b"name: x\n\x89PNG\r\n\x1a\n\xd0\xff" * 20)
    (tmp_path / "folder.yaml").mkdir()
    for command in (("config", "show"), ("train",), ("sweep",)):
        line = refused(invoke(*command, str(binary)))
        assert line == f"error: {binary}: not a text file (byte 8 is not UTF-8): a config is YAML text", line
        line = refused(invoke(*command, str(tmp_path / "folder.yaml")))
        assert line == f"error: {tmp_path / 'folder.yaml'} is a directory, not a config file: give the YAML file " \
                       "itself", line


def test_a_bad_set_is_blamed_on_the_set_not_the_file(tmp_path):
    line = refused(invoke("config", "show", QUICKSTART, "--set", "loss.region=-3"))
    assert line == "error: --set loss.region=-3: loss.region: must be >= 1, got -3", line
    (tmp_path / "exp.yaml").write_text("loss:\n  region: -3\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml: loss\.region: must be >= 1, got -3$"):  # the file's own
        load_config(tmp_path / "exp.yaml")


def test_a_close_name_is_suggested_for_an_unknown_key():
    with pytest.raises(ConfigError, match=r"unknown key 'search\.space\.loss\.margin\.max' "
                                          r"\(did you mean 'search\.space\.loss\.margin\.high'\?\)"):
        load_config(None, ["search.space={loss.margin: {type: float, low: 0.1, max: 1}}"])
    with pytest.raises(ConfigError, match=r"unknown key 'model\.head' \(did you mean 'model\.heads'\?\)"):
        load_config(None, ["model.head=4"])


@pytest.mark.parametrize("uri", ["ftp://nowhere", "s3://bucket/mlflow", "uc", "./mlruns", "file:/tmp/mlruns"])
def test_a_tracking_uri_mlflow_cannot_open_is_refused_naming_the_key(uri, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    line = refused(invoke("config", "show", QUICKSTART, "--set", f"tracking.uri={uri}"))
    assert line.startswith(f"error: --set tracking.uri={uri}: tracking.uri: "), line


@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "http://127.0.0.1:5000", "https://mlflow.example",
                                 "databricks", "databricks://profile", "postgresql+psycopg2://host/db",
                                 "mysql://host/db", "mssql+pyodbc://host/db"])
def test_the_tracking_uris_mlflow_opens_pass(uri):
    assert load_config(None, [f"tracking.uri={uri}"]).tracking.uri == uri


def test_a_file_store_passes_where_mlflow_is_told_to_allow_it(monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert load_config(None, ["tracking.uri=./mlruns"]).tracking.uri == "./mlruns"


def test_the_accepted_schemes_are_mlflows_own():
    """The config names them without importing MLflow; this keeps the two lists one."""
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    from hlp.config import _TRACKING_SCHEMES, _plugin_schemes

    registered = set(_tracking_store_registry._registry) - _plugin_schemes()
    assert registered - {"", "file", "uc", "databricks-uc"} == set(_TRACKING_SCHEMES)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_train_with_no_tracking_server_fails_fast_naming_the_key(tmp_path, synth_root):
    """A real `hlp train`: MLflow would retry its HTTP request for minutes, then trace."""
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "hlp.cli", "train", QUICKSTART, "--set", f"data.root={synth_root}",
                             "--set", f"tracking.uri={uri}"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "COLUMNS": "300"})
    assert result.returncode == 2, result.stderr[-3000:]
    assert time.monotonic() - start < 60
    assert result.stderr.strip() == f"error: tracking.uri {uri}: the MLflow store cannot be used: nothing answers " \
                                    "there (connection refused); is the MLflow server running?", result.stderr
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # no store, no outputs


def test_a_store_mlflow_cannot_open_is_named_by_key():
    """A database driver that is not installed: MLflow opens the store when the client is made."""
    from hlp.tracking import TrackingError, check_reachable

    pytest.importorskip("sqlalchemy")
    with pytest.raises(TrackingError, match=r"^tracking\.uri mssql\+nodriver://host/db: MLflow cannot open this "
                                            r"store: "):
        check_reachable("mssql+nodriver://host/db")


def test_a_model_shape_the_network_cannot_take_is_refused_naming_the_keys(tmp_path):
    line = refused(invoke("config", "show", QUICKSTART, "--set", "model.heads=4", "--set", "model.d_k=30"))
    assert line == "error: --set model.d_k=30, --set model.heads=4: model.d_k=30 and model.d_v=128 must be " \
                   "divisible by model.heads=4", line  # d_v: quickstart.yaml's
    assert "model.heads" in refused(invoke("train", QUICKSTART, "--set", "model.heads=3"))
    (tmp_path / "exp.yaml").write_text("model:\n  heads: 4\n  d_v: 30\n")
    with pytest.raises(ConfigError, match=r"^.*exp\.yaml: model\.d_k=512 and model\.d_v=30 must be divisible by "
                                          r"model\.heads=4$"):
        load_config(tmp_path / "exp.yaml")
    with pytest.raises(ConfigError, match=r"^--set experiment\.model\.heads=3: experiment\.model\.d_k=512"):
        from hlp.reproduce.config import ReproduceConfig

        load_config(None, ["experiment.model.heads=3"], ReproduceConfig)
    assert load_config(None, ["model.heads=4", "model.d_k=32", "model.d_v=16"]).model.heads == 4


def test_a_config_a_job_derives_meets_the_shape_when_its_model_is_built():
    """A reproduction row or a sweep trial with a bad shape fails alone (tests/reproduce), not its job."""
    assert config_from_dict({"model": {"heads": 3}}).model.heads == 3
