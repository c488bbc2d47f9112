"""Configuration of the ECR API, from `SAGE_ECR_*` environment variables."""

from pydantic_settings import SettingsConfigDict

from sage_common.config import ServiceConfig


class Config(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="SAGE_ECR_", extra="ignore")

    port: int = 8082
    db_schema: str = "ecr"
