"""The `tuneforge` command: start the whole stack, one actor, or the API.

tuneforge up [--host H] [--port P] [--data-dir DIR] [--converters N] [--exporters N] [--moods N]
tuneforge actor converter|exporter|mood
tuneforge api [--host H] [--port P]

Each first checks the backends it needs (database, blob store, cache, NATS with JetStream) and
stops with one line per unusable one; --no-checks skips that.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from tuneforge.checks import mask, startup_checks
from tuneforge.embedded import (
    StartInterrupted,
    die_with_parent,
    port_is_free,
    start_nats_server,
    wait_for_port,
)
from tuneforge.logs import configure_logging
from tuneforge.settings import Settings

log = logging.getLogger("tuneforge")
ACTORS = ("converter", "exporter", "mood")
STOP_GRACE_S = 15.0
CHILD_STOP_S = 10.0  # how long `up` waits for its processes to stop before it kills them
# … for the API when it is not listening yet: it serves nothing, and in its start-up (waiting for
# NATS, say) it does not act on SIGTERM until that is done.
STARTING_API_STOP_S = 3.0
MAX_REPLICAS = 64
# The backends each command needs (`up` adds NATS when it does not start its own).
API_BACKENDS = ("database", "blob store", "cache", "NATS")
ACTOR_BACKENDS = ("blob store", "NATS")


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


# `up` asks /healthz every 2 s until the stack is ready, at this address: the API leaves those
# requests out of its access log (a first start answers 503 for 20 s and more while the mood actor
# compiles librosa's code, which filled the console with lines about the console's own questions).
STARTUP_POLL_PATH = "/healthz?poll=startup"


class _WithoutStartupPolls(logging.Filter):
    """Drops uvicorn's access-log records of `up`'s own readiness polls (args[2]: path and query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (isinstance(args, tuple) and len(args) > 2 and args[2] == STARTUP_POLL_PATH)


def _healthy(host: str, port: int) -> bool:
    import urllib.error
    import urllib.request

    address = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    try:
        with urllib.request.urlopen(f"http://{address}:{port}{STARTUP_POLL_PATH}", timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def replica_count(text: str) -> int:
    """0 is a stage whose replicas run elsewhere (`tuneforge actor …` on other machines)."""
    value = _whole_number(text)
    if not 0 <= value <= MAX_REPLICAS:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_REPLICAS}, not {value}")
    return value


def port_number(text: str) -> int:
    value = _whole_number(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port from 1 to 65535, not {value}")
    return value


def run_actor(name: str, settings: Settings, checks: bool = True) -> int:
    """Run one actor process until SIGINT/SIGTERM."""
    if not settings.nats_url:
        raise SystemExit("TUNEFORGE_NATS_URL is not set: an actor needs a NATS server to join")
    if name not in ACTORS:
        raise SystemExit(f"unknown actor {name!r}: choose one of {', '.join(ACTORS)}")
    if checks and not startup_checks(settings, ACTOR_BACKENDS):
        return 1
    serve = importlib.import_module(f"tuneforge.actors.{name}.service").serve

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        signals = 0

        def stop() -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                os._exit(1)  # asked twice: leave now
            # A clean stop leaves NATS politely, but a library waiting on a vanished server must
            # not keep the process alive: unacked jobs are redelivered to another replica anyway.
            watchdog = threading.Timer(STOP_GRACE_S, os._exit, args=(0,))
            watchdog.daemon = True  # it must not itself keep a finished process alive
            watchdog.start()
            assert task is not None
            task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        try:
            await serve(settings)
        except asyncio.CancelledError:
            log.info("%s: stopped", name)

    asyncio.run(main())
    return 0


def run_api(settings: Settings, host: str, port: int, checks: bool = True, log_level: str = "INFO") -> int:
    if not settings.nats_url:
        raise SystemExit("TUNEFORGE_NATS_URL is not set: the API needs a NATS server (or use `tuneforge up`)")
    # The default SQLite file and blob folder live there (the checks run before the API makes it).
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if checks and not startup_checks(settings, API_BACKENDS):
        return 1
    import uvicorn

    from tuneforge.api.app import create_app

    app = create_app(settings)
    # Litestar's default logging config sets the root logger to INFO as the app is made: back to
    # TUNEFORGE_LOG_LEVEL, which uvicorn's own loggers follow too.
    logging.getLogger().setLevel(log_level)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            # Open event streams never finish on their own: told to stop, they end (within a
            # second), so the server stops at once instead of cutting them after its 5-s grace.
            # Also the start-up's wait for NATS; a signal before the lifespan has made the backend
            # is kept on the app, where the lifespan finds it.
            app.state.stopping = True
            backend = getattr(app.state, "backend", None)
            if backend is not None:
                backend.closing = True

    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level.lower(), timeout_graceful_shutdown=5
    )
    logging.getLogger("uvicorn.access").addFilter(_WithoutStartupPolls())  # after Config set logging up
    Server(config).run()
    return 0


@dataclass
class Child:
    name: str
    argv: list[str]
    restart: bool
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)
    gave_up: bool = False


def up(settings: Settings, host: str, port: int, replicas: dict[str, int], checks: bool = True) -> int:
    """Start the embedded stack: nats-server (unless TUNEFORGE_NATS_URL), actors, API."""
    if not port_is_free(host, port):
        print(
            f"tuneforge: port {port} on {host} is already in use; choose another with --port", file=sys.stderr
        )
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    backends = [b for b in API_BACKENDS if b != "NATS" or settings.nats_url]
    if checks and not startup_checks(settings, backends):
        return 1

    # 0 while running; a stop signal sets it to 128 + the signal's number, the exit code of a stop
    # before the stack is up. A second signal while the processes stop kills what is left.
    stopping = 0

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = stopping or 128 + signum
        if stopping_children:
            log.warning("asked again: killing what is left")
            for child in children:
                if child.process and child.process.poll() is None:
                    child.process.kill()

    stopping_children = False
    children: list[Child] = []
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    nats_process = None
    nats_url = settings.nats_url
    if not nats_url:
        try:
            nats_process, nats_url = start_nats_server(
                settings.data_dir / "nats", should_stop=lambda: bool(stopping)
            )
        except StartInterrupted:
            return stopping
        except (FileNotFoundError, RuntimeError) as error:
            print(f"tuneforge: {error}", file=sys.stderr)
            return 1
        log.info("embedded nats-server with JetStream on %s (store %s)", nats_url, settings.data_dir / "nats")
    env = {
        **os.environ,
        "TUNEFORGE_NATS_URL": nats_url,
        "TUNEFORGE_DATA_DIR": str(settings.data_dir),
        "TUNEFORGE_DATABASE_URL": settings.database_url,
        "TUNEFORGE_CACHE_URL": settings.cache_url,
        "TUNEFORGE_BLOB_URL": settings.blob_url,
        "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(settings.data_dir / "numba-cache")),
    }
    # The backends are checked above, once: a restarted actor must not give up on a passing outage.
    children.extend(
        Child(
            f"{actor}-{i + 1}",
            [sys.executable, "-m", "tuneforge", "actor", actor, "--no-checks"],
            restart=True,
        )
        for actor in ACTORS
        for i in range(replicas.get(actor, 1))
    )
    children.append(
        Child(
            "api",
            [sys.executable, "-m", "tuneforge", "api", "--host", host, "--port", str(port), "--no-checks"],
            restart=False,
        )
    )

    def spawn(child: Child) -> None:
        # Own session: Ctrl-C reaches only this supervisor, which stops the children in order.
        child.process = subprocess.Popen(
            child.argv, env=env, start_new_session=True, preexec_fn=die_with_parent
        )

    for child in children:
        spawn(child)
    exit_code = 0
    api_stop_s = STARTING_API_STOP_S
    try:
        api = children[-1]
        wait_for_port(host, port, 120.0, api.process, should_stop=lambda: bool(stopping))
        print(
            f"TuneForge is running on http://{host}:{port} (NATS {mask(nats_url)[0]}, "
            f"data {settings.data_dir}); Ctrl-C stops it",
            flush=True,
        )
        api_stop_s = CHILD_STOP_S
        # The API answers before every actor does (a first start compiles the mood actor's librosa
        # code for 10 s and more): say when the whole stack is ready, as /healthz sees it.
        ready, next_health_check = False, time.monotonic()
        while not stopping:
            time.sleep(0.5)
            if not ready and time.monotonic() >= next_health_check:
                next_health_check = time.monotonic() + 2.0
                if _healthy(host, port):
                    ready = True
                    print("TuneForge is ready: every service answers (GET /healthz)", flush=True)
            for child in children:
                assert child.process is not None
                code = child.process.poll()
                if code is None or child.gave_up:
                    continue
                if not child.restart:
                    log.error("%s exited with code %s: stopping the stack", child.name, code)
                    stopping, exit_code = 1, 1
                    break
                now = time.monotonic()
                child.restarts = [t for t in child.restarts if now - t < 60] + [now]
                if len(child.restarts) > 5:
                    # The rest keeps serving; /healthz reports this service down until it is fixed.
                    log.error("%s keeps crashing (code %s): no more restarts", child.name, code)
                    child.gave_up = True
                    continue
                log.warning("%s exited with code %s: restarting it", child.name, code)
                spawn(child)
    except StartInterrupted:
        log.info("stopping before the stack was up")
        exit_code = stopping
    except TimeoutError as error:
        log.error("the stack did not start: %s", error)
        exit_code = 1
    except RuntimeError as error:  # the API exited before it listened
        log.error("the stack did not start: the API %s (its error is above)", error)
        exit_code = 1
    finally:
        stopping_children = True
        for child in reversed(children):  # the API first, then the actors
            if child.process and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        _wait_or_kill(
            [
                (c.name, c.process, api_stop_s if c.name == "api" else CHILD_STOP_S)
                for c in children
                if c.process
            ]
        )
        if nats_process is not None:
            nats_process.send_signal(signal.SIGTERM)
            _wait_or_kill([("nats-server", nats_process, CHILD_STOP_S)])
        log.info("stopped")
    return exit_code


def _wait_or_kill(processes: list[tuple[str, subprocess.Popen[bytes], float]]) -> None:
    """Wait for the processes to exit, each within its time (counted from now, all at once);
    kill, and say so, those that do not."""
    started = time.monotonic()
    waiting = list(processes)
    while waiting:
        elapsed = time.monotonic() - started
        for name, process, timeout_s in list(waiting):
            if process.poll() is not None:
                waiting.remove((name, process, timeout_s))
            elif elapsed >= timeout_s:
                log.warning("%s did not stop within %.0f s: killing it", name, timeout_s)
                process.kill()
                process.wait()
                waiting.remove((name, process, timeout_s))
        time.sleep(0.05 if waiting else 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tuneforge", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add_no_checks(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--no-checks",
            action="store_true",
            help="start without first checking that the database, blob store, cache and NATS answer",
        )

    up_parser = commands.add_parser("up", help="start the whole stack on this machine")
    up_parser.add_argument("--host", default="127.0.0.1")
    up_parser.add_argument("--port", type=port_number, default=8000)
    up_parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the database, blobs and NATS store live (default: $TUNEFORGE_DATA_DIR or ./data)",
    )
    for actor in ACTORS:
        up_parser.add_argument(
            f"--{actor}s",
            type=replica_count,
            default=1,
            metavar="N",
            help=f"{actor} replicas (default 1, at most {MAX_REPLICAS})",
        )
    add_no_checks(up_parser)
    actor_parser = commands.add_parser("actor", help="run one actor process")
    actor_parser.add_argument("name", choices=ACTORS)
    actor_parser.add_argument("--data-dir", type=Path, default=None)
    add_no_checks(actor_parser)
    api_parser = commands.add_parser("api", help="run the HTTP API (needs TUNEFORGE_NATS_URL)")
    api_parser.add_argument("--host", default="127.0.0.1")
    api_parser.add_argument("--port", type=port_number, default=8000)
    api_parser.add_argument("--data-dir", type=Path, default=None)
    add_no_checks(api_parser)
    args = parser.parse_args(argv)
    level = configure_logging()
    settings = Settings.from_env(args.data_dir)
    checks = not args.no_checks
    try:
        if args.command == "up":
            replicas = {actor: getattr(args, f"{actor}s") for actor in ACTORS}
            if importlib.util.find_spec("tuneforge.actors.mood.service") is None:
                replicas["mood"] = 0  # the mood actor is optional in a build without it
            return up(settings, args.host, args.port, replicas, checks)
        if args.command == "actor":
            return run_actor(args.name, settings, checks)
        return run_api(settings, args.host, args.port, checks, level)
    except KeyboardInterrupt:  # Ctrl-C before the process set up its own handling (the checks)
        print("tuneforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
