#!/usr/bin/env python3
"""The whole development stack on this machine: infrastructure (scripts/infra.sh) + the services.

    .venv/bin/python scripts/devstack.py up [SERVICE...]   background; returns once all are ready
    .venv/bin/python scripts/devstack.py down              stop the services, then the infra
    .venv/bin/python scripts/devstack.py run [SERVICE...]  foreground, logs streamed; Ctrl-C stops
    .venv/bin/python scripts/devstack.py status

SERVICEs: auth ecr-api storage builder profiler (default: all). Each runs as
`.venv/bin/python -m MODULE` with cwd = the repository root and env = var/stack.env overlaid by
the caller's environment (a variable set in the environment wins), logs to var/log/SERVICE.log and
its pid in var/run/SERVICE.pid. Ready means GET http://127.0.0.1:PORT/readyz answers 200.

Settings from the environment: SAGE_DEVSTACK_TIMEOUT (seconds to wait for readiness, default 90),
SAGE_DEVSTACK_GRACE (seconds between SIGTERM and SIGKILL, default 10).

`run` acts as an orchestrator would once the stack is ready: a service that exits, or whose
/healthz fails three times in a row (5 s apart), is restarted after a back-off (1 s, doubling up
to 60 s; back to 1 s once it stayed up for 5 minutes), and each restart is logged.

Standard library only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "libs" / "common"))  # sage_common.procs is standard library only
import stack_env  # noqa: E402

from sage_common.procs import alive  # noqa: E402

VAR = ROOT / "var"
RUN = VAR / "run"
LOG = VAR / "log"
PYTHON = ROOT / ".venv" / "bin" / "python"
INFRA = ROOT / "scripts" / "infra.sh"
OWNED_INFRA = ("dockerd", "registry", "s3", "gateway")


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    port: int

    @property
    def pidfile(self) -> Path:
        return RUN / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return LOG / f"{self.name}.log"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


SERVICES = (
    Service("auth", "sage_auth", 8081),
    Service("ecr-api", "sage_ecr", 8082),
    Service("storage", "sage_storage", 8083),
    Service("builder", "sage_builder", 8084),
    Service("profiler", "sage_profiler", 8085),
)
BY_NAME = {s.name: s for s in SERVICES}


class StackError(Exception):
    pass


class RestartPolicy:
    """Back-off between restarts of one service: 1 s doubling to `cap`, reset once it ran long."""

    def __init__(self, *, first: float = 1.0, cap: float = 60.0, stable: float = 300.0) -> None:
        self.first, self.cap, self.stable = first, cap, stable
        self.restarts = 0
        self.started_at = time.monotonic()

    def delay(self, now: float) -> float:
        """Seconds to wait before the next start of a service that just died at `now`."""
        if now - self.started_at >= self.stable:
            self.restarts = 0
        delay = min(self.first * 2**self.restarts, self.cap)
        self.restarts += 1
        return float(delay)

    def started(self, now: float) -> None:
        self.started_at = now


def say(msg: str) -> None:
    print(f"devstack: {msg}", file=sys.stderr, flush=True)


def env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


# ----------------------------------------------------------------------------- processes ----


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def recorded_pid(svc: Service) -> int | None:
    """The pid in var/run/SERVICE.pid if that process is alive and runs the service's module."""
    try:
        pid = int(svc.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if not alive(pid):
        return None
    args = cmdline(pid)
    for i, arg in enumerate(args[:-1]):
        if arg == "-m" and args[i + 1] == svc.module:
            return pid
    return None


def http_status(url: str, timeout: float = 2.0) -> int:
    """The HTTP status of GET url, 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (http only)
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return 0


def ready(svc: Service) -> bool:
    return http_status(svc.url("/readyz")) == 200


def tail(path: Path, lines: int = 40, since: int = 0) -> str:
    """The last lines of a log file, from byte offset `since` on."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(since, size - 64 * 1024))
            data = f.read()
    except OSError:
        return "(no log)"
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:]) or "(empty)"


LOG_OFFSETS: dict[str, int] = {}  # where each service's log stood when devstack started it


def stop_pid(pid: int, name: str, grace: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.1)
    say(f"{name} (pid {pid}) still running {grace:.0f}s after SIGTERM: SIGKILL")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_services(
    services: list[Service], procs: dict[str, subprocess.Popen[bytes]] | None = None
) -> None:
    """SIGTERM every service at once, SIGKILL those still running after the grace period."""
    grace = env_seconds("SAGE_DEVSTACK_GRACE", 10)
    targets: list[tuple[Service, int]] = []
    for svc in services:
        pid = recorded_pid(svc)
        if pid is None and procs and svc.name in procs and procs[svc.name].poll() is None:
            pid = procs[svc.name].pid
        if pid is not None:
            say(f"stopping {svc.name} (pid {pid})")
            targets.append((svc, pid))
    threads = [
        threading.Thread(target=stop_pid, args=(pid, svc.name, grace)) for svc, pid in targets
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for svc in services:
        if procs and svc.name in procs:
            try:
                procs[svc.name].wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if recorded_pid(svc) is None:
            svc.pidfile.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------- infra ----


def infra(*args: str) -> None:
    result = subprocess.run([str(INFRA), *args], cwd=ROOT)  # noqa: S603
    if result.returncode != 0:
        raise StackError(f"scripts/infra.sh {' '.join(args)} failed (exit {result.returncode})")


def infra_owned_running() -> set[str]:
    """The infrastructure parts that infra.sh started and that are running now."""
    running = set()
    for part in OWNED_INFRA:
        try:
            pid = int((RUN / f"{part}.pid").read_text().strip())
        except (OSError, ValueError):
            continue
        if alive(pid):
            running.add(part)
    return running


# -------------------------------------------------------------------------------- services ----


def service_env() -> dict[str, str]:
    env = dict(stack_env.ensure())
    env.update(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def check_importable(services: list[Service]) -> None:
    """Fail at once, clearly, when a service's module cannot be run with python -m."""
    if not PYTHON.exists():
        raise StackError(".venv/bin/python is missing: run `make setup` first")
    probe = (
        "import importlib.util, sys\n"
        "bad = []\n"
        "for m in sys.argv[1:]:\n"
        "    try:\n"
        "        ok = importlib.util.find_spec(m + '.__main__') is not None\n"
        "    except Exception as e:\n"
        "        ok = False\n"
        "        print(f'{m}: {type(e).__name__}: {e}', file=sys.stderr)\n"
        "    if not ok:\n"
        "        bad.append(m)\n"
        "print(' '.join(bad))\n"
    )
    result = subprocess.run(  # noqa: S603
        [str(PYTHON), "-c", probe, *(s.module for s in services)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    missing = result.stdout.split()
    if result.returncode != 0 or missing:
        details = result.stderr.strip()
        names = ", ".join(
            f"{s.name} (python -m {s.module})" for s in services if s.module in missing
        )
        raise StackError(
            f"cannot run: {names or 'the module probe failed'}; is its package written, installed"
            f" (`make setup` installs every services/*/pyproject.toml)?"
            + (f"\n{details}" if details else "")
        )


def spawn(svc: Service, env: dict[str, str], stdout: int | IO[bytes]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(  # noqa: S603
        [str(PYTHON), "-m", svc.module],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches devstack only; it stops the services in order
    )
    svc.pidfile.write_text(f"{proc.pid}\n")
    return proc


def log_offset(svc: Service) -> int:
    try:
        return svc.logfile.stat().st_size
    except OSError:
        return 0


def wait_ready(services: list[Service], procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Return once every service answers /readyz 200; raise if one exits or the time runs out."""
    timeout = env_seconds("SAGE_DEVSTACK_TIMEOUT", 90)
    deadline = time.monotonic() + timeout
    pending = list(services)
    while pending:
        for svc in list(pending):
            proc = procs.get(svc.name)
            if proc is not None and proc.poll() is not None:
                raise StackError(
                    f"{svc.name} exited with status {proc.returncode} while starting;"
                    f" last lines of var/log/{svc.name}.log:\n"
                    + tail(svc.logfile, since=LOG_OFFSETS.get(svc.name, 0))
                )
            if ready(svc):
                say(f"{svc.name} ready on 127.0.0.1:{svc.port}")
                pending.remove(svc)
        if not pending:
            return
        if time.monotonic() > deadline:
            svc = pending[0]
            code = http_status(svc.url("/readyz"))
            raise StackError(
                f"{svc.name} not ready after {timeout:.0f}s (GET /readyz: {code or 'no answer'});"
                f" last lines of var/log/{svc.name}.log:\n"
                + tail(svc.logfile, since=LOG_OFFSETS.get(svc.name, 0))
            )
        time.sleep(0.25)


def select(names: list[str]) -> list[Service]:
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise StackError(f"unknown service(s): {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    return [BY_NAME[n] for n in names] if names else list(SERVICES)


def port_taken_by_stranger(svc: Service) -> bool:
    return recorded_pid(svc) is None and http_status(svc.url("/healthz")) != 0


# -------------------------------------------------------------------------------- commands ----


def cmd_up(names: list[str]) -> int:
    services = select(names)
    RUN.mkdir(parents=True, exist_ok=True)
    LOG.mkdir(parents=True, exist_ok=True)
    infra("start")
    to_start = [s for s in services if recorded_pid(s) is None]
    for svc in to_start:
        if port_taken_by_stranger(svc):
            raise StackError(
                f"port {svc.port} ({svc.name}) answers, but not from a process devstack started"
            )
    check_importable(to_start)
    env = service_env()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for svc in services:
        pid = recorded_pid(svc)
        if pid is not None:
            say(f"{svc.name} already running (pid {pid})")
            continue
        LOG_OFFSETS[svc.name] = log_offset(svc)
        with open(svc.logfile, "ab") as log:
            log.write(f"=== {time.strftime('%FT%T')} starting python -m {svc.module}\n".encode())
            log.flush()
            procs[svc.name] = spawn(svc, env, log)
        say(f"started {svc.name} (pid {procs[svc.name].pid}), log: var/log/{svc.name}.log")
    try:
        wait_ready(services, procs)
    except BaseException as exc:
        if isinstance(exc, StackError):
            say(f"error: {exc}")
        stop_services([s for s in services if s.name in procs], procs)
        if isinstance(exc, StackError):
            return 1
        raise
    say("all services ready; gateway on http://127.0.0.1:8080")
    return 0


def cmd_down(_names: list[str]) -> int:
    stop_services(list(SERVICES))
    infra("stop")
    return 0


def cmd_status(_names: list[str]) -> int:
    subprocess.run([str(INFRA), "status"], cwd=ROOT)  # noqa: S603
    for svc in SERVICES:
        pid = recorded_pid(svc)
        code = http_status(svc.url("/readyz"))
        state = "ready" if code == 200 else ("up" if code else "down")
        owner = f"pid {pid}" if pid else ("(not started by devstack)" if code else "")
        print(f"{svc.name:<9} {state:<5} :{svc.port} {owner}")
    return 0


class Streamer:
    """Copies a service's output to its log file and to stdout, each line prefixed with its name."""

    COLORS = ("36", "33", "32", "35", "34")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.color = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None
        self.width = max(len(s.name) for s in SERVICES)

    def prefix(self, index: int, name: str) -> str:
        label = f"{name:<{self.width}} |"
        if self.color:
            return f"\033[{self.COLORS[index % len(self.COLORS)]}m{label}\033[0m "
        return label + " "

    def pump(self, index: int, svc: Service, stream: IO[bytes]) -> None:
        prefix = self.prefix(index, svc.name)
        with open(svc.logfile, "ab") as log:
            for raw in iter(stream.readline, b""):
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").rstrip("\n")
                with self.lock:
                    sys.stdout.write(prefix + line + "\n")
                    sys.stdout.flush()


def cmd_run(names: list[str]) -> int:
    services = select(names)
    RUN.mkdir(parents=True, exist_ok=True)
    LOG.mkdir(parents=True, exist_ok=True)
    already = [s.name for s in SERVICES if recorded_pid(s) is not None]
    if already:
        raise StackError(
            f"already running in the background: {', '.join(already)}; `make down` first"
        )

    stop = threading.Event()
    all_ready = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    infra_before = infra_owned_running()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    pumps: list[threading.Thread] = []
    ready_error: list[BaseException] = []
    status = 0
    try:
        infra("start")
        for svc in services:
            if port_taken_by_stranger(svc):
                raise StackError(
                    f"port {svc.port} ({svc.name}) answers, but not from a process devstack started"
                )
        check_importable(services)
        env = service_env()
        streamer = Streamer()
        for index, svc in enumerate(services):
            if stop.is_set():
                break
            LOG_OFFSETS[svc.name] = log_offset(svc)
            proc = spawn(svc, env, subprocess.PIPE)
            procs[svc.name] = proc
            assert proc.stdout is not None
            t = threading.Thread(target=streamer.pump, args=(index, svc, proc.stdout), daemon=True)
            t.start()
            pumps.append(t)
        if not stop.is_set():

            def waiter() -> None:
                try:
                    wait_ready(services, procs)
                    all_ready.set()
                    say("all services ready; gateway on http://127.0.0.1:8080 (Ctrl-C stops all)")
                except BaseException as exc:  # noqa: BLE001 (reported by the main thread)
                    ready_error.append(exc)
                    stop.set()

            threading.Thread(target=waiter, daemon=True).start()
        policies = {svc.name: RestartPolicy() for svc in services}
        due: dict[str, float] = {}  # service -> when to start it again
        unhealthy: dict[str, int] = {}
        next_probe = time.monotonic() + 5
        index_of = {svc.name: i for i, svc in enumerate(services)}
        while not stop.wait(0.5):
            if not all_ready.is_set():
                for svc in services:
                    proc = procs[svc.name]
                    if proc.poll() is not None and not ready_error:
                        say(f"{svc.name} exited with status {proc.returncode} while starting")
                        status = 1
                        stop.set()
                        break
                continue
            now = time.monotonic()
            for svc in services:
                proc = procs[svc.name]
                if svc.name in due:
                    if now >= due[svc.name]:
                        del due[svc.name]
                        say(f"{svc.name}: restarting")
                        proc = spawn(svc, env, subprocess.PIPE)
                        procs[svc.name] = proc
                        policies[svc.name].started(now)
                        assert proc.stdout is not None
                        args = (index_of[svc.name], svc, proc.stdout)
                        t = threading.Thread(target=streamer.pump, args=args, daemon=True)
                        t.start()
                        pumps.append(t)
                    continue
                if proc.poll() is not None:
                    delay = policies[svc.name].delay(now)
                    say(
                        f"{svc.name} exited with status {proc.returncode}; restart in {delay:.0f} s"
                    )
                    due[svc.name] = now + delay
                    unhealthy.pop(svc.name, None)
            if now >= next_probe:
                next_probe = now + 5
                for svc in services:
                    if svc.name in due or procs[svc.name].poll() is not None:
                        continue
                    if http_status(svc.url("/healthz")) == 503:
                        unhealthy[svc.name] = unhealthy.get(svc.name, 0) + 1
                    else:
                        unhealthy.pop(svc.name, None)
                    if unhealthy.get(svc.name, 0) >= 3:
                        say(f"{svc.name}: /healthz failed 3 times; killing it for a restart")
                        stop_pid(
                            procs[svc.name].pid, svc.name, env_seconds("SAGE_DEVSTACK_GRACE", 10)
                        )
                        unhealthy.pop(svc.name, None)
        if not received and not status and ready_error:
            raise ready_error[0]
    except StackError as exc:
        say(f"error: {exc}")
        status = 1
    finally:
        # Ignore further Ctrl-C while stopping: a second one must not leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_services(services, procs)
        for t in pumps:
            t.join(timeout=5)
        started = sorted(infra_owned_running() - infra_before)
        if started:
            try:
                infra("stop", *started)
            except StackError as exc:
                say(f"error: {exc}")
                status = 1
    if received and not status:
        say("stopped")
    return status


COMMANDS = {"up": cmd_up, "down": cmd_down, "run": cmd_run, "status": cmd_status}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except StackError as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
