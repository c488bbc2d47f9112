"""Configuration of the storage service, from `SAGE_STORAGE_*` environment variables."""

from pydantic_settings import SettingsConfigDict

from sage_common.config import ServiceConfig


class Config(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="SAGE_STORAGE_", extra="ignore")

    port: int = 8083
    db_schema: str = "storage"
