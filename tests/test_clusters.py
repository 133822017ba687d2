"""The files in clusters/: every launcher YAML passes Ray's own cluster-config validation
(the `ray up` path), and the KubeRay manifests carry what KubeRay requires."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER_FILES = sorted((ROOT / "clusters").glob("*.yaml"))
KUBERAY = ROOT / "clusters" / "kuberay"


def test_there_are_launcher_files_for_aws_gcp_and_own_machines():
    assert {p.name for p in LAUNCHER_FILES} >= {"aws.yaml", "gcp.yaml", "local.yaml"}


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda p: p.name)
def test_launcher_yaml_passes_rays_validation(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(path.read_text())
    validate_config(prepare_config(config))  # raises on any schema violation
    text = path.read_text()
    # Dashboards on localhost only; token auth on every node; the token is not in the file.
    for command in config["head_start_ray_commands"]:
        if "ray start" in command:
            assert "--dashboard-host=127.0.0.1" in command and "RAY_AUTH_MODE=token" in command
    assert all("RAY_AUTH_MODE=token" in c for c in config["worker_start_ray_commands"] if "ray start" in c)
    assert "RAY_AUTH_TOKEN" not in text
    assert "How workers scale" in text
    # distrl is installed on every node.
    assert any("distrl" in command for command in config["setup_commands"])


def test_cloud_files_have_a_gpu_head_and_spot_cpu_workers():
    aws = yaml.safe_load((ROOT / "clusters" / "aws.yaml").read_text())
    workers = aws["available_node_types"]["cpu_workers"]
    assert workers["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert workers["min_workers"] <= workers["max_workers"]
    gcp = yaml.safe_load((ROOT / "clusters" / "gcp.yaml").read_text())
    assert gcp["available_node_types"]["head_gpu"]["node_config"]["guestAccelerators"][0]["acceleratorCount"] == 1
    assert gcp["available_node_types"]["cpu_workers"]["node_config"]["scheduling"][0]["preemptible"] is True


def test_a_broken_launcher_file_is_rejected():
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "clusters" / "aws.yaml").read_text())
    config["available_node_types"]["cpu_workers"]["min_workers"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(config))


def _check_cluster_spec(spec):
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    containers = head["template"]["spec"]["containers"]
    assert containers and containers[0]["image"]
    assert containers[0]["resources"]["limits"]["nvidia.com/gpu"] == 1  # the learner's GPU
    assert spec["enableInTreeAutoscaling"] is True
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and "rayStartParams" in group
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["template"]["spec"]["containers"][0]["image"]
    for container in [containers[0]] + [g["template"]["spec"]["containers"][0] for g in spec["workerGroupSpecs"]]:
        env = {item["name"]: item for item in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]  # from a Secret, not the file


def test_kuberay_raycluster_manifest():
    manifest = yaml.safe_load((KUBERAY / "raycluster.yaml").read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayCluster"
    assert manifest["metadata"]["name"]
    _check_cluster_spec(manifest["spec"])


def test_kuberay_rayjob_manifest():
    manifest = yaml.safe_load((KUBERAY / "rayjob.yaml").read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayJob"
    spec = manifest["spec"]
    assert spec["entrypoint"].startswith("distrl train") and "--num-workers auto" in spec["entrypoint"]
    assert spec["submissionMode"] == "SidecarMode"
    assert spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["shutdownAfterJobFinishes"] is True
    _check_cluster_spec(spec["rayClusterSpec"])


def test_an_address_typed_by_the_user_wins_over_the_environment(monkeypatch):
    from distrl.jobs import DEFAULT_ADDRESS, dashboard_address
    from distrl.runtime.cluster import ray_address_env, starts_embedded

    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://cluster-a:8265")
    assert dashboard_address("10.0.0.5:8265") == "http://10.0.0.5:8265"
    assert dashboard_address("https://b:8265") == "https://b:8265"
    assert dashboard_address(None) == "http://cluster-a:8265"
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert dashboard_address(None) == DEFAULT_ADDRESS

    # A dashboard URL in RAY_ADDRESS (Ray's docs export one for `ray job`) is not a cluster
    # for training to join; a GCS address (what Ray sets for a job's driver) is.
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    assert ray_address_env() is None and starts_embedded(None)
    assert dashboard_address(None) == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.7:6379")
    assert ray_address_env() == "10.0.0.7:6379" and not starts_embedded(None)
