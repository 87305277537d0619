"""cluster.yaml is a valid Ray cluster launcher config (Ray's own schema and defaults)."""

from __future__ import annotations

import yaml

from tests.conftest import ROOT


def test_cluster_yaml_validates_against_ray_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # raises on an invalid config
    types = config["available_node_types"]
    assert types["gpu_worker"]["resources"] == {"GPU": 1}
    assert any("pip install -e" in c and "[serve" in c for c in config["setup_commands"])
    assert types["cpu_worker"]["min_workers"] <= types["cpu_worker"]["max_workers"]
    assert config["max_workers"] >= sum(t.get("max_workers", 0) for n, t in types.items()
                                        if n != config["head_node_type"])


def test_cluster_yaml_holds_no_secret():
    text = (ROOT / "cluster.yaml").read_text().lower()
    assert "api_key" not in text and "sk-" not in text
