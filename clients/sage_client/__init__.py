"""The SAGE client: an async Python library and the `sage` command line built on it."""

__version__ = "0.1.0"

from .client import SageClient  # noqa: E402
from .ecr import AppId  # noqa: E402
from .errors import SageConnectionError, SageError  # noqa: E402
from .retry import RetryPolicy  # noqa: E402
from .storage import Grant  # noqa: E402

__all__ = ["AppId", "Grant", "RetryPolicy", "SageClient", "SageConnectionError", "SageError"]
