"""The Job a Kubernetes profile run is: one pod, one container per copy, locked down like Docker's.

Pure functions from `RunSpec`s to the Job's JSON, so what is sent can be read and tested alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .runner import UNPRIVILEGED_USER, RunnerError, RunSpec

RUN_LABEL = "sage.org/profile-run"  # the NetworkPolicies give pods with it no network at all
OWNER_LABEL = "sage.org/profiler-owner"  # the profiler pod that made the Job
ARCH_LABEL = "kubernetes.io/arch"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class JobSettings:
    """What every profile Job of one profiler shares (from its configuration)."""

    owner: str
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    image_pull_secret: str | None = None
    data_claim: str | None = None
    work_dir: Path | None = None
    runtime_class: str | None = None
    pod_level_resources: bool = False
    start_timeout_seconds: float = 300.0
    ttl_seconds: int = 600


def arch_label(platform: str) -> str:
    """The node label value (`arm64`, `arm`) of an OCI platform (`linux/arm64`, `linux/arm/v7`)."""
    return platform.split("/")[1] if "/" in platform else platform


def cpu_quantity(cpus: float) -> str:
    return f"{max(1, round(cpus * 1000))}m"


def job_manifest(
    name: str,
    specs: list[RunSpec],
    platform: str,
    settings: JobSettings,
    *,
    shared: tuple[int, float] | None = None,
) -> dict[str, Any]:
    """The Job running `specs` side by side (containers `c0`, `c1`, ...) on a `platform` node;
    `shared` (memory bytes, CPUs) is a pod-level ceiling, or else split evenly between them."""
    first = specs[0]
    if shared is not None:
        memory, cpus = shared
        if not settings.pod_level_resources:
            memory, cpus = memory // len(specs), cpus / len(specs)
        specs = [s.within(memory, cpus) for s in specs]
    labels = {
        RUN_LABEL: "true",
        OWNER_LABEL: settings.owner,
        "app.kubernetes.io/managed-by": "sage-profiler",
    }
    # Label values cannot hold an app id (`ns/name:1.0`): what the run is for goes in annotations.
    annotations = dict(first.labels)
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": str(first.tmpfs_bytes)}}
    ]
    data_path = _data_path(first, settings)
    if data_path is not None:
        claim = {"claimName": settings.data_claim, "readOnly": True}
        volumes.append({"name": "data", "persistentVolumeClaim": claim})
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 0,
        "nodeSelector": {
            **settings.node_selector,
            "kubernetes.io/os": "linux",
            ARCH_LABEL: arch_label(platform),
        },
        "securityContext": pod_security(first.user),
        "containers": [_container(f"c{k}", spec, data_path) for k, spec in enumerate(specs)],
        "volumes": volumes,
    }
    if settings.tolerations:
        pod["tolerations"] = settings.tolerations
    if settings.image_pull_secret:
        pod["imagePullSecrets"] = [{"name": settings.image_pull_secret}]
    if settings.runtime_class:
        pod["runtimeClassName"] = settings.runtime_class
    if shared is not None and settings.pod_level_resources:
        ceiling = {"memory": str(shared[0]), "cpu": cpu_quantity(shared[1])}
        pod["resources"] = {"requests": ceiling, "limits": ceiling}
    timeout = max(s.timeout_seconds for s in specs)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "backoffLimit": 0,
            # A backstop for a profiler that died: the runner itself stops a run at its timeout,
            # counted from the container's start; the deadline also counts scheduling and pull.
            "activeDeadlineSeconds": math.ceil(timeout + settings.start_timeout_seconds),
            "ttlSecondsAfterFinished": settings.ttl_seconds,
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": pod,
            },
        },
    }


def pod_security(user: str | None) -> dict[str, Any]:
    """What Pod Security "restricted" asks of a pod: seccomp and a numeric non-root `uid[:gid]`.

    Root is refused here even where the profiler's operator allows it on Docker: the profiling
    namespace enforces "restricted", which would not admit the pod."""
    uid, _, gid = (user or UNPRIVILEGED_USER).partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise RunnerError(f"run as {user!r}: Kubernetes needs a numeric uid[:gid]")
    if int(uid) == 0:
        raise RunnerError(
            "a run as root cannot be made on Kubernetes: the profiling namespace enforces Pod "
            'Security "restricted", which admits no pod running as root'
        )
    return {
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsNonRoot": True,
        "runAsUser": int(uid),
        "runAsGroup": int(gid or uid),
    }


def _container(name: str, spec: RunSpec, data_path: str | None) -> dict[str, Any]:
    limits: dict[str, str] = {"memory": str(spec.memory_bytes), "cpu": cpu_quantity(spec.cpus)}
    if spec.gpu:
        limits[GPU_RESOURCE] = "1"
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
    if data_path is not None:
        mounts.append(
            {"name": "data", "mountPath": spec.data_mount, "subPath": data_path, "readOnly": True}
        )
    container: dict[str, Any] = {
        "name": name,
        "image": spec.image,
        # By digest the image cannot change under us: pull only when the node lacks it.
        "imagePullPolicy": "IfNotPresent" if "@sha256:" in spec.image else "Always",
        "env": [{"name": k, "value": v} for k, v in spec.env.items()],
        "resources": {"requests": dict(limits), "limits": limits},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    if spec.command is not None:
        container["command"] = spec.command
    if spec.args:
        container["args"] = spec.args
    return container


def _data_path(spec: RunSpec, settings: JobSettings) -> str | None:
    """Where the run's test data lies on the shared claim (None without test data)."""
    if spec.data_dir is None:
        return None
    if not settings.data_claim or settings.work_dir is None:
        raise RunnerError(
            "test data reaches a Kubernetes run only through a shared volume: set "
            "SAGE_PROFILER_K8S_DATA_CLAIM and mount that claim at SAGE_PROFILER_WORK_DIR"
        )
    try:
        return str(PurePosixPath(spec.data_dir.relative_to(settings.work_dir)))
    except ValueError:
        raise RunnerError(
            f"test data in {spec.data_dir} is outside the work directory {settings.work_dir}"
        ) from None
