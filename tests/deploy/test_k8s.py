"""The Kubernetes manifests (deploy/k8s): built with kubectl's kustomize, validated strictly
against the Kubernetes API schemas (every field known, every type right) for the oldest and the
newest versions they target, checked to fit together and to set only settings mehrd knows, and
run as pods with podman (pod.py) against the real image: the init script, Secret token, security
context and probes (native gRPC health, readiness apart from liveness) work, and a second pod
joins the first over the headless Service's name."""

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kubernetes_validate import ValidationError, validate

from conftest import ROOT, require
from pod import Cluster, Pod
from podman import free_port, wait_until

K8S = ROOT / "deploy/k8s"
# 1.27: native gRPC probes and StatefulSet PVC retention are on by default from here.
VERSIONS = ["1.27.0", "1.37.0"]


def kubectl() -> str:
    """The venv's kubectl (tests/deploy/requirements.txt), else one on PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    return str(beside) if beside.exists() else require("kubectl")


def build(tmp_path: Path, token: str) -> list[dict]:
    """`kubectl kustomize` of a copy of deploy/k8s with an api.token written, as an operator does."""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("api.token"))
    (tree / "api.token").write_text(token)
    out = subprocess.run([kubectl(), "kustomize", str(tree)], check=True, capture_output=True, text=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture
def token() -> str:
    return secrets.token_hex(32)


@pytest.fixture
def objects(tmp_path, token) -> list[dict]:
    return build(tmp_path, token)


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def test_kustomize_output_is_the_expected_set(objects):
    kinds = sorted((o["kind"], o["metadata"]["name"].split("-6")[0]) for o in objects)
    assert [k for k, _ in kinds] == [
        "ConfigMap", "PodDisruptionBudget", "Secret", "Service", "Service", "StatefulSet"
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_validate_strictly(objects, version):
    for obj in objects:
        validate(obj, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_each_file_validates_on_its_own(version):
    """For `kubectl apply -f deploy/k8s/<file>` without kustomize."""
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for obj in yaml.safe_load_all(path.read_text()):
            validate(obj, version, strict=True)


def test_validation_catches_a_misspelt_field(objects):
    """The check above can fail: a misspelt probe field is refused."""
    sts = json.loads(json.dumps(by_kind(objects, "StatefulSet")[0]))
    container = sts["spec"]["template"]["spec"]["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    with pytest.raises(ValidationError) as refused:
        validate(sts, VERSIONS[-1], strict=True)
    assert "'livenesProbe' was unexpected" in str(refused.value).splitlines()[0]


def test_objects_fit_together(objects):
    (sts,) = by_kind(objects, "StatefulSet")
    (pdb,) = by_kind(objects, "PodDisruptionBudget")
    (config,) = by_kind(objects, "ConfigMap")
    (secret,) = by_kind(objects, "Secret")
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    template = sts["spec"]["template"]
    labels = template["metadata"]["labels"]
    spec = template["spec"]
    (container,) = spec["containers"]

    def selects(selector):
        return all(labels.get(k) == v for k, v in selector.items())

    assert selects(sts["spec"]["selector"]["matchLabels"])
    assert selects(pdb["spec"]["selector"]["matchLabels"])
    assert pdb["spec"]["maxUnavailable"] == 1

    # Services: the headless one is the StatefulSet's, publishes not-ready pods, and every
    # targetPort is a named port of the container.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"mesh-tcp": 4242, "api": 7440, "health": 7441}
    mesh = services[sts["spec"]["serviceName"]]
    assert mesh["spec"]["clusterIP"] == "None" and mesh["spec"]["publishNotReadyAddresses"]
    assert {p["port"] for p in mesh["spec"]["ports"]} >= {4242}
    assert services["mehrd-api"]["spec"]["type"] == "ClusterIP"
    for service in services.values():
        assert selects(service["spec"]["selector"])
        for port in service["spec"]["ports"]:
            assert ports[port["targetPort"]] == port["port"]

    # Volumes: every mount names a volume or a claim template; ConfigMap and Secret exist.
    volumes = {v["name"]: v for v in spec["volumes"]}
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    for c in spec["initContainers"] + spec["containers"]:
        for mount in c["volumeMounts"]:
            assert mount["name"] in volumes or mount["name"] in claims, mount
    assert volumes["config"]["configMap"]["name"] == config["metadata"]["name"]
    assert volumes["api-token"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert set(base64_keys(secret)) == {"api.token"}

    # Non-root as the image's user (Containerfile USER), nothing to escalate.
    containerfile = (ROOT / "deploy/container/Containerfile").read_text()
    uid, gid = re.search(r"^USER (\d+):(\d+)$", containerfile, re.M).groups()
    security = spec["securityContext"]
    assert security["runAsNonRoot"] and str(security["runAsUser"]) == uid
    assert str(security["runAsGroup"]) == gid and str(security["fsGroup"]) == gid
    for c in spec["initContainers"] + spec["containers"]:
        own = c["securityContext"]
        assert own["allowPrivilegeEscalation"] is False and own["readOnlyRootFilesystem"]
        assert own["capabilities"]["drop"] == ["ALL"]

    # Probes: native gRPC health on the plaintext health listener; liveness asks for "",
    # readiness for "readiness"; readiness reacts sooner than liveness.
    health_port = re.search(r'health_listen = "0\.0\.0\.0:(\d+)"', config["data"]["mehrd.toml"]).group(1)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == int(health_port) == ports["health"]
    assert container["livenessProbe"]["grpc"].get("service", "") == ""
    assert container["readinessProbe"]["grpc"]["service"] == "readiness"
    assert container["readinessProbe"]["periodSeconds"] < container["livenessProbe"]["periodSeconds"]
    # The pod outlives mehrd's drain.
    grace = re.search(r"shutdown_grace_secs = (\d+)", config["data"]["mehrd.toml"]).group(1)
    assert spec["terminationGracePeriodSeconds"] > int(grace) + 5


def base64_keys(secret):
    return secret.get("data", {}).keys()


def test_config_and_env_are_mehrd_settings(objects, binaries, tmp_path):
    """mehrd itself reads the ConfigMap's file with the pod's MEHR_* env (fieldRefs filled in):
    every key is known (unknown ones are fatal) and the env lands where it should."""
    (config,) = by_kind(objects, "ConfigMap")
    (sts,) = by_kind(objects, "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    path = tmp_path / "mehrd.toml"
    path.write_text(config["data"]["mehrd.toml"])
    fields = {"POD_NAME": "mehrd-0", "POD_NAMESPACE": "mehr", "POD_IP": "10.1.2.3"}
    env = {"PATH": os.environ["PATH"]}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: fields[m.group(1)], var["value"])
    env.pop("MEHR_CONFIG")
    done = subprocess.run(
        [binaries / "mehrd", "--config", path, "--print-config"],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    import tomllib

    effective = tomllib.loads(done.stdout)
    assert effective["data_dir"] == "/var/lib/mehr/node"
    assert effective["api"]["listen"] == ["0.0.0.0:7440"]
    assert effective["api"]["health_listen"] == "0.0.0.0:7441"
    assert "mehrd-0.mehrd-mesh.mehr.svc" in effective["api"]["tls_extra_names"]
    assert "10.1.2.3" in effective["api"]["tls_extra_names"]
    assert [i["type"] for i in effective["interfaces"]] == ["tcp_server"]


def health(port: int, cert: bytes, name: str) -> str:
    """gRPC health through a published port, the TLS name checked against `name`."""
    credentials = grpc.ssl_channel_credentials(root_certificates=cert)
    options = [("grpc.ssl_target_name_override", name)]
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def test_pods_run_as_the_statefulset_says(objects, image, binaries, token, tmp_path):
    cluster = Cluster(objects=objects, image=image, namespace="mehr")
    cluster.create_network()
    pods = []
    try:
        api_port = free_port()
        first = Pod(cluster, 0, tmp_path)
        pods.append(first)
        first.start(publish={api_port: 7440})
        second = Pod(cluster, 1, tmp_path)
        pods.append(second)
        second.start()

        # The init script: data dir 0700 on the volume, the Secret's token installed 0600.
        data = "/var/lib/mehr/node"
        assert first.exec("stat", "-c", "%U %a", data, f"{data}/api.token").split() == [
            "mehr", "700", "mehr", "600"
        ]
        assert first.exec("cat", f"{data}/api.token") == token

        # mehrd-1 dialled mehrd-0 by its headless Service name, and the link is up.
        def linked():
            interfaces = json.loads(second.exec("mehr", "--json", "interfaces"))
            return [i for i in interfaces if i["type"] == "tcp_client" and i["state"] == "up"]

        (link,) = wait_until("mehrd-1's link to mehrd-0", linked, timeout=60)
        assert link["name"] == "mehrd-0"

        # The API from outside: TLS with the node's certificate, valid for its Service names,
        # and the token from the Secret.
        cert = first.exec("cat", f"{data}/tls/cert.pem").encode()
        for name in ("mehrd-0.mehrd-mesh.mehr.svc", "mehrd-api.mehr.svc", "localhost"):
            assert wait_until(f"health as {name}", lambda n=name: health(api_port, cert, n)) == "SERVING"
        cert_file = tmp_path / "cert.pem"
        cert_file.write_bytes(cert)
        info = subprocess.run(
            [binaries / "mehr", "--endpoint", f"https://127.0.0.1:{api_port}", "--ca-cert",
             cert_file, "--json", "info"],
            capture_output=True, text=True, timeout=30, check=True, env={**os.environ, "MEHR_TOKEN": token},
        )
        node_id = json.loads(info.stdout)["node_id"]

        # Drained, the pod fails its readiness probe (it would leave the Service's endpoints)
        # and still passes liveness (it is not restarted); resumed, it is ready again.
        first.exec("mehr", "drain")
        wait_until("readiness NOT_SERVING while drained",
                   lambda: not first.probe_once("readinessProbe")[0] or None)
        assert first.probe_once("livenessProbe")[0]
        first.exec("mehr", "drain", "--resume")
        wait_until("ready again", lambda: first.probe_once("readinessProbe")[0] or None)

        # A rolling restart: SIGTERM drains, then the pod comes back on its volume as the same node.
        assert first.stop() == 0
        assert "stopped cleanly" in first.logs()
        first.start()
        assert json.loads(first.exec("mehr", "--json", "info"))["node_id"] == node_id
    finally:
        for pod in pods:
            pod.remove()
        cluster.remove_network()
