"""`python -m sage_builder`: run the builder service."""

from sage_common.runner import run_service

from .app import create_app
from .config import Config

if __name__ == "__main__":
    run_service("builder", Config(), create_app)  # type: ignore[arg-type]
