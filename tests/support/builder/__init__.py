"""Real servers and a harness for tests and benchmarks of the builder (never used by the service).

`servers`: `git daemon`, Debian's docker-registry, `FROM scratch` test apps. `harness`: the builder
app started on a config, events published and awaited on a private exchange.
"""

from .harness import (
    Events,
    Harness,
    config_env,
    config_for_tests,
    delete_queues,
    read_log,
    running_builder,
    until,
)
from .servers import (
    BUSYBOX,
    GitServer,
    RegistryReader,
    RegistryServer,
    commit_all,
    free_port,
    git,
    scratch_app,
)

__all__ = [
    "BUSYBOX",
    "Events",
    "GitServer",
    "Harness",
    "RegistryReader",
    "RegistryServer",
    "commit_all",
    "config_env",
    "delete_queues",
    "free_port",
    "git",
    "read_log",
    "running_builder",
    "scratch_app",
    "config_for_tests",
    "until",
]
