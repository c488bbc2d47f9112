"""The Pod Security Standards' "restricted" profile (policy version latest, Kubernetes 1.30) as
checks on a pod spec, written from https://kubernetes.io/docs/concepts/security/pod-security-standards/.

`restricted_violations(pod)` names each control a pod fails, the baseline ones included (restricted
is baseline plus more), as the API server's admission would refuse it in a namespace labelled
`pod-security.kubernetes.io/enforce: restricted`.
"""

from __future__ import annotations

from typing import Any

Doc = dict[str, Any]

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip


def _containers(pod: Doc) -> list[Doc]:
    return [
        *pod.get("initContainers", []),
        *pod.get("containers", []),
        *pod.get("ephemeralContainers", []),
    ]


def _baseline(pod: Doc, annotations: dict[str, str]) -> list[str]:
    found = []
    pod_ctx = pod.get("securityContext") or {}
    contexts = [("pod", pod_ctx)] + [
        (c["name"], c.get("securityContext") or {}) for c in _containers(pod)
    ]
    for where, ctx in contexts:
        if (ctx.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{where}: HostProcess")
        se = ctx.get("seLinuxOptions") or {}
        if se.get("type", "") not in SELINUX_TYPES or se.get("user") or se.get("role"):
            found.append(f"{where}: SELinux options")
        if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"{where}: seccomp Unconfined")
        if (ctx.get("appArmorProfile") or {}).get("type") not in (
            None,
            "RuntimeDefault",
            "Localhost",
        ):
            found.append(f"{where}: AppArmor profile")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            found.append(f"pod: {flag}")
    for sysctl in pod_ctx.get("sysctls") or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"pod: sysctl {sysctl['name']}")
    for volume in pod.get("volumes") or []:
        if "hostPath" in volume:
            found.append(f"volume {volume['name']}: hostPath")
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            found.append(f"annotation {key}")
    for c in _containers(pod):
        ctx = c.get("securityContext") or {}
        if ctx.get("privileged"):
            found.append(f"{c['name']}: privileged")
        added = set((ctx.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            found.append(f"{c['name']}: adds {sorted(added - BASELINE_CAPABILITIES)}")
        if ctx.get("procMount", "Default") != "Default":
            found.append(f"{c['name']}: procMount")
        for port in c.get("ports") or []:
            if port.get("hostPort", 0):
                found.append(f"{c['name']}: hostPort")
    return found


def restricted_violations(pod: Doc, annotations: dict[str, str] | None = None) -> list[str]:
    """Every control of "restricted" (and so of "baseline") that `pod` fails; empty when none."""
    found = _baseline(pod, annotations or {})
    pod_ctx = pod.get("securityContext") or {}
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']}: type {sorted(kinds - RESTRICTED_VOLUMES)}")
    if pod_ctx.get("runAsUser") == 0:
        found.append("pod: runAsUser 0")
    pod_seccomp = (pod_ctx.get("seccompProfile") or {}).get("type")
    for c in _containers(pod):
        ctx = c.get("securityContext") or {}
        name = c["name"]
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
        if non_root is not True:
            found.append(f"{name}: runAsNonRoot is not true")
        if ctx.get("runAsUser") == 0:
            found.append(f"{name}: runAsUser 0")
        seccomp = (ctx.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccomp profile {seccomp}")
        caps = ctx.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"{name}: capabilities not dropped (ALL)")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities beyond NET_BIND_SERVICE")
    return found
