"""`python -m sage_ecr`: run the ECR API, in `workers` processes on one port."""

from sage_common.runner import run_service

from .app import create_app
from .config import Config

if __name__ == "__main__":
    config = Config()
    workers, why = config.worker_count()
    run_service("ecr-api", config, create_app, workers=workers, why=why)  # type: ignore[arg-type]
