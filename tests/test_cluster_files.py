"""The cluster-launcher files validate against the schema shipped in the ray wheel."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster.local.yaml"])
def test_cluster_file_validates(name):
    raw = yaml.safe_load((ROOT / name).read_text())
    validate_config(prepare_config(copy.deepcopy(raw)))


def test_aws_cluster_shape():
    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    head = raw["available_node_types"][raw["head_node_type"]]
    assert "InstanceMarketOptions" not in head["node_config"]  # the head is not spot
    gpu = raw["available_node_types"]["gpu_worker"]
    assert gpu["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 1
    assert raw["idle_timeout_minutes"] > 0
    opened = raw["provider"]["security_group"]["IpPermissions"]
    assert [(p["FromPort"], p["ToPort"]) for p in opened] == [(22, 22)]  # only SSH open to the world
    assert any("mlflow server" in c for c in raw["head_start_ray_commands"])
    assert any("pip install" in c for c in raw["setup_commands"])


def test_validation_catches_a_typo():
    raw = yaml.safe_load((ROOT / "cluster.local.yaml").read_text())
    raw["idle_timout_minutes"] = 5
    with pytest.raises(Exception, match="idle_timout_minutes"):
        validate_config(prepare_config(raw))
