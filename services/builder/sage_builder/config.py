"""Configuration of the builder service, from `SAGE_BUILDER_*` environment variables."""

from pydantic_settings import SettingsConfigDict

from sage_common.config import ServiceConfig


class Config(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="SAGE_BUILDER_", extra="ignore")

    port: int = 8084
    db_schema: str = "builder"
