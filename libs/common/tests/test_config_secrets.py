"""Production refuses the secrets anyone can read in our examples; development only warns."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from sage_common.config import InsecureConfig, ServiceConfig, is_known_default
from sage_common.web import create_service_app

GOOD = "Zq3v9Xw2pL8sK4rT7yU1nB6mC5dE0fGh"


def config(**settings: object) -> ServiceConfig:
    values: dict[str, object] = {
        "environment": "production",
        "client_secret": GOOD,
        "amqp_url": f"amqp://sage:{GOOD}@mq.example.org:5672/",
        "database_url": f"postgresql://sage:{GOOD}@db.example.org:5432/sage",
    }
    values.update(settings)
    return ServiceConfig(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    ["", "  ", "change-me-auth", "CHANGE-ME-ecr", "changeme", "REPLACE", "guest", "minioadmin"],
)
def test_placeholders_and_stock_passwords_are_known_defaults(value: str) -> None:
    assert is_known_default(value)


def test_random_secrets_are_not_known_defaults() -> None:
    assert not is_known_default(GOOD)


def test_production_with_real_secrets_starts() -> None:
    assert config().check_secrets() == []
    assert create_service_app("svc", config(), use_database=False) is not None


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({"client_secret": "change-me-ecr"}, "SAGE_CLIENT_SECRET"),
        ({"client_secret": ""}, "SAGE_CLIENT_SECRET"),
        ({"amqp_url": "amqp://guest:guest@127.0.0.1:5672/"}, "SAGE_AMQP_URL"),
        ({"database_url": "postgresql://sage:change-me-postgres@db/sage"}, "SAGE_DATABASE_URL"),
    ],
)
def test_production_refuses_to_start_with_a_known_default_or_empty_secret(
    settings: dict[str, object], variable: str
) -> None:
    insecure = config(**settings)
    with pytest.raises(InsecureConfig) as refused:
        create_service_app("svc", insecure, use_database=False)
    message = str(refused.value)
    assert variable in message and "production" in message
    assert "change-me" not in message and "guest:" not in message  # names, never values


def test_a_database_url_without_a_password_is_not_a_weak_secret() -> None:
    """Certificate or peer authentication carries no password in the URL."""
    assert config(database_url="postgresql://sage@db.example.org/sage").check_secrets() == []


def test_development_names_weak_secrets_but_starts(caplog: pytest.LogCaptureFixture) -> None:
    dev = config(environment="development", client_secret=SecretStr("change-me-auth"))
    assert dev.check_secrets() == ["SAGE_CLIENT_SECRET"]
    with caplog.at_level("WARNING"):
        assert create_service_app("svc", dev, use_database=False) is not None
    assert "SAGE_CLIENT_SECRET" in caplog.text and "change-me-auth" not in caplog.text


def test_the_environment_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGE_ENVIRONMENT", "production")
    assert ServiceConfig().environment == "production"
    monkeypatch.setenv("SAGE_ENVIRONMENT", "staging")
    with pytest.raises(ValueError, match="environment"):
        ServiceConfig()
