"""`python -m sage_auth`: run the auth service."""

from sage_common.runner import run_service

from .app import create_app
from .config import Config

if __name__ == "__main__":
    run_service("auth", Config(), create_app)  # type: ignore[arg-type]
