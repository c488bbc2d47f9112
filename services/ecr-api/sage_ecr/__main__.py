"""`python -m sage_ecr`: run the ECR API."""

from sage_common.runner import run_service

from .app import create_app
from .config import Config

if __name__ == "__main__":
    run_service("ecr-api", Config(), create_app)  # type: ignore[arg-type]
