"""Running TuneForge: missing actors answer 503, slow ones 504, and Ctrl-C stops everything cleanly;
a backend that cannot be used is named at start, in one line, with its secrets masked."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nats
import pytest

from tests.conftest import AZURITE_KEY, REPO_ROOT, Stack, _stop, is_ready
from tuneforge.checks import mask
from tuneforge.embedded import free_port, nats_server_binary, start_nats_server, wait_for_port


def start_api(nats_url: str, data_dir: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tuneforge", "api", "--port", str(port), "--data-dir", str(data_dir)],
        env={**os.environ, "TUNEFORGE_NATS_URL": nats_url, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for_port("127.0.0.1", port, 60, process)
    return process, f"http://127.0.0.1:{port}"


def test_no_actors_means_503_but_jobs_are_still_accepted(tmp_path: Path) -> None:
    nats_process, nats_url = start_nats_server(tmp_path / "nats", port=free_port())
    api, url = start_api(nats_url, tmp_path)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            response = client.post("/download", json={"notes": [[440.0]]})
            assert response.status_code == 503
            assert "tuneforge-converter service is not running" in response.json()["detail"]
            health = client.get("/healthz")
            assert health.status_code == 503
            assert health.json()["checks"]["tuneforge-exporter"]["ok"] is False
            assert health.json()["checks"]["database"]["ok"] is True
            # A durable job waits in the queue for a worker instead of failing.
            job = client.post("/jobs", json={"notes": [[440.0]]})
            assert job.status_code == 202 and job.json()["status"] == "queued"
            time.sleep(0.5)
            assert client.get(f"/jobs/{job.json()['id']}").json()["status"] == "queued"
            # With the bus away the status answers from the record at once (it waited out a 10-s
            # timeout on every request, stalling a page that polls).
            _stop(nats_process)
            time.sleep(1)
            started = time.monotonic()
            status = client.get(f"/jobs/{job.json()['id']}")
            assert status.status_code == 200 and status.json()["status"] == "queued"
            assert time.monotonic() - started < 3
    finally:
        _stop(api)
        _stop(nats_process)


def test_a_render_slower_than_the_timeout_is_504(live_stack: Stack, tmp_path: Path) -> None:
    api, url = start_api(live_stack.nats_url, live_stack.data_dir, TUNEFORGE_DOWNLOAD_TIMEOUT_S="0.2")
    long_piece = {
        "tempo_bpm": 60,
        "tracks": [
            {
                "instrument": "string_ensemble_1",
                "notes": [
                    {"pitch": 48 + v, "start_beats": b * 4, "duration_beats": 4}
                    for v in range(0, 24, 3)
                    for b in range(140)
                ],
            }
        ],
    }
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            response = client.post("/download", json=long_piece)
        assert response.status_code == 504
        assert "did not finish within" in response.json()["detail"] and "/jobs/" in response.json()["detail"]
    finally:
        _stop(api)


def test_ctrl_c_stops_the_whole_stack(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "TUNEFORGE_NATS_URL"}
    env["NUMBA_CACHE_DIR"] = str(REPO_ROOT / ".venv" / "numba-cache")
    up = subprocess.Popen(
        [sys.executable, "-m", "tuneforge", "up", "--port", str(port), "--data-dir", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if is_ready(f"http://127.0.0.1:{port}", query="?from=test"):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the stack did not become healthy")
        children = [int(p) for p in Path(f"/proc/{up.pid}/task/{up.pid}/children").read_text().split()]
        assert len(children) >= 4  # nats-server, the actors, the API
        time.sleep(2.5)  # `up` looks at /healthz every 2 s: it has seen it healthy by now
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=40) == 0
        assert up.stdout is not None
        said = up.stdout.read().decode()
        assert said.index("TuneForge is running on") < said.index("TuneForge is ready: every service answers")
        # The access log shows this test's own health checks, not `up`'s polls while it waited.
        assert '"GET /healthz?from=test HTTP/1.1" 200' in said
        assert "GET /healthz HTTP" not in said and "poll=startup" not in said
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        assert (tmp_path / "tuneforge.db").is_file() and (tmp_path / "nats" / "jetstream").is_dir()
    finally:
        if up.poll() is None:
            up.kill()


def test_a_killed_supervisor_leaves_no_process_behind(tmp_path: Path) -> None:
    """Even SIGKILL on `tuneforge up` (no chance to clean up) takes nats-server and the actors with it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "TUNEFORGE_NATS_URL"}
    up = subprocess.Popen(
        [sys.executable, "-m", "tuneforge", "up", "--port", str(port), "--data-dir", str(tmp_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, 120, up)
        children = [int(p) for p in Path(f"/proc/{up.pid}/task/{up.pid}/children").read_text().split()]
        assert len(children) >= 4
        up.kill()
        up.wait()
        deadline = time.monotonic() + 20
        alive = children
        while alive and time.monotonic() < deadline:
            alive = [
                pid
                for pid in children
                if Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()
            ]
            time.sleep(0.2)
        assert not alive, f"still running: {alive}"
    finally:
        if up.poll() is None:
            up.kill()


def test_a_job_that_cannot_be_queued_is_refused_and_recorded_failed(tmp_path: Path) -> None:
    nats_process, nats_url = start_nats_server(tmp_path / "nats", port=free_port())
    api, url = start_api(nats_url, tmp_path)

    async def delete_jobs_stream() -> None:
        nc = await nats.connect(nats_url)
        await nc.jetstream().delete_stream("TUNEFORGE_JOBS")
        await nc.close()

    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            accepted = client.post("/jobs", json={"notes": [[440.0]]})
            assert accepted.status_code == 202
            asyncio.run(delete_jobs_stream())  # JetStream can no longer take jobs
            refused = client.post("/jobs", json={"notes": [[523.25]]})
            assert refused.status_code == 503 and "could not queue the job" in refused.json()["detail"]
            newest = client.get("/jobs", params={"limit": 1}).json()["jobs"][0]
            assert newest["status"] == "failed" and newest["error"]["code"] == 503  # no ghost "queued" job

            _stop(nats_process)  # the bus goes away: an event stream is refused in words, not broken
            time.sleep(1)
            events = client.get(f"/jobs/{accepted.json()['id']}/events")
            assert events.status_code == 503 and "NATS" in events.json()["detail"]
    finally:
        _stop(api)
        _stop(nats_process)


# --- start-up checks, options, logging ----------------------------------------------------------


def clean_env(**overrides: str) -> dict[str, str]:
    """This machine's environment without any TUNEFORGE_ setting, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEFORGE_")}
    env["NUMBA_CACHE_DIR"] = str(REPO_ROOT / ".venv" / "numba-cache")
    return {**env, **overrides}


def tuneforge(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuneforge", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def said(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What the command said to the operator (its own lines on stderr, not library warnings)."""
    return [line for line in result.stderr.splitlines() if line.startswith("tuneforge: ")]


def test_up_names_each_backend_it_cannot_reach_and_starts_nothing(tmp_path: Path) -> None:
    database_port, redis_port, nats_port = free_port(), free_port(), free_port()  # nothing listens
    env = clean_env(
        TUNEFORGE_DATABASE_URL=f"postgresql+asyncpg://postgres:s3cret-pw@127.0.0.1:{database_port}/test",
        TUNEFORGE_CACHE_URL=f"redis://127.0.0.1:{redis_port}/0",
        TUNEFORGE_NATS_URL=f"nats://127.0.0.1:{nats_port}",
    )
    started = time.monotonic()
    result = tuneforge("up", "--port", str(free_port()), "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 1
    assert time.monotonic() - started < 15
    assert said(result) == [
        f"tuneforge: database postgresql+asyncpg://postgres:***@127.0.0.1:{database_port}/test: "
        "connection refused",
        f"tuneforge: cache redis://127.0.0.1:{redis_port}/0: connection refused",
        f"tuneforge: NATS nats://127.0.0.1:{nats_port}: connection refused",
    ]
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "s3cret-pw" not in output
    assert "TuneForge is running" not in output
    assert not (tmp_path / "nats").exists()  # no embedded server either


@pytest.mark.parametrize(
    "url", ["postgres://postgres@127.0.0.1/test", "postgresql://postgres@127.0.0.1/test"]
)
def test_a_database_url_in_another_spelling_is_answered_with_ours(url: str, tmp_path: Path) -> None:
    env = clean_env(TUNEFORGE_DATABASE_URL=url)
    result = tuneforge("up", "--port", str(free_port()), "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = said(result)
    assert (
        len(lines) == 1
        and lines[0].startswith("tuneforge: database ")
        and "postgresql+asyncpg://" in lines[0]
    )


def test_a_nats_server_without_jetstream_is_named_as_such(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port)],  # no -js
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port("127.0.0.1", port, 15, server)
        env = clean_env(TUNEFORGE_NATS_URL=f"nats://127.0.0.1:{port}")
        for command in (["api", "--port", str(free_port())], ["actor", "converter"]):
            result = tuneforge(*command, "--data-dir", str(tmp_path), env=env)
            assert result.returncode == 1, result.stderr
            assert said(result) == [
                f"tuneforge: NATS nats://127.0.0.1:{port} has no JetStream (start nats-server with -js)"
            ]
            assert "Traceback" not in result.stderr
    finally:
        _stop(server)


def test_a_wrong_blob_store_key_is_refused_without_showing_it(
    tmp_path: Path, nats_url: str, azurite_connection_string: str
) -> None:
    wrong_key = base64.b64encode(b"not the account key, but base64" * 2).decode()
    blob_url = azurite_connection_string.replace(AZURITE_KEY, wrong_key) + "Container=checks"
    env = clean_env(TUNEFORGE_NATS_URL=nats_url, TUNEFORGE_BLOB_URL=blob_url)
    result = tuneforge("up", "--port", str(free_port()), "--data-dir", str(tmp_path), env=env, timeout=60)
    assert result.returncode == 1
    lines = said(result)
    assert len(lines) == 1 and lines[0].startswith(
        f"tuneforge: blob store {blob_url.replace(wrong_key, '***')}: access denied (HTTP 403"
    )
    assert wrong_key not in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_the_api_checks_and_starts_in_a_data_folder_not_made_yet(tmp_path: Path) -> None:
    """The default SQLite file lives in the data folder: made before the database is checked."""
    nats_process, nats_url = start_nats_server(tmp_path / "nats", port=free_port())
    api, url = start_api(nats_url, tmp_path / "new" / "data")
    try:
        assert httpx.get(f"{url}/healthz", timeout=10).json()["checks"]["database"]["ok"] is True
    finally:
        _stop(api)
        _stop(nats_process)


def test_the_traceback_of_a_failed_check_is_shown_at_debug_level(tmp_path: Path) -> None:
    env = clean_env(TUNEFORGE_NATS_URL=f"nats://127.0.0.1:{free_port()}", TUNEFORGE_LOG_LEVEL="debug")
    result = tuneforge("actor", "converter", "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ConnectionRefusedError" in result.stderr
    assert said(result)[-1].endswith(": connection refused")


@pytest.mark.parametrize(
    "args",
    [
        ["up", "--exporters", "-1"],
        ["up", "--converters", "65"],
        ["up", "--moods", "-2"],
        ["up", "--exporters", "two"],
        ["up", "--port", "0"],
        ["up", "--port", "65536"],
        ["api", "--port", "-1"],
    ],
)
def test_numeric_options_out_of_range_are_refused(args: list[str], tmp_path: Path) -> None:
    result = tuneforge(*args, "--data-dir", str(tmp_path), env=clean_env(TUNEFORGE_NATS_URL="nats://x:1"))
    assert result.returncode == 2  # argparse's usage error, before anything starts
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"tuneforge {args[0]}: error: argument {args[1]}: ")
    assert any(words in error for words in ("from 0 to 64", "from 1 to 65535", "not a whole number"))


def test_a_log_level_that_is_not_one_is_refused(tmp_path: Path) -> None:
    result = tuneforge("up", "--data-dir", str(tmp_path), env=clean_env(TUNEFORGE_LOG_LEVEL="loud"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert said(result) == [
        "tuneforge: TUNEFORGE_LOG_LEVEL='loud' is not a log level "
        "(one of DEBUG, INFO, WARNING, ERROR, CRITICAL)"
    ]


LOGGING_PROBE = """
import logging
from tuneforge.logs import configure_logging
configure_logging()
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").info("Request headers: ...")
for _ in range(50):  # a reconnect attempt every half second, as nats-py reports them
    try:
        raise ConnectionRefusedError(111, "Connect call failed")
    except ConnectionRefusedError as error:
        logging.getLogger("nats.aio.client").error("nats: encountered error", exc_info=error)
logging.getLogger("tuneforge.actors.runtime").warning("nats: disconnected")
for _ in range(50):  # the API reports each failed reconnect through its own callback
    logging.getLogger("tuneforge.api.backend").warning("nats: %s", "[Errno 111] Connection refused")
logging.getLogger("tuneforge.api").info("still here")
"""


def test_logging_keeps_azure_headers_and_nats_reconnect_tracebacks_out() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LOGGING_PROBE], env=clean_env(), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "Request headers" not in result.stderr and "Traceback" not in result.stderr
    nats_lines = [line for line in result.stderr.splitlines() if "nats: encountered error" in line]
    assert len(nats_lines) == 1
    assert nats_lines[0].endswith(
        "nats: encountered error: ConnectionRefusedError: [Errno 111] Connect call failed"
    )
    assert "nats: disconnected" in result.stderr and "still here" in result.stderr
    assert sum("tuneforge.api.backend: nats: [Errno 111]" in line for line in result.stderr.splitlines()) == 1
    # At DEBUG an operator asked for everything.
    debug = subprocess.run(
        [sys.executable, "-c", LOGGING_PROBE],
        env=clean_env(TUNEFORGE_LOG_LEVEL="DEBUG"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "Request headers" in debug.stderr and debug.stderr.count("Traceback") == 50


def test_ctrl_c_while_the_stack_waits_for_nats_stops_it_at_once(tmp_path: Path) -> None:
    """With --no-checks and no NATS the API waits for NATS in its start-up: Ctrl-C must not wait
    for the start-up timeout (120 s), and the client's reconnect errors (two a second) must not
    fill the log with tracebacks."""
    port = free_port()
    env = clean_env(TUNEFORGE_NATS_URL=f"nats://127.0.0.1:{free_port()}")
    log_path, data = tmp_path / "up.log", str(tmp_path / "data")
    with log_path.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "tuneforge", "up", "--no-checks", "--port", str(port), "--data-dir", data],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(8)  # the processes have tried to connect a dozen times each
        assert up.poll() is None, log_path.read_text()
        children = [int(p) for p in Path(f"/proc/{up.pid}/task/{up.pid}/children").read_text().split()]
        assert len(children) >= 3  # the actors and the API
        asked = time.monotonic()
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=15) == 128 + signal.SIGINT
        assert time.monotonic() - asked < 6
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        output = log_path.read_text()
        assert "stopping before the stack was up" in output
        assert "Traceback" not in output
        assert output.count("nats: encountered error") <= 1  # the API: once per 30 s, not twice a second
        assert len(output.splitlines()) < 40
    finally:
        if up.poll() is None:
            up.kill()


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        (
            "postgresql+asyncpg://postgres@127.0.0.1:5999/test",
            "postgresql+asyncpg://postgres@127.0.0.1:5999/test",
        ),
        ("postgresql+asyncpg://tuneforge:pg-pw@db:5432/tf", "postgresql+asyncpg://tuneforge:***@db:5432/tf"),
        ("redis://:redis-pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://cache:6379/0?password=redis-pw", "redis://cache:6379/0?password=***"),
        ("nats://a-nats-token@nats:4222", "nats://***@nats:4222"),
        ("nats://u:nats-pw@a:4222,nats://u:nats-pw@b:4222", "nats://u:***@a:4222,nats://u:***@b:4222"),
        (
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a+b/c==;EndpointSuffix=core.windows.net",
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=***;EndpointSuffix=core.windows.net",
        ),
        (
            "https://acct.blob.core.windows.net/tuneforge?sv=2022-11-02&sp=rw&sig=a%2Fsignature",
            "https://acct.blob.core.windows.net/tuneforge?sv=2022-11-02&sp=rw&sig=***",
        ),
        ("/srv/tuneforge/blobs", "/srv/tuneforge/blobs"),
    ],
)
def test_addresses_are_shown_without_their_secrets(address: str, shown: str) -> None:
    masked, secrets = mask(address)
    assert masked == shown
    assert all(secret not in masked for secret in secrets)


def test_the_api_told_to_stop_while_it_waits_for_nats_stops_at_once(tmp_path: Path) -> None:
    """`tuneforge api --no-checks` with no NATS there waits for it in its start-up: SIGTERM (systemd,
    `docker stop`) must stop it then, cleanly, not when the supervisor gives up and kills it."""
    log_path, data = tmp_path / "api.log", str(tmp_path / "data")
    with log_path.open("wb") as log:
        api = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tuneforge",
                "api",
                "--no-checks",
                "--port",
                str(free_port()),
                "--data-dir",
                data,
            ],
            env=clean_env(TUNEFORGE_NATS_URL=f"nats://127.0.0.1:{free_port()}"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(5)  # in its start-up, trying to reach NATS
        assert api.poll() is None, log_path.read_text()
        asked = time.monotonic()
        api.send_signal(signal.SIGTERM)
        # uvicorn, having shut down, re-raises the signal it caught: the exit status says SIGTERM.
        assert api.wait(timeout=10) in (0, -signal.SIGTERM), log_path.read_text()
        assert time.monotonic() - asked < 3
        output = log_path.read_text()
        assert "told to stop while waiting for NATS" in output
        assert "Traceback" not in output and "startup failed" not in output
    finally:
        _stop(api, 1)


def test_an_actor_told_to_stop_leaves_nats_without_a_warning(tmp_path: Path) -> None:
    """Closing its own connection is not a lost connection: a clean stop logged one WARNING per
    replica ("nats: disconnected"), which operators learn to read as trouble."""
    nats_process, nats_url = start_nats_server(tmp_path / "nats", port=free_port())
    log_path = tmp_path / "converter.log"
    try:
        with log_path.open("wb") as log:
            actor = subprocess.Popen(
                [sys.executable, "-m", "tuneforge", "actor", "converter", "--no-checks"],
                env=clean_env(TUNEFORGE_NATS_URL=nats_url, TUNEFORGE_DATA_DIR=str(tmp_path / "data")),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while "ready" not in log_path.read_text() and time.monotonic() < deadline and actor.poll() is None:
            time.sleep(0.2)
        assert actor.poll() is None, log_path.read_text()
        actor.send_signal(signal.SIGTERM)
        actor.wait(timeout=15)
        lines = log_path.read_text().splitlines()
        assert any("nats: disconnected" in line for line in lines), lines  # said, at INFO
        assert not any("nats: disconnected" in line and "WARNING" in line for line in lines), lines
    finally:
        _stop(actor, 1)
        _stop(nats_process)


def test_the_api_stops_within_seconds_after_idling(tmp_path: Path) -> None:
    # It used to drain its NATS connection, which could wait 30 s on the event recorder's pull
    # subscription (a race at each 5-s fetch: about 1 stop in 3 after 10 s idle, 2 in 3 after 45 s).
    nats_process, nats_url = start_nats_server(tmp_path / "nats", port=free_port())
    api, _ = start_api(nats_url, tmp_path)
    try:
        time.sleep(11)  # the event recorder's 5-s fetch has expired twice: each may leave the hang
        asked = time.monotonic()
        api.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            api.wait(timeout=5)
        assert api.poll() is not None and time.monotonic() - asked < 3
    finally:
        _stop(api, 1)
        _stop(nats_process)


def test_a_second_stack_on_the_same_data_folder_is_refused(tmp_path: Path) -> None:
    """Two nats-servers on one store numbered their messages alike and left it corrupt (a second
    `tuneforge up` on the same --data-dir). The store is locked for as long as its server runs."""
    first, _ = start_nats_server(tmp_path / "nats", port=free_port())
    try:
        with pytest.raises(
            RuntimeError, match=f"in use by another TuneForge \\(nats-server pid {first.pid}\\)"
        ):
            start_nats_server(tmp_path / "nats", port=free_port())
        second_up = subprocess.run(
            [
                sys.executable,
                "-m",
                "tuneforge",
                "up",
                "--port",
                str(free_port()),
                "--data-dir",
                str(tmp_path),
            ],
            env={k: v for k, v in os.environ.items() if k != "TUNEFORGE_NATS_URL"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second_up.returncode == 1 and "in use by another TuneForge" in second_up.stderr, second_up
    finally:
        _stop(first)
    again, _ = start_nats_server(tmp_path / "nats", port=free_port())  # free once the first has stopped
    _stop(again)


def test_a_stopping_api_ends_open_event_streams_cleanly(tmp_path: Path) -> None:
    """A browser watching a job while the API restarts: the stream ended in a cut connection after
    the server's 5-s grace (and a traceback in its log); now it ends cleanly and the API stops."""
    nats_process, nats_url = start_nats_server(tmp_path / "nats", port=free_port())
    api, url = start_api(nats_url, tmp_path)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            job = client.post("/jobs", json={"notes": [[440.0]]}).json()  # no actors: it stays queued
            with client.stream("GET", f"/jobs/{job['id']}/events") as stream:
                lines = stream.iter_lines()
                assert next(lines).startswith(("event:", "id:", ":"))  # the stream is open
                asked = time.monotonic()
                api.send_signal(signal.SIGTERM)
                rest = list(lines)  # ends without an error: a clean end of the chunked body
            assert time.monotonic() - asked < 3, rest
        api.wait(timeout=5)
        assert time.monotonic() - asked < 4
    finally:
        _stop(api, 1)
        _stop(nats_process)
