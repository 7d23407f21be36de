"""The `tuneforge` command: start the whole stack, one actor, or the API.

tuneforge up [--host H] [--port P] [--data-dir DIR] [--exporters N]
tuneforge actor converter|exporter|mood
tuneforge api [--host H] [--port P]
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

from tuneforge.embedded import die_with_parent, port_is_free, start_nats_server, wait_for_port
from tuneforge.settings import Settings

log = logging.getLogger("tuneforge")
ACTORS = ("converter", "exporter", "mood")
STOP_GRACE_S = 15.0


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("TUNEFORGE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run_actor(name: str, settings: Settings) -> None:
    """Run one actor process until SIGINT/SIGTERM."""
    if not settings.nats_url:
        raise SystemExit("TUNEFORGE_NATS_URL is not set: an actor needs a NATS server to join")
    if name not in ACTORS:
        raise SystemExit(f"unknown actor {name!r}: choose one of {', '.join(ACTORS)}")
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


def run_api(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from tuneforge.api.app import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


@dataclass
class Child:
    name: str
    argv: list[str]
    restart: bool
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)
    gave_up: bool = False


def up(settings: Settings, host: str, port: int, replicas: dict[str, int]) -> int:
    """Start the embedded stack: nats-server (unless TUNEFORGE_NATS_URL), actors, API."""
    if not port_is_free(host, port):
        print(
            f"tuneforge: port {port} on {host} is already in use; choose another with --port", file=sys.stderr
        )
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    nats_process = None
    nats_url = settings.nats_url
    if not nats_url:
        nats_process, nats_url = start_nats_server(settings.data_dir / "nats")
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
    children = [
        Child(f"{actor}-{i + 1}", [sys.executable, "-m", "tuneforge", "actor", actor], restart=True)
        for actor in ACTORS
        for i in range(replicas.get(actor, 1))
    ]
    children.append(
        Child(
            "api",
            [sys.executable, "-m", "tuneforge", "api", "--host", host, "--port", str(port)],
            restart=False,
        )
    )

    def spawn(child: Child) -> None:
        # Own session: Ctrl-C reaches only this supervisor, which stops the children in order.
        child.process = subprocess.Popen(
            child.argv, env=env, start_new_session=True, preexec_fn=die_with_parent
        )

    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    for child in children:
        spawn(child)
    exit_code = 0
    try:
        api = children[-1]
        wait_for_port(host, port, 120.0, api.process)
        print(
            f"TuneForge is running on http://{host}:{port} (NATS {nats_url}, data {settings.data_dir}); "
            "Ctrl-C stops it",
            flush=True,
        )
        while not stopping:
            time.sleep(0.5)
            for child in children:
                assert child.process is not None
                code = child.process.poll()
                if code is None or child.gave_up:
                    continue
                if not child.restart:
                    log.error("%s exited with code %s: stopping the stack", child.name, code)
                    stopping, exit_code = True, 1
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
    except (TimeoutError, RuntimeError) as error:
        log.error("the stack did not start: %s", error)
        exit_code = 1
    finally:
        for child in reversed(children):  # the API first, then the actors
            if child.process and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for child in reversed(children):
            if child.process:
                try:
                    child.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.process.kill()
        if nats_process is not None:
            nats_process.send_signal(signal.SIGTERM)
            try:
                nats_process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                nats_process.kill()
        log.info("stopped")
    return exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tuneforge", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start the whole stack on this machine")
    up_parser.add_argument("--host", default="127.0.0.1")
    up_parser.add_argument("--port", type=int, default=8000)
    up_parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the database, blobs and NATS store live (default: $TUNEFORGE_DATA_DIR or ./data)",
    )
    for actor in ACTORS:
        up_parser.add_argument(
            f"--{actor}s", type=int, default=1, metavar="N", help=f"{actor} replicas (default 1)"
        )
    actor_parser = commands.add_parser("actor", help="run one actor process")
    actor_parser.add_argument("name", choices=ACTORS)
    actor_parser.add_argument("--data-dir", type=Path, default=None)
    api_parser = commands.add_parser("api", help="run the HTTP API (needs TUNEFORGE_NATS_URL)")
    api_parser.add_argument("--host", default="127.0.0.1")
    api_parser.add_argument("--port", type=int, default=8000)
    api_parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    _configure_logging()
    settings = Settings.from_env(args.data_dir)
    if args.command == "up":
        replicas = {actor: getattr(args, f"{actor}s") for actor in ACTORS}
        if importlib.util.find_spec("tuneforge.actors.mood.service") is None:
            replicas["mood"] = 0  # the mood actor is optional in a build without it
        return up(settings, args.host, args.port, replicas)
    if args.command == "actor":
        run_actor(args.name, settings)
        return 0
    if not settings.nats_url:
        raise SystemExit("TUNEFORGE_NATS_URL is not set: the API needs a NATS server (or use `tuneforge up`)")
    run_api(settings, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
