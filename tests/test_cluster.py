"""The cluster configs in cluster/ are checked, offline, the way Ray checks them.

`ray up` YAMLs: Ray's own JSON schema on the file as written (what catches a misspelled or legacy key), then
`prepare_config` + `validate_config` (what `ray up` runs; the check Ray's test_autoscaler_yaml.py does). The head
starts the dashboard bound to 127.0.0.1 so `ray job submit` works through `ray dashboard`'s tunnel. KubeRay
manifests: no offline validator exists, so their structure is checked here.
"""

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"
RAY_UP = sorted(p for p in CLUSTER.glob("*.yaml") if not p.name.startswith("kuberay"))


def ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def check_ray_up(config: dict) -> dict:
    """Raise as `ray up` would: schema of the file as written, then prepare_config + validate_config."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    jsonschema.validate(config, ray_schema())
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_there_are_ray_up_configs():
    assert {p.name for p in RAY_UP} >= {"aws-gpu.yaml", "local-multinode.yaml"}


@pytest.mark.parametrize("path", RAY_UP, ids=lambda p: p.name)
def test_ray_up_yaml_passes_rays_own_validation(path):
    prepared = check_ray_up(yaml.safe_load(path.read_text()))
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("path", RAY_UP, ids=lambda p: p.name)
@pytest.mark.parametrize("mutate", ["top-level", "node-type", "legacy-min-workers"])
def test_a_misspelled_or_legacy_key_fails_validation(path, mutate):
    config = yaml.safe_load(path.read_text())
    if mutate == "top-level":
        config["idle_timeout_minuts"] = config.pop("idle_timeout_minutes", 5)
    elif mutate == "node-type":
        if "available_node_types" not in config:  # local provider: no node types; misspell a nested key instead
            config["auth"]["ssh_usr"] = config["auth"].pop("ssh_user")
        else:
            node = next(iter(config["available_node_types"].values()))
            node["min_worker"] = 0
    else:
        config["min_workers"] = 2  # the legacy top-level key the local YAML used to carry
    with pytest.raises((jsonschema.ValidationError, ValueError, KeyError, SystemExit)):
        check_ray_up(config)


@pytest.mark.parametrize("path", RAY_UP, ids=lambda p: p.name)
def test_head_starts_the_dashboard_on_localhost_and_nodes_install_ray_default(path):
    config = yaml.safe_load(path.read_text())
    head = " ".join(config["head_start_ray_commands"])
    assert "--include-dashboard=true" in head and "--dashboard-host=127.0.0.1" in head
    assert "--include-dashboard=false" not in head
    assert any("ray[default]" in c for c in config["setup_commands"])
    assert "RAY_AUTH_MODE=disabled" in head
    assert re.search(r"ray job submit +--address http://127.0.0.1:8265", path.read_text())  # usage, in the header


def _pods(spec: dict) -> list[dict]:
    return [spec["headGroupSpec"]] + list(spec.get("workerGroupSpecs", []))


@pytest.mark.parametrize("name, kind", [("kuberay-raycluster.yaml", "RayCluster"), ("kuberay-rayjob.yaml", "RayJob")])
def test_kuberay_manifests(name, kind):
    doc = yaml.safe_load((CLUSTER / name).read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == kind
    spec = doc["spec"] if kind == "RayCluster" else doc["spec"]["rayClusterSpec"]
    import ray

    assert spec["rayVersion"] == ray.__version__
    claims = set()
    for group in _pods(spec):
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())  # KubeRay wants strings
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] and container["resources"]["limits"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/mnt/shared" in mounts  # one shared workdir on every node
        claims |= {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    assert claims == {yaml.safe_load((CLUSTER / "kuberay-pvc.yaml").read_text())["metadata"]["name"]}
    head = spec["headGroupSpec"]["rayStartParams"]
    assert head["num-cpus"] == "0"  # work runs on workers
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
        custom = json.loads(json.loads(group["rayStartParams"]["resources"]))  # KubeRay's quoted-JSON form
        assert all(isinstance(v, (int, float)) for v in custom.values())
    if kind == "RayJob":
        entry = doc["spec"]["entrypoint"]
        assert re.search(r"fairl run .*--address auto .*--workdir /mnt/shared/", entry)
        assert "fairl tune" in entry and doc["spec"]["shutdownAfterJobFinishes"] is True


def test_pvc_is_read_write_many():
    doc = yaml.safe_load((CLUSTER / "kuberay-pvc.yaml").read_text())
    assert doc["kind"] == "PersistentVolumeClaim" and doc["spec"]["accessModes"] == ["ReadWriteMany"]
