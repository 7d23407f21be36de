"""Running TuneForge: missing actors answer 503, slow ones 504, and Ctrl-C stops everything cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nats
import pytest

from tests.conftest import REPO_ROOT, Stack, _stop, is_ready
from tuneforge.embedded import free_port, start_nats_server, wait_for_port


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
            if is_ready(f"http://127.0.0.1:{port}"):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the stack did not become healthy")
        children = [int(p) for p in Path(f"/proc/{up.pid}/task/{up.pid}/children").read_text().split()]
        assert len(children) >= 4  # nats-server, the actors, the API
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=40) == 0
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
