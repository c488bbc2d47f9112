"""Configuration of the profiler service, from `SAGE_PROFILER_*` environment variables."""

from pydantic_settings import SettingsConfigDict

from sage_common.config import ServiceConfig


class Config(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="SAGE_PROFILER_", extra="ignore")

    port: int = 8085
    db_schema: str = "profiler"
