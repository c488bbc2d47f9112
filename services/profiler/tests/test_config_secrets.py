"""Which of the profiler's secrets production insists on, by runner."""

from __future__ import annotations

import secrets

import pytest

from sage_profiler.config import Config


def production(**settings: str) -> Config:
    real = secrets.token_hex(16)
    base = {
        "environment": "production",
        "database_url": f"postgresql://sage:{real}@db/sage",
        "amqp_url": f"amqp://sage-profiler:{real}@mq:5672/",
        "client_secret": real,
        "registry_password": real,
        "storage_token": real,
    }
    return Config(**{**base, **settings})


def test_the_docker_runner_starts_in_production_without_a_kubernetes_token() -> None:
    assert production(runner="docker").check_secrets() == []


def test_the_jobs_runner_starts_on_the_service_account_token_when_none_is_set() -> None:
    assert production(runner="kubernetes").check_secrets() == []


def test_a_placeholder_kubernetes_token_is_refused_in_production() -> None:
    with pytest.raises(ValueError, match="SAGE_PROFILER_K8S_TOKEN"):
        production(runner="kubernetes", k8s_token="change-me-k8s").check_secrets()
