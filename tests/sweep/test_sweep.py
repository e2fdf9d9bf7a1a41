"""`hlp sweep`: search-space checks and bad input (real sweeps: test_sweep_faults, test_sweep_cluster, test_cluster_up)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import EXPERIMENTS

from hlp.config import ConfigError, load_config, set_dotted
from hlp.sweep.space import check_space, tune_space


def space(**params):
    return [f"search.space={json.dumps(params)}"]


def test_shipped_sweeps_are_valid():
    for name in ("hpcl.yaml", "hpcl-tvsum.yaml"):
        cfg = load_config(EXPERIMENTS / name)
        check_space(cfg)
        assert {"loss.lambda_ce", "loss.lambda_hpcl", "loss.lambda_rank", "loss.margin", "loss.temperature",
                "loss.region"} <= set(cfg.search.space)


def test_unknown_space_key_is_refused_with_a_suggestion():
    cfg = load_config(None, space(**{"loss.lamda_rank": {"type": "float", "low": 0.1, "high": 1}}))
    with pytest.raises(ConfigError, match="loss.lamda_rank.*loss.lambda_rank"):
        check_space(cfg)


@pytest.mark.parametrize("param, needle", [
    ({"type": "float", "low": 1.0, "high": 0.5}, "low < high"),
    ({"type": "logfloat", "low": 0.0, "high": 0.5}, "low > 0"),
    ({"type": "int", "low": 1.5, "high": 4}, "integers"),
    ({"type": "categorical", "values": []}, "non-empty"),
])
def test_bad_bounds_are_refused(param, needle):
    with pytest.raises(ConfigError, match=f"loss.margin.*{needle}"):
        check_space(load_config(None, space(**{"loss.margin": param})))


def test_int_ranges_are_inclusive():
    from ray.tune.search.optuna import OptunaSearch

    cfg = load_config(None, space(**{"loss.region": {"type": "int", "low": 1, "high": 2}}))
    [distribution] = OptunaSearch.convert_search_space(tune_space(cfg.search.space)).values()
    assert (distribution.low, distribution.high, distribution.step) == (1, 2, 1)  # what TPE samples from


def test_params_apply_to_dotted_keys():
    raw = set_dotted({"loss": {"margin": 0.7}}, {"loss.margin": 0.3, "train.lr": 0.01})
    assert raw == {"loss": {"margin": 0.3}, "train": {"lr": 0.01}}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("case", ["malformed_yaml", "unknown_key", "wrong_type", "unreachable_tracking",
                                  "missing_data_root", "password_in_uri", "token_in_uri", "grace_beyond_epochs"])
def test_bad_sweep_input_fails_before_any_trial(tmp_path, synth_root, case):
    config, sets = str(EXPERIMENTS / "hpcl.yaml"), [f"data.root={synth_root}"]
    needle = {
        "malformed_yaml": "bad.yaml", "unknown_key": "search.num_samples", "wrong_type": "search.num_samples",
        "unreachable_tracking": "cannot be used", "missing_data_root": "annotation file not found",
        "password_in_uri": "must not embed a password", "token_in_uri": "must not embed a password or token",
        "grace_beyond_epochs": "search.grace_period (3) exceeds train.epochs (2)",
    }[case]
    if case == "malformed_yaml":
        config = str(tmp_path / "bad.yaml")
        Path(config).write_text("name: x\nsearch: {space: [unclosed\n")
    sets += {
        "malformed_yaml": [], "unknown_key": ["search.num_sampels=3"], "wrong_type": ["search.num_samples=many"],
        "unreachable_tracking": [f"tracking.uri=http://127.0.0.1:{_free_port()}"],
        "missing_data_root": [f"data.root={tmp_path}/nowhere"],
        "password_in_uri": ["tracking.uri=http://alice:s3cr3t-xyz@127.0.0.1:5000"],
        "token_in_uri": ["tracking.uri=http://s3cr3t-xyz@127.0.0.1:5000"],  # a token in the user slot
        "grace_beyond_epochs": ["train.epochs=2", "search.grace_period=3"],  # Ray's ASHA would assert later
    }[case]
    args = [sys.executable, "-m", "hlp.cli", "sweep", config, *[x for s in sets for x in ("--set", s)],
            "--output", "out"]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert needle in " ".join(result.stderr.split())  # rich wraps long lines
    assert "s3cr3t-xyz" not in result.stdout + result.stderr
    # Refused before Ray or MLflow were touched: no trial storage, no sweep state, no runs.
    assert not (tmp_path / "ray_results").exists() and not (tmp_path / "out").exists()
    assert not (tmp_path / "mlflow.db").exists()


def test_replicas_are_every_seed_and_fold_and_their_mean_is_the_objective(synth_root):
    from hlp.train.runs import (
        mean_over_replicas,
        replica_name,
        replica_splits,
        replicas_of,
    )

    cfg = load_config(None, [f"data.root={synth_root}", "search.seeds=[0,1]", "eval.selection=kfold", "eval.folds=2"])
    replicas = replicas_of(cfg)
    assert [replica_name(r) for r in replicas] == ["seed0.fold0", "seed0.fold1", "seed1.fold0", "seed1.fold1"]
    for domain, split in replica_splits(cfg, replicas[1]).items():  # fold 1 of seed 0: the rest trains
        other = replica_splits(cfg, replicas[0])[domain]
        assert {v.video_id for v in split.val} == {v.video_id for v in other.train}
        assert not {v.video_id for v in split.val} & {v.video_id for v in split.train}
    carve = load_config(None, [f"data.root={synth_root}", "search.seeds=[3]"])
    assert replicas_of(carve) == [{"seed": 3, "fold": None}]
    metrics = mean_over_replicas([{"epoch": 1, "val_map": 0.5, "a.val_map": 0.4, "a.loss_ce": 1.0},
                                  {"epoch": 1, "val_map": 0.7, "a.val_map": 0.8, "a.loss_ce": 2.0}],
                                 [{"seed": 0, "fold": None}, {"seed": 1, "fold": None}])
    assert metrics["val_map"] == pytest.approx(0.6) and metrics["a.val_map"] == pytest.approx(0.6)
    assert metrics["seed1.a.loss_ce"] == 2.0 and "a.loss_ce" not in metrics
