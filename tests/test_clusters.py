"""The files in clusters/: every launcher YAML passes Ray's own cluster-config validation
(the `ray up` path), and the KubeRay manifests carry what KubeRay requires."""

import re
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
    # The project is mounted without .git and what git ignores (.venv, runs/).
    assert config["rsync_filter"] == [".gitignore"] and "**/.git" in config["rsync_exclude"]
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


def _cpus(quantity) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _check_cluster_spec(spec, max_workers: int):
    """What the operator needs to follow the cluster, and resources that `--num-workers auto`
    counts right. ``max_workers``: the rollout workers the run asks for."""
    # Token auth is KubeRay's own (authOptions, Ray 2.52+): the operator makes the Secret and
    # sets RAY_AUTH_MODE/RAY_AUTH_TOKEN in every container; a hand-made variable would shadow it.
    assert spec["authOptions"] == {"mode": "token"}
    major, minor, _ = (int(part) for part in spec["rayVersion"].split("."))
    assert (major, minor) >= (2, 52)
    dockerfile = (KUBERAY / "Dockerfile").read_text()
    assert f"rayproject/ray:{spec['rayVersion']}-" in dockerfile  # the image runs the Ray it declares
    head = spec["headGroupSpec"]
    # The operator and the autoscaler reach the dashboard through the head Service: never
    # loopback-only. The Service stays inside the Kubernetes cluster.
    assert head["rayStartParams"].get("dashboard-host", "0.0.0.0") not in ("127.0.0.1", "localhost", "::1")
    assert head.get("serviceType", "ClusterIP") == "ClusterIP" and not head.get("enableIngress", False)
    assert spec["enableInTreeAutoscaling"] is True
    groups = [head] + spec["workerGroupSpecs"]
    for group in groups:
        container = group["template"]["spec"]["containers"][0]
        assert container["image"]
        names = {item["name"] for item in container.get("env", [])}
        assert not names & {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"}
        # Ray's CPU count is what the pod gets: `--num-workers auto` counts Ray's CPUs.
        resources = container["resources"]
        assert _cpus(resources["requests"]["cpu"]) == _cpus(resources["limits"]["cpu"])
        assert float(group["rayStartParams"]["num-cpus"]) == _cpus(resources["limits"]["cpu"])
    head_resources = head["template"]["spec"]["containers"][0]["resources"]
    assert head_resources["limits"]["nvidia.com/gpu"] == 1  # the learner's GPU
    rollout_cpus = 0.0
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and "rayStartParams" in group
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert "nvidia.com/gpu" not in limits  # rollout workers run on CPUs
        rollout_cpus += group["maxReplicas"] * _cpus(limits["cpu"])
    # The autoscaler can give the run every worker it asks for.
    assert 0 < max_workers <= rollout_cpus


def _max_workers(command: str) -> int:
    assert "--num-workers auto" in command
    return int(re.search(r"runtime\.max_workers=(\d+)", command).group(1))


def test_kuberay_raycluster_manifest():
    manifest = yaml.safe_load((KUBERAY / "raycluster.yaml").read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayCluster"
    assert manifest["metadata"]["name"]
    text = (KUBERAY / "raycluster.yaml").read_text()
    (submit,) = [line for line in text.splitlines() if "distrl submit" in line]
    _check_cluster_spec(manifest["spec"], _max_workers(submit))
    # What the comments tell people to type names what the operator makes.
    assert f"svc/{manifest['metadata']['name']}-head-svc" in text
    assert f"get secret {manifest['metadata']['name']} " in text


def test_kuberay_rayjob_manifest():
    manifest = yaml.safe_load((KUBERAY / "rayjob.yaml").read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayJob"
    spec = manifest["spec"]
    assert spec["entrypoint"].startswith("distrl train") and "--num-workers auto" in spec["entrypoint"]
    assert spec["submissionMode"] == "SidecarMode"
    assert spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["shutdownAfterJobFinishes"] is True
    _check_cluster_spec(spec["rayClusterSpec"], _max_workers(spec["entrypoint"]))
    text = (KUBERAY / "rayjob.yaml").read_text()
    assert f"svc/{manifest['metadata']['name']}-head-svc" in text


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
