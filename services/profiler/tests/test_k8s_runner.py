"""The Kubernetes Jobs runner against a stand-in Kubernetes API server.

No Kubernetes cluster can run on this machine, so this runner was NOT exercised against a real
cluster here: these tests check what it sends and how it reads answers shaped as the API server's
(Jobs, pods with container states, logs, events, metrics.k8s.io PodMetrics, deletes), served by
an aiohttp app on 127.0.0.1 that plays the cluster one poll at a time. The Job bodies it sends are
also validated against the Kubernetes 1.30 schemas.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sage_common.schemas import ArchImage, BuildDone
from sage_profiler import k8s_api, runner_k8s
from sage_profiler.app import make_runner
from sage_profiler.config import Config
from sage_profiler.fakes import FakeDataSource
from sage_profiler.k8s_api import KubeApi, quantity
from sage_profiler.k8s_job import JobSettings
from sage_profiler.k8s_measure import KubeRunResult
from sage_profiler.runner import RunnerError, RunnerUnavailable, RunSpec
from sage_profiler.runner_k8s import KubernetesRunner
from sage_profiler.service import Profiler, profile

MiB = 1 << 20
TOKEN = "stand-in-token"  # noqa: S105 - a test value
NS = "sage-test"
IMAGE = "registry.example.org/ns/app@sha256:" + "a" * 64
START = "2024-05-01T10:00:00Z"


@dataclass
class Box:
    """How one container of the next Job behaves, poll by poll of its pod."""

    exit_code: int = 0
    reason: str = "Completed"
    pending: int = 1  # pod polls before it runs
    running: int = 2  # pod polls while it runs
    seconds: int = 3  # finishedAt - startedAt
    waiting: str | None = None  # stays waiting with this reason
    hang: bool = False
    memory: list[str] = field(default_factory=lambda: ["40Mi", "96Mi", "64Mi"])
    cpu: list[str] = field(default_factory=lambda: ["500m", "1500000000n", "1"])


class StandIn:
    """The few endpoints of the API server the runner uses, with a scripted cluster behind them."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.boxes: dict[str, list[Box]] = {}
        self.polls: dict[str, int] = {}
        self.created: list[dict[str, Any]] = []
        self.deleted: list[tuple[str, str | None]] = []
        self.next: list[Box] = [Box()]
        self.deadline_after: int | None = None  # Job GETs before DeadlineExceeded
        self.refuse: dict[str, tuple[int, str]] = {}  # "create" -> (status, message)
        self.live_pods: set[str] = set()
        self.warning = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity."
        app = web.Application(middlewares=[self._auth])
        jobs, pods = "/apis/batch/v1/namespaces/{ns}/jobs", "/api/v1/namespaces/{ns}/pods"
        app.router.add_post(jobs, self.create_job)
        app.router.add_get(jobs, self.list_jobs)
        app.router.add_get(jobs + "/{name}", self.get_job)
        app.router.add_delete(jobs + "/{name}", self.delete_job)
        app.router.add_get(pods, self.list_pods)
        app.router.add_get(pods + "/{name}", self.get_pod)
        app.router.add_get(pods + "/{name}/log", self.log)
        app.router.add_get("/api/v1/namespaces/{ns}/events", self.events)
        app.router.add_get("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods/{name}", self.metrics)
        self.app = app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return status(401, "Unauthorized")
        if request.match_info.get("ns") != NS:
            return status(403, f"forbidden in namespace {request.match_info.get('ns')}")
        return await handler(request)

    async def create_job(self, request: web.Request) -> web.Response:
        if "create" in self.refuse:
            return status(*self.refuse["create"])
        body = await request.json()
        name = body["metadata"]["name"]
        self.created.append(body)
        self.jobs[name] = {**body, "status": {}}
        self.boxes[name], self.polls[name] = self.next, 0
        return web.json_response(self.jobs[name], status=201)

    async def list_jobs(self, request: web.Request) -> web.Response:
        wanted = [t.partition("=") for t in request.query.get("labelSelector", "").split(",") if t]
        items = [
            j
            for j in self.jobs.values()
            if all(
                k in j["metadata"]["labels"] and (not eq or j["metadata"]["labels"][k] == v)
                for k, eq, v in wanted
            )
        ]
        return web.json_response({"kind": "JobList", "items": items})

    async def get_job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["name"])
        if job is None:
            return status(404, "jobs.batch not found")
        self.polls[job["metadata"]["name"]] += 1
        if (
            self.deadline_after is not None
            and self.polls[job["metadata"]["name"]] > self.deadline_after
        ):
            job["status"] = {
                "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]
            }
        return web.json_response(job)

    async def delete_job(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.deleted.append((name, request.query.get("propagationPolicy")))
        if self.jobs.pop(name, None) is None:
            return status(404, "jobs.batch not found")
        return web.json_response({"kind": "Status", "status": "Success"})

    def _pod(self, job: str) -> dict[str, Any] | None:
        if job not in self.jobs or self.jobs[job]["status"].get("conditions"):
            return None  # the Job controller deletes the pods of a Job past its deadline
        n = self.polls[job]
        statuses, phases = [], []
        for k, box in enumerate(self.boxes[job]):
            if box.waiting or n <= box.pending:
                state = {"waiting": {"reason": box.waiting or "ContainerCreating", "message": "!"}}
                phases.append("Pending")
            elif box.hang or n <= box.pending + box.running:
                state = {"running": {"startedAt": START}}
                phases.append("Running")
            else:
                finished = f"2024-05-01T10:00:{box.seconds:02d}Z"
                state = {
                    "terminated": {
                        "exitCode": box.exit_code,
                        "reason": box.reason,
                        "startedAt": START,
                        "finishedAt": finished,
                    }
                }
                phases.append("Succeeded" if box.exit_code == 0 else "Failed")
            statuses.append({"name": f"c{k}", "state": state})
        phase = next((p for p in ("Pending", "Running", "Failed") if p in phases), "Succeeded")
        return {
            "metadata": {"name": f"{job}-x7k2p", "labels": {"job-name": job}},
            "status": {"phase": phase, "containerStatuses": statuses},
        }

    async def list_pods(self, request: web.Request) -> web.Response:
        job = request.query["labelSelector"].removeprefix("job-name=")
        pod = self._pod(job)
        return web.json_response({"kind": "PodList", "items": [pod] if pod else []})

    async def get_pod(self, request: web.Request) -> web.Response:
        if request.match_info["name"] in self.live_pods:
            return web.json_response({"metadata": {"name": request.match_info["name"]}})
        return status(404, "pods not found")

    async def log(self, request: web.Request) -> web.Response:
        lines = int(request.query["tailLines"])
        text = "".join(f"{request.query['container']} line {i}\n" for i in range(30))
        return web.Response(text="".join(text.splitlines(keepends=True)[-lines:]))

    async def events(self, request: web.Request) -> web.Response:
        item = {"type": "Warning", "reason": "FailedScheduling", "message": self.warning}
        return web.json_response({"items": [item]})

    async def metrics(self, request: web.Request) -> web.Response:
        job = request.match_info["name"].rsplit("-", 1)[0]
        n = self.polls.get(job, 0)
        boxes = self.boxes.get(job, [])
        containers = []
        for k, box in enumerate(boxes):
            i = min(n - box.pending - 1, len(box.memory) - 1)
            if i >= 0:
                usage = {"memory": box.memory[i], "cpu": box.cpu[min(i, len(box.cpu) - 1)]}
                containers.append({"name": f"c{k}", "usage": usage})
        if not containers:
            return status(404, "podmetrics not found")
        stamp = f"2024-05-01T10:00:{n:02d}Z"
        return web.json_response({"timestamp": stamp, "window": "15s", "containers": containers})


def status(code: int, message: str) -> web.Response:
    body = {"kind": "Status", "status": "Failure", "message": message, "code": code}
    return web.json_response(body, status=code)


@pytest.fixture
async def kube() -> AsyncIterator[tuple[StandIn, str]]:
    stand_in = StandIn()
    server = TestServer(stand_in.app, host="127.0.0.1")
    await server.start_server()
    yield stand_in, str(server.make_url("")).rstrip("/")
    await server.close()


_made: list[KubernetesRunner] = []


@pytest.fixture(autouse=True)
async def _close_runners() -> AsyncIterator[None]:
    """Every runner a test makes is closed after it (each holds an HTTP session)."""
    yield
    while _made:
        await _made.pop().close()


def make(url: str, tmp_path: Path, **kw: Any) -> KubernetesRunner:
    settings = JobSettings(
        owner="profiler-abc",
        image_pull_secret="sage-registry-pull",
        data_claim=kw.pop("claim", "profiler-test-data"),
        work_dir=tmp_path,
        start_timeout_seconds=kw.pop("start", 60.0),
        ttl_seconds=600,
    )
    runner = KubernetesRunner(
        KubeApi(url, token=TOKEN),
        NS,
        settings,
        architectures=kw.pop("architectures", {"linux/arm64"}),
        poll_seconds=0.01,
        registries=("registry.example.org",),
        **kw,
    )
    _made.append(runner)
    return runner


def spec(**kw: Any) -> RunSpec:
    base: dict[str, Any] = {"memory_bytes": 256 * MiB, "cpus": 0.5, "timeout_seconds": 30}
    return RunSpec(image=IMAGE, **(base | kw))


async def test_the_job_runs_on_the_architecture_locked_down_with_the_limits(
    kube: tuple[StandIn, str], tmp_path: Path
) -> None:
    api, url = kube
    data = tmp_path / "sage-testdata-1"
    run = spec(
        command=["/bin/app"],
        args=["--n", "3"],
        env={"SAGE_TEST_DATA": "/data"},
        platform="linux/arm64",
        data_dir=data,
        user="10001:10001",
        labels={"org.sagecontinuum.app": "ns/app:1.0"},
    )
    runner = make(url, tmp_path)
    await runner.run(run)
    await runner.close()
    (job,) = api.created
    kubernetes_validate.validate(job, "1.30", strict=True)
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == 600
    assert job["spec"]["activeDeadlineSeconds"] == math.ceil(30 + 60)
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["sage.org/profile-run"] == "true"  # the NetworkPolicies' "no network at all"
    assert labels["sage.org/profiler-owner"] == "profiler-abc"
    assert job["metadata"]["annotations"] == {"org.sagecontinuum.app": "ns/app:1.0"}
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"]["kubernetes.io/arch"] == "arm64"
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert pod["securityContext"] == {
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "runAsNonRoot": True,
    }
    assert pod["imagePullSecrets"] == [{"name": "sage-registry-pull"}]
    assert not [v for v in pod["volumes"] if "hostPath" in v]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {
        "claimName": "profiler-test-data",
        "readOnly": True,
    }
    assert volumes["tmp"]["emptyDir"] == {"medium": "Memory", "sizeLimit": str(64 * MiB)}
    (container,) = pod["containers"]
    assert container["image"] == IMAGE and container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["/bin/app"] and container["args"] == ["--n", "3"]
    assert container["env"] == [{"name": "SAGE_TEST_DATA", "value": "/data"}]
    limits = {"memory": str(256 * MiB), "cpu": "500m"}
    assert container["resources"] == {"requests": limits, "limits": limits}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {
        "name": "data",
        "mountPath": "/data",
        "subPath": "sage-testdata-1",
        "readOnly": True,
    } in (container["volumeMounts"])


async def test_a_passing_run_reports_exit_wall_time_and_sampled_use_and_is_deleted(
    kube: tuple[StandIn, str], tmp_path: Path
) -> None:
    api, url = kube
    runner = make(url, tmp_path)
    result = await runner.run(spec())
    await runner.close()
    assert isinstance(result, KubeRunResult) and result.measured_by == "metrics-api"
    assert result.exit_code == 0 and not result.oom_killed and not result.timed_out
    assert result.wall_seconds == 3.0  # the kubelet's startedAt..finishedAt
    assert result.peak_memory_bytes == 96 * MiB  # the highest sample
    assert [s.cpu_cores for s in result.samples] == [0.5, 1.5]
    assert result.cpu_seconds == pytest.approx(3.0)  # mean sampled cores x wall
    assert result.log_tail == [f"c0 line {i}" for i in range(10, 30)]
    assert api.deleted == [(api.created[0]["metadata"]["name"], "Background")]
    assert not api.jobs


async def test_a_failing_command_reports_its_exit_code(
    kube: tuple[StandIn, str], tmp_path: Path
) -> None:
    api, url = kube
    api.next = [Box(exit_code=3, reason="Error")]
    result = await make(url, tmp_path).run(spec())
    assert result.exit_code == 3 and not result.oom_killed and not result.timed_out


async def test_a_container_over_its_memory_limit_is_reported_oom_killed(
    kube: tuple[StandIn, str], tmp_path: Path
) -> None:
    api, url = kube
    api.next = [Box(exit_code=137, reason="OOMKilled")]
    result = await make(url, tmp_path).run(spec())
    assert result.oom_killed and result.exit_code == 137 and not result.timed_out


async def test_a_job_past_its_deadline_is_a_timeout(
    kube: tuple[StandIn, str], tmp_path: Path
) -> None:
    api, url = kube
    api.next, api.deadline_after = [Box(hang=True)], 4
    result = await make(url, tmp_path).run(spec())
    assert result.timed_out and result.exit_code is None and not result.oom_killed
    assert api.deleted and not api.jobs


async def test_the_runner_stops_a_run_at_its_timeout(
    kube: tuple[StandIn, str], tmp_path: Path
) -> None:
    api, url = kube
    api.next = [Box(hang=True)]
    result = await make(url, tmp_path).run(spec(timeout_seconds=0.2))
    assert result.timed_out and result.exit_code is None
    assert result.wall_seconds >= 0.2
    assert [name for name, _ in api.deleted] == [api.created[0]["metadata"]["name"]]


async def test_an_image_that_cannot_be_pulled_fails_the_run_clearly(
    kube: tuple[StandIn, str], tmp_path: Path
) -> None:
    api, url = kube
    api.next = [Box(waiting="ImagePullBackOff")]
    with pytest.raises(RunnerError, match="cannot start .*ImagePullBackOff") as caught:
        await make(url, tmp_path).run(spec())
    assert not isinstance(caught.value, RunnerUnavailable)
    assert api.deleted and not api.jobs


async def test_a_run_no_node_takes_fails_with_the_schedulers_reason(
    kube: tuple[StandIn, str], tmp_path: Path
) -> None:
    api, url = kube
    api.next = [Box(pending=10_000)]
    with pytest.raises(RunnerError, match="did not start .*didn't match Pod's node affinity"):
        await make(url, tmp_path, start=0.1).run(spec())
    assert api.deleted and not api.jobs


async def test_a_refused_job_is_a_clear_failure_and_an_outage_is_retryable(
    kube: tuple[StandIn, str], tmp_path: Path
) -> None:
    api, url = kube
    api.refuse["create"] = (403, 'jobs.batch is forbidden: User "system:serviceaccount:x" ...')
    with pytest.raises(RunnerError, match="403 .*jobs.batch is forbidden") as caught:
        await make(url, tmp_path).run(spec())
    assert not isinstance(caught.value, RunnerUnavailable)
    api.refuse["create"] = (500, "etcdserver: request timed out")
    with pytest.raises(RunnerUnavailable, match="500 .*etcdserver"):
        await make(url, tmp_path).run(spec())
    with pytest.raises(RunnerUnavailable, match="unreachable"):
        await make("http://127.0.0.1:9", tmp_path).run(spec())
    wrong = KubernetesRunner(
        KubeApi(url, token="wrong"), NS, JobSettings(owner="p"), architectures={"linux/arm64"}
    )
    _made.append(wrong)
    with pytest.raises(RunnerError, match="401"):
        await wrong.ping()
    assert not api.created


async def test_copies_run_side_by_side_in_one_pod_sharing_the_ceiling(
    kube: tuple[StandIn, str], tmp_path: Path
) -> None:
    api, url = kube
    api.next = [Box(), Box(exit_code=137, reason="OOMKilled", seconds=2)]
    runner = make(url, tmp_path)
    results = await runner.run_together(
        [spec(platform="linux/arm64")] * 2, memory_bytes=256 * MiB, cpus=1.0
    )
    (job,) = api.created
    kubernetes_validate.validate(job, "1.30", strict=True)
    containers = job["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["c0", "c1"]
    for c in containers:  # the shared ceiling split evenly: no pod-level limits in Kubernetes 1.30
        assert c["resources"]["limits"] == {"memory": str(128 * MiB), "cpu": "500m"}
    assert [r.oom_killed for r in results] == [False, True]
    assert [r.wall_seconds for r in results] == [3.0, 2.0]


async def test_the_architecture_and_registry_are_checked_before_anything_runs(
    kube: tuple[StandIn, str], tmp_path: Path
) -> None:
    api, url = kube
    runner = make(url, tmp_path, architectures={"linux/amd64", "linux/arm64"})
    assert runner.native_architectures() == {"linux/amd64", "linux/arm64"}
    assert runner.emulated_architectures() == set()
    with pytest.raises(RunnerError, match="names no architecture"):
        await runner.run(spec())
    with pytest.raises(RunnerError, match="no linux/riscv64 nodes"):
        await runner.run(spec(platform="linux/riscv64"))
    with pytest.raises(RunnerError, match="only registries"):
        await runner.prepare("docker.io/library/busybox:1", None)
    await runner.prepare(IMAGE, None)
    with pytest.raises(RunnerError, match="outside the work directory"):
        await make(url, tmp_path).run(spec(data_dir=Path("/elsewhere/data")))
    with pytest.raises(RunnerError, match="SAGE_PROFILER_K8S_DATA_CLAIM"):
        await make(url, tmp_path, claim=None).run(spec(data_dir=tmp_path / "d"))
    assert not api.created


async def test_cleanup_deletes_jobs_of_gone_profilers_and_keeps_live_ones(
    kube: tuple[StandIn, str], tmp_path: Path
) -> None:
    api, url = kube
    for name, owner in [
        ("j-mine", "profiler-abc"),
        ("j-dead", "profiler-old"),
        ("j-live", "profiler-def"),
    ]:
        labels = {"sage.org/profile-run": "true", "sage.org/profiler-owner": owner}
        api.jobs[name] = {"metadata": {"name": name, "labels": labels}, "status": {}}
    api.jobs["other"] = {"metadata": {"name": "other", "labels": {"app": "x"}}, "status": {}}
    api.live_pods = {"profiler-def"}
    assert await make(url, tmp_path).cleanup() == 2
    assert sorted(api.jobs) == ["j-live", "other"]
    assert {policy for _, policy in api.deleted} == {"Background"}


async def test_the_config_picks_the_runner_and_docker_stays_the_default(
    kube: tuple[StandIn, str],
) -> None:
    _, url = kube
    assert Config().runner == "docker"
    runner = make_runner(
        Config(runner="kubernetes", k8s_api=url, k8s_token=TOKEN, k8s_namespace=NS)
    )
    assert isinstance(runner, KubernetesRunner)
    await runner.ping()
    await runner.close()
    with pytest.raises(RunnerError, match="outside a pod"):
        KubernetesRunner.from_config(Config(runner="kubernetes"))


def test_quantities_read_as_the_api_server_writes_them() -> None:
    assert quantity("128Mi") == 128 * MiB and quantity("65536Ki") == 64 * MiB
    assert quantity("250m") == 0.25 and quantity("1500000000n") == 1.5
    assert quantity("2") == 2 and quantity("1G") == 1e9 and quantity("12u") == pytest.approx(12e-6)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in apiserver")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_in_a_pod_it_talks_https_with_the_service_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl

    cert, key = self_signed(tmp_path)
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(TOKEN + "\n")
    (account / "ca.crt").write_bytes(cert.read_bytes())
    (account / "namespace").write_text(NS)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    stand_in = StandIn()
    server = web.AppRunner(stand_in.app)
    await server.setup()
    site = web.TCPSite(server, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    monkeypatch.setattr(runner_k8s, "SERVICE_ACCOUNT", account)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(port))
    try:
        runner = KubernetesRunner.from_config(Config(runner="kubernetes", k8s_poll_seconds=0.01))
        assert runner.namespace == NS
        await runner.ping()
        result = await runner.run(spec(platform="linux/amd64"))
        assert result.exit_code == 0 and stand_in.deleted
        await runner.close()
        untrusting = KubeApi(f"https://127.0.0.1:{port}", token=TOKEN)  # the system CAs only
        with pytest.raises(RunnerUnavailable, match="unreachable"):
            await untrusting.request("GET", f"/apis/batch/v1/namespaces/{NS}/jobs")
        await untrusting.close()
    finally:
        await server.cleanup()


async def test_a_rotated_service_account_token_is_read_again(
    kube: tuple[StandIn, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = kube
    token = tmp_path / "token"
    token.write_text(TOKEN)
    api = KubeApi(url, token_file=token)
    await api.request("GET", f"/apis/batch/v1/namespaces/{NS}/jobs")
    monkeypatch.setattr(k8s_api, "TOKEN_REREAD_SECONDS", 0.0)
    token.write_text("rotated-but-not-known-to-the-stand-in")
    with pytest.raises(RunnerError, match="401"):
        await api.request("GET", f"/apis/batch/v1/namespaces/{NS}/jobs")
    await api.close()


async def test_the_profiling_use_case_runs_on_the_jobs_runner(
    kube: tuple[StandIn, str], tmp_path: Path
) -> None:
    api, url = kube
    build = BuildDone(
        app_id="ns/app:1.0",
        build_id="b-k8s",
        status="success",
        image="registry.example.org/ns/app:1.0",
        images=[ArchImage(architecture="linux/arm64", digest="sha256:" + "b" * 64)],
        testing={"repetitions": 2, "data": "sage://cam/imgs"},
    )
    runner = make(url, tmp_path)
    data = FakeDataSource({"cam": {"imgs/a.jpg": b"A"}})
    done = await profile(Profiler(runner, data, Config(work_dir=tmp_path)), build)
    await runner.close()
    assert done.status == "passed", done.reason
    assert [(r.architecture, r.exit_code, r.peak_memory_bytes) for r in done.runs] == [
        ("linux/arm64", 0, 96 * MiB)
    ] * 2
    assert len(api.created) == 2 and not api.jobs  # each run's Job deleted
    pod = api.created[0]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example.org/ns/app@sha256:" + "b" * 64
    assert pod["volumes"][1]["persistentVolumeClaim"]["claimName"] == "profiler-test-data"
    assert api.created[0]["metadata"]["annotations"]["org.sagecontinuum.app"] == "ns/app:1.0"


async def test_each_run_goes_to_nodes_of_its_own_architecture_among_several(
    kube: tuple[StandIn, str], tmp_path: Path
) -> None:
    """The profiler names every run's architecture, so a cluster with both kinds of node works."""
    api, url = kube
    api.next = [Box()]
    runner = make(url, tmp_path, architectures={"linux/amd64", "linux/arm64"})
    result = await runner.run(spec(architecture="linux/arm64"))
    await runner.close()
    assert result.exit_code == 0
    (job,) = api.created
    assert job["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/arch"] == "arm64"
