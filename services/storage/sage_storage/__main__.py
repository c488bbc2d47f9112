"""`python -m sage_storage`: run the storage service."""

from sage_common.runner import run_service

from .app import create_app
from .config import Config

if __name__ == "__main__":
    run_service("storage", Config(), create_app)  # type: ignore[arg-type]
