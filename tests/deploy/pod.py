"""Runs a pod of deploy/k8s's StatefulSet with podman, doing what the kubelet does with the pod
template, so the manifests' init script, ConfigMap, Secret, security context, env and probes are
exercised against the real image without a cluster (none can be had here):

- the pod's volumes: the claim from volumeClaimTemplates as a podman volume whose root belongs to
  root with group fsGroup (2775), as the kubelet leaves a volume with fsGroup; ConfigMap and Secret
  volumes as directories of their keys with the volume's defaultMode (Secret files group fsGroup);
  emptyDir as a world-writable directory shared by the pod's containers;
- env values, fieldRefs (metadata.name, metadata.namespace, status.podIP) and $(VAR) references;
- runAsUser/runAsGroup/fsGroup, readOnlyRootFilesystem, dropped capabilities, no privilege
  escalation; command and args over the image's entrypoint;
- init containers run to completion in order, then the container starts and its probes run
  as the kubelet would (startup until it passes, then readiness and liveness; an exec probe in
  the container, a grpc probe in plaintext at the pod's IP, which the host routes to);
- the headless Service's DNS name <pod>.<serviceName> as a network alias on a podman network.

Podman's own `kube play` (4.3) cannot do this: it panics on a Secret volume without `optional`,
writes Secret data still base64-encoded, has no metadata.namespace or status.podIP fieldRef,
and restarts init containers."""

import base64
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from podman import podman, wait_until


@dataclass
class Cluster:
    """The objects of one `kubectl kustomize` output, and the podman network they run on."""

    objects: list
    image: str
    namespace: str = "default"
    network: str = field(default_factory=lambda: f"mehr-k8s-{uuid.uuid4().hex[:8]}")
    subnet_octet: int = field(default_factory=lambda: 100 + uuid.uuid4().int % 100)

    def one(self, kind: str, name: str | None = None) -> dict:
        found = [
            o for o in self.objects
            if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
        ]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def create_network(self) -> None:
        podman("network", "create", "--subnet", f"10.89.{self.subnet_octet}.0/24", self.network)

    def remove_network(self) -> None:
        podman("network", "rm", "-f", self.network, check=False)


class Pod:
    """Pod `ordinal` of the StatefulSet, its volumes kept across restarts like a PVC."""

    def __init__(self, cluster: Cluster, ordinal: int, workdir: Path):
        self.cluster = cluster
        self.sts = cluster.one("StatefulSet")
        self.spec = self.sts["spec"]["template"]["spec"]
        self.name = f"{self.sts['metadata']['name']}-{ordinal}"
        self.ip = f"10.89.{cluster.subnet_octet}.{10 + ordinal}"
        self.dir = workdir / self.name
        self.dir.mkdir(parents=True)
        self.claims: dict[str, str] = {}
        self.containers: list[str] = []
        self.fs_group = self.spec["securityContext"]["fsGroup"]
        self._make_volumes()

    # ---- volumes ----
    def _make_volumes(self) -> None:
        for template in self.sts["spec"]["volumeClaimTemplates"]:
            claim = f"{template['metadata']['name']}-{self.name}-{uuid.uuid4().hex[:6]}"
            podman("volume", "create", claim)
            mountpoint = Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", claim).stdout.strip())
            shutil.chown(mountpoint, "root", self.fs_group)
            mountpoint.chmod(0o2775)
            self.claims[template["metadata"]["name"]] = claim
        for volume in self.spec["volumes"]:
            path = self.dir / volume["name"]
            path.mkdir()
            if "configMap" in volume:
                data = self.cluster.one("ConfigMap", volume["configMap"]["name"])["data"]
                self._write_files(path, data, volume["configMap"].get("defaultMode", 0o644), group=0)
            elif "secret" in volume:
                secret = self.cluster.one("Secret", volume["secret"]["secretName"])
                data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
                self._write_files(path, data, volume["secret"].get("defaultMode", 0o644), group=self.fs_group)
            elif "emptyDir" in volume:
                path.chmod(0o777)
            else:
                raise AssertionError(f"volume {volume['name']}: a kind this emulation lacks")

    @staticmethod
    def _write_files(path: Path, data: dict, mode: int, group: int) -> None:
        path.chmod(0o755)
        for key, text in data.items():
            file = path / key
            file.write_text(text)
            file.chmod(mode)
            shutil.chown(file, "root", group)

    def _mounts(self, container: dict) -> list[str]:
        args = []
        for mount in container.get("volumeMounts", []):
            source = self.claims.get(mount["name"]) or str(self.dir / mount["name"])
            options = ":ro" if mount.get("readOnly") else ""
            args += ["-v", f"{source}:{mount['mountPath']}{options}"]
        return args

    # ---- environment ----
    def _env(self, container: dict) -> list[str]:
        fields = {
            "metadata.name": self.name,
            "metadata.namespace": self.cluster.namespace,
            "status.podIP": self.ip,
        }
        values: dict[str, str] = {}
        for var in container.get("env", []):
            if "valueFrom" in var:
                values[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
            else:
                # The kubelet expands $(NAME) from the variables defined before this one.
                values[var["name"]] = re.sub(
                    r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                    lambda m: values.get(m.group(1), m.group(0)),
                    var["value"],
                )
        return [arg for name, value in values.items() for arg in ("-e", f"{name}={value}")]

    def _security(self, container: dict) -> list[str]:
        pod = self.spec["securityContext"]
        own = container.get("securityContext", {})
        args = ["--user", f"{pod['runAsUser']}:{pod['runAsGroup']}", "--group-add", str(self.fs_group)]
        if own.get("readOnlyRootFilesystem"):
            args += ["--read-only", "--read-only-tmpfs=false"]
        if own.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        if "ALL" in own.get("capabilities", {}).get("drop", []):
            args += ["--cap-drop", "all"]
        return args

    def _run_args(self, container: dict) -> tuple[list[str], list[str]]:
        """podman run options for `container`, and the arguments after the image."""
        args = ["--network", self.cluster.network, "--hostname", self.name]
        if container is self.main:
            # The pod's address (status.podIP); init containers run before it is taken here.
            args += ["--ip", self.ip]
        args += [*self._security(container), *self._env(container), *self._mounts(container)]
        if "command" in container:
            args += ["--entrypoint", container["command"][0]]
        return args, container.get("command", [])[1:] + container.get("args", [])

    @property
    def main(self) -> dict:
        (container,) = self.spec["containers"]
        return container

    # ---- lifecycle ----
    def start(self, publish: dict[int, int] | None = None) -> None:
        """Runs the init containers to completion, then the container, then its probes."""
        for init in self.spec.get("initContainers", []):
            args, rest = self._run_args(init)
            done = podman("run", "--rm", "--name", f"{self.name}-{init['name']}", *args,
                          self.cluster.image, *rest, check=False)
            assert done.returncode == 0, f"init container {init['name']} failed:\n{done.stdout}{done.stderr}"
        args, rest = self._run_args(self.main)
        name = f"{self.name}-{uuid.uuid4().hex[:6]}"
        aliases = ["--network-alias", f"{self.name}.{self.sts['spec']['serviceName']}"]
        ports = [a for host, cport in (publish or {}).items() for a in ("-p", f"127.0.0.1:{host}:{cport}")]
        podman("run", "-d", "--name", name, *aliases, *ports, *args, self.cluster.image, *rest)
        self.containers.append(name)
        self.container = name
        self.run_probe("startupProbe")
        self.run_probe("readinessProbe")
        self.run_probe("livenessProbe")

    def run_probe(self, kind: str) -> None:
        """Runs the probe as the kubelet would: every periodSeconds until it passes, at most
        failureThreshold times (capped at 120 s here)."""
        probe = self.main[kind]
        period = probe.get("periodSeconds", 10)
        tries = min(probe.get("failureThreshold", 3), max(1, 120 // period))
        for attempt in range(tries):
            passed, detail = self.probe_once(kind)
            if passed:
                return
            if attempt + 1 < tries:
                time.sleep(min(period, 2))
        raise AssertionError(f"{self.name}: {kind} failed {tries} times: {detail}")

    def probe_once(self, kind: str) -> tuple[bool, str]:
        """One try of the probe: an exec probe runs its command in the container; a grpc probe
        calls grpc.health.v1 Check in plaintext at the pod's IP and port, as the kubelet does,
        and passes only on SERVING."""
        probe = self.main[kind]
        timeout = probe.get("timeoutSeconds", 1)
        if "exec" in probe:
            done = podman("exec", self.container, *probe["exec"]["command"], check=False,
                          timeout=timeout + 5)
            return done.returncode == 0, done.stdout + done.stderr
        action = probe["grpc"]
        request = health_pb2.HealthCheckRequest(service=action.get("service", ""))
        try:
            with grpc.insecure_channel(f"{self.ip}:{action['port']}") as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout)
        except grpc.RpcError as e:
            return False, f"{e.code().name}: {e.details()}"
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return status == "SERVING", status

    def exec(self, *command: str) -> str:
        return podman("exec", self.container, *command).stdout

    def stop(self) -> int:
        """SIGTERM within the grace period, as the kubelet stops a pod; returns the exit code."""
        grace = self.spec.get("terminationGracePeriodSeconds", 30)
        podman("stop", "-t", str(grace), self.container, timeout=grace + 30)
        code = podman("inspect", "--format", "{{.State.ExitCode}}", self.container).stdout.strip()
        return int(code)

    def logs(self) -> str:
        done = podman("logs", self.container)
        return done.stdout + done.stderr

    def remove(self) -> None:
        for name in self.containers:
            podman("rm", "-f", "-t", "5", name, check=False)
        for claim in self.claims.values():
            podman("volume", "rm", "-f", claim, check=False)
