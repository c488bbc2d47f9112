"""`python -m sage_storage`: run the storage service, in `workers` processes on one port."""

from sage_common.runner import run_service

from .app import create_app
from .config import Config

if __name__ == "__main__":
    config = Config()
    workers, why = config.worker_count()
    run_service("storage", config, create_app, workers=workers, why=why)  # type: ignore[arg-type]
