"""Every Job pod the Kubernetes runner renders is admitted by Pod Security "restricted".

The profiling namespace enforces "restricted" (deploy/k8s/base/profiling-namespace.yaml): a pod
failing one of its controls would never start. The rules are checked by `tests/pod_security.py`,
written from the Pod Security Standards; the schema by kubernetes-validate.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from sage_profiler.k8s_job import JobSettings, job_manifest
from sage_profiler.runner import RunnerError, RunSpec
from tests.pod_security import restricted_violations

MiB = 1 << 20
IMAGE = "registry.example.org/ns/app@sha256:" + "b" * 64
WORK = Path("/var/lib/sage/profiler")

SETTINGS = [
    JobSettings(owner="profiler-abc"),
    JobSettings(
        owner="profiler-abc",
        node_selector={"sage.org/profiling-node": "true"},
        tolerations=[{"key": "sage.org/profiling-node", "operator": "Exists"}],
        image_pull_secret="profiler-registry-pull",
        data_claim="profiler-test-data",
        work_dir=WORK,
        runtime_class="gvisor",
        pod_level_resources=True,
    ),
]
SPECS = [
    RunSpec(image=IMAGE),
    RunSpec(
        image=IMAGE,
        command=["/bin/app"],
        args=["--n", "3"],
        env={"SAGE_TEST_DATA": "/data"},
        data_dir=WORK / "sage-testdata-1",
        user="1000:1000",
        gpu=True,
        memory_bytes=512 * MiB,
        cpus=1.5,
    ),
]


def _pods() -> list[tuple[str, dict[str, Any]]]:
    jobs = []
    for k, settings in enumerate(SETTINGS):
        for j, spec in enumerate(SPECS):
            if spec.data_dir is not None and settings.data_claim is None:
                continue
            jobs.append(
                (f"one-{k}-{j}", job_manifest(f"p-{k}-{j}", [spec], "linux/arm64", settings))
            )
            copies = job_manifest(
                f"c-{k}-{j}", [spec] * 3, "linux/amd64", settings, shared=(1024 * MiB, 2.0)
            )
            jobs.append((f"copies-{k}-{j}", copies))
    return jobs


@pytest.mark.parametrize(("case", "job"), _pods())
def test_every_rendered_job_pod_meets_the_restricted_pod_security_profile(
    case: str, job: dict[str, Any]
) -> None:
    # Pod-level resources (K8S_POD_LEVEL_RESOURCES) exist in the schema from Kubernetes 1.32.
    pod_level = "resources" in job["spec"]["template"]["spec"]
    kubernetes_validate.validate(job, "1.32" if pod_level else "1.30", strict=True)
    template = job["spec"]["template"]
    pod = template["spec"]
    assert restricted_violations(pod, template["metadata"].get("annotations")) == []
    # What the profiler promises beyond the standard: no API token, no writable root, a real uid.
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsUser"] > 0 and pod["securityContext"]["runAsGroup"] > 0
    assert not any("hostPath" in v for v in pod["volumes"])
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, case
        assert context["capabilities"] == {"drop": ["ALL"]}, case
        assert context["allowPrivilegeEscalation"] is False and context["runAsNonRoot"] is True


def test_the_unprivileged_user_is_the_default_and_a_test_user_is_kept() -> None:
    pods = dict(_pods())
    plain, named = pods["one-0-0"], pods["one-1-1"]
    assert plain["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 65534
    assert plain["spec"]["template"]["spec"]["securityContext"]["runAsGroup"] == 65534
    assert named["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 1000


def test_a_run_as_root_is_refused_before_any_job_is_made() -> None:
    for user in ("0:0", "0", "0:1000"):
        with pytest.raises(RunnerError, match="restricted"):
            job_manifest("p", [RunSpec(image=IMAGE, user=user)], "linux/amd64", SETTINGS[0])
    with pytest.raises(RunnerError, match="numeric"):
        job_manifest("p", [RunSpec(image=IMAGE, user="app")], "linux/amd64", SETTINGS[0])


def test_the_restricted_check_refuses_what_admission_would() -> None:
    """The checker is worth something: each control, broken on its own, is caught."""
    job = job_manifest("p", [RunSpec(image=IMAGE)], "linux/amd64", SETTINGS[0])
    good = job["spec"]["template"]["spec"]
    assert restricted_violations(good) == []
    breaks = {
        "runAsUser 0": lambda p: p["securityContext"].update(runAsUser=0),
        "runAsNonRoot": lambda p: (
            p["securityContext"].pop("runAsNonRoot"),
            p["containers"][0]["securityContext"].pop("runAsNonRoot"),
        ),
        "seccomp": lambda p: (
            p["securityContext"].pop("seccompProfile"),
            p["containers"][0]["securityContext"].pop("seccompProfile"),
        ),
        "allowPrivilegeEscalation": lambda p: p["containers"][0]["securityContext"].update(
            allowPrivilegeEscalation=True
        ),
        "capabilities not dropped": lambda p: p["containers"][0]["securityContext"].update(
            capabilities={"drop": ["NET_RAW"]}
        ),
        "adds": lambda p: p["containers"][0]["securityContext"].update(
            capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]}
        ),
        "privileged": lambda p: p["containers"][0]["securityContext"].update(privileged=True),
        "hostPath": lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "hostPID": lambda p: p.update(hostPID=True),
        "hostPort": lambda p: p["containers"][0].update(
            ports=[{"containerPort": 1, "hostPort": 1}]
        ),
        "sysctl": lambda p: p["securityContext"].update(
            sysctls=[{"name": "kernel.msgmax", "value": "1"}]
        ),
        "procMount": lambda p: p["containers"][0]["securityContext"].update(procMount="Unmasked"),
    }
    for control, breaking in breaks.items():
        pod = copy.deepcopy(good)
        breaking(pod)
        found = restricted_violations(pod)
        assert any(control in f for f in found), (control, found)
