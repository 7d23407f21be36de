"""Real components for the tests: our own nats-server, Azurite, and whole running stacks.

Nothing is mocked. PostgreSQL and Redis are the machine's (CI runs them on 5432 and 6379);
NATS and Azurite are started here on free ports, so a server already on 4222 never matters.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tuneforge.embedded import free_port, start_nats_server, wait_for_port

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get(
    "TUNEFORGE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TUNEFORGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Azurite's well-known development account (published in Microsoft's Azurite documentation).
# The stacks wait for the mood actor once it can run: its service exists and its model is trained.
MOOD_ACTOR_BUILT = (
    importlib.util.find_spec("tuneforge.actors.mood.service") is not None
    and (REPO_ROOT / "actors" / "mood" / "model.onnx").is_file()
)
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server with JetStream of our own, on a free port."""
    process, url = start_nats_server(tmp_path_factory.mktemp("nats"), port=free_port())
    yield url
    _stop(process)


@pytest.fixture(scope="session")
def azurite_connection_string(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service (npm package, installed by scripts/setup.sh --test) on a free port."""
    binary = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        pytest.fail("Azurite is not installed: run scripts/setup.sh --test")
    port = free_port()
    process = subprocess.Popen(
        [
            str(binary),
            "--silent",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",  # Azurite otherwise reports to Application Insights
            "--location",
            str(tmp_path_factory.mktemp("azurite")),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for_port("127.0.0.1", port, 30, process)
    yield (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    _stop(process)


@dataclass
class Stack:
    """A running `tuneforge up`: the API at `base_url`, its NATS at `nats_url`."""

    name: str
    base_url: str
    nats_url: str
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)


def is_ready(base_url: str, query: str = "") -> bool:
    """Every component healthy (the mood actor only once it can run)."""
    try:
        checks = httpx.get(f"{base_url}/healthz{query}", timeout=2).json()["checks"]
    except (httpx.HTTPError, KeyError, ValueError):
        return False
    return all(checks[s]["ok"] for s in checks if s != "tuneforge-mood" or MOOD_ACTOR_BUILT)


def start_stack(
    name: str, data_dir: Path, nats: str, env_overrides: dict[str, str], extra_args: tuple[str, ...] = ()
) -> Stack:
    port = free_port()
    env = {
        **os.environ,
        "TUNEFORGE_NATS_URL": nats,
        "NUMBA_CACHE_DIR": str(REPO_ROOT / ".venv" / "numba-cache"),
        **env_overrides,
    }
    log_path = data_dir / "stack.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tuneforge",
            "up",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            *extra_args,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack = Stack(name, f"http://127.0.0.1:{port}", nats, data_dir, env, process, log_path)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"stack {name} exited:\n{log_path.read_text()[-4000:]}")
        try:
            if is_ready(stack.base_url):
                return stack
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    _stop(process)
    raise RuntimeError(f"stack {name} not healthy in time:\n{log_path.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory: pytest.TempPathFactory, nats_url: str) -> Iterator[Stack]:
    """The embedded defaults: SQLite, a local blob folder, the memory cache."""
    data_dir = tmp_path_factory.mktemp("stack-embedded")
    stack = start_stack("embedded", data_dir, nats_url, {"CACHE_RESET_PWD": "test-secret"})
    yield stack
    _stop(stack.process, 30)


@pytest.fixture(scope="session")
def production_stack(
    tmp_path_factory: pytest.TempPathFactory, azurite_connection_string: str
) -> Iterator[Stack]:
    """The production backends: PostgreSQL, Azure Blob Storage (Azurite), Redis; its own NATS."""
    data_dir = tmp_path_factory.mktemp("stack-production")
    process, nats = start_nats_server(data_dir / "nats", port=free_port())
    stack = start_stack(
        "production",
        data_dir,
        nats,
        {
            "TUNEFORGE_DATABASE_URL": POSTGRES_URL,
            "TUNEFORGE_BLOB_URL": azurite_connection_string + f"Container=tf{int(time.time())}",
            "TUNEFORGE_CACHE_URL": REDIS_URL,
            "CACHE_RESET_PWD": "test-secret",
        },
    )
    yield stack
    _stop(stack.process, 30)
    _stop(process)


@pytest.fixture(scope="session", params=["embedded", "production"])
def stack(request: pytest.FixtureRequest) -> Stack:
    """Each end-to-end test runs on both stacks."""
    return request.getfixturevalue("live_stack" if request.param == "embedded" else "production_stack")


@pytest.fixture(scope="session")
def soundfont_dir() -> Path:
    path = Path(os.environ.get("TUNEFORGE_SOUNDFONT_DIR", "/usr/share/sounds/sf2"))
    assert (path / "FluidR3_GM.sf2").is_file(), "FluidR3_GM missing: run scripts/setup.sh"
    return path


@pytest.fixture(scope="session")
def fluidsynth_cli() -> str:
    found = shutil.which("fluidsynth")
    assert found, "the fluidsynth command is missing: run scripts/setup.sh"
    return found
