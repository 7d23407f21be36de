"""Nothing is lost: an exporter replica killed mid-render, and the job still completes, once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest
from nats.js import JetStreamContext

from tests.conftest import REPO_ROOT, _stop
from tests.test_nats_interface import collect
from tuneforge.actors.converter.convert import score_to_midi
from tuneforge.contracts.jobs import ExportJob, RenderOptions
from tuneforge.contracts.music import Note, Score, Track
from tuneforge.embedded import free_port, start_nats_server
from tuneforge.storage.blobs import open_blob_store


def dense_piece(seconds: float, voices: int) -> Score:
    """Long held string chords: enough synthesis work to catch a replica in the middle of it."""
    beats = seconds * 2  # 120 bpm
    tracks = [
        Track(
            instrument="string_ensemble_1",
            notes=[
                Note(pitch=48 + 3 * v, start_beats=b, duration_beats=4.0) for b in range(0, int(beats), 4)
            ],
        )
        for v in range(voices)
    ]
    return Score(tracks=tracks[:15], tempo_bpm=120)


def start_process(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def start_exporter(nats_url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TUNEFORGE_NATS_URL": nats_url,
        "TUNEFORGE_DATA_DIR": str(data_dir),
        "NUMBA_CACHE_DIR": str(REPO_ROOT / ".venv" / "numba-cache"),
    }
    return start_process([sys.executable, "-m", "tuneforge", "actor", "exporter"], env)


async def wait_for_instances(
    nc: nats.aio.client.Client, service: str, count: int, timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(await collect(nc, f"$SRV.PING.{service}")) >= count:
            return
    raise AssertionError(f"{service}: fewer than {count} instances")


async def long_render_underway(
    nats_url: str, tmp_path: Path, replicas: dict[int, subprocess.Popen[bytes]]
) -> tuple[nats.aio.client.Client, JetStreamContext, Any, str, int]:
    """Two exporter replicas and a 10-minute render job, 5 % done: (client, JetStream, the job's
    event subscription, job id, pid of the replica rendering it)."""
    for _ in range(2):
        process = start_exporter(nats_url, tmp_path)
        replicas[process.pid] = process
    nc = await nats.connect(nats_url)
    await wait_for_instances(nc, "tuneforge-exporter", 2)
    js = nc.jetstream()
    store = open_blob_store("", tmp_path)
    midi = await store.put_bytes(score_to_midi(dense_piece(600.0, 12)), "midi", "mid", "audio/midi")
    job_id = str(uuid.uuid4())
    events = await js.subscribe(f"tuneforge.events.{job_id}", ordered_consumer=True)
    job = ExportJob(job_id=job_id, midi=midi, options=RenderOptions(sample_rate_hz=22050))
    await js.publish("tuneforge.jobs.export", msgspec.json.encode(job))
    while True:
        event = json.loads((await events.next_msg(timeout=30)).data)
        assert event["event"] == "progress", event
        if event["stage"] == "rendering" and event["percent"] >= 5:
            worker = int(event["worker"].rsplit(":", 1)[1])
            assert worker in replicas
            return nc, js, events, job_id, worker


@pytest.mark.slow
async def test_killed_exporter_mid_render_the_job_completes_once(tmp_path: Path) -> None:
    nats_process, nats_url = start_nats_server(tmp_path / "nats", port=free_port())
    replicas: dict[int, subprocess.Popen[bytes]] = {}
    try:
        # Kill the replica rendering the job once it is well into the work.
        nc, js, events, job_id, victim = await long_render_underway(nats_url, tmp_path, replicas)
        os.kill(victim, signal.SIGKILL)
        replicas[victim].wait()
        survivor = next(pid for pid in replicas if pid != victim)

        # The other replica gets the job once the dead one's ack deadline passes, and finishes it.
        finals, workers_after_kill = [], set()
        deadline = time.monotonic() + 120
        while not finals and time.monotonic() < deadline:
            event = json.loads((await events.next_msg(timeout=60)).data)
            if event["event"] == "progress" and event["stage"] == "rendering" and event["percent"] == 0:
                workers_after_kill.add(int(event["worker"].rsplit(":", 1)[1]))
            if event["event"] in ("done", "failed"):
                finals.append(event)
        assert finals and finals[0]["event"] == "done", finals
        assert survivor in workers_after_kill
        assert finals[0]["result"]["duration_seconds"] >= 600.0

        # Once: the stream holds exactly one final event for the job, and the work queue is empty.
        await asyncio.sleep(2)
        info = await js.stream_info("TUNEFORGE_EVENTS", subjects_filter=f"tuneforge.events.{job_id}")
        history = await js.subscribe(f"tuneforge.events.{job_id}", ordered_consumer=True)
        kinds = []
        for _ in range(info.state.messages):
            kinds.append(json.loads((await history.next_msg(timeout=5)).data)["event"])
        assert kinds.count("done") == 1 and "failed" not in kinds
        assert (await js.stream_info("TUNEFORGE_JOBS")).state.messages == 0
        await nc.drain()
    finally:
        for process in replicas.values():
            _stop(process)
        _stop(nats_process)


@pytest.mark.slow
async def test_a_job_whose_workers_all_die_is_reported_failed(tmp_path: Path) -> None:
    """Every delivery's worker is killed: after the last one the job is `failed`, with the reason."""
    from tuneforge.infra.jetstream import consumer_definition

    max_deliver = consumer_definition("exporter")["max_deliver"]
    nats_process, nats_url = start_nats_server(tmp_path / "nats", port=free_port())
    port = free_port()
    env = {**os.environ, "TUNEFORGE_NATS_URL": nats_url, "TUNEFORGE_DATA_DIR": str(tmp_path)}
    api = start_process([sys.executable, "-m", "tuneforge", "api", "--port", str(port)], env)
    exporters: list[subprocess.Popen[bytes]] = []
    try:
        from tuneforge.embedded import wait_for_port

        wait_for_port("127.0.0.1", port, 60, api)
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        midi = score_to_midi(dense_piece(600.0, 12))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            created = await client.post(
                "/jobs?sample_rate_hz=22050", content=midi, headers={"content-type": "audio/midi"}
            )
            assert created.status_code == 202, created.text
            job_id = created.json()["id"]
            events = await js.subscribe(f"tuneforge.events.{job_id}", ordered_consumer=True)
            for attempt in range(1, max_deliver + 1):
                exporter = start_exporter(nats_url, tmp_path)
                exporters.append(exporter)
                while True:  # this attempt's worker announces itself, then dies mid-render
                    event = json.loads((await events.next_msg(timeout=60)).data)
                    if (
                        event["event"] == "progress"
                        and event["stage"] == "rendering"
                        and event["percent"] > 0
                    ):
                        break
                assert int(event["worker"].rsplit(":", 1)[1]) == exporter.pid, f"attempt {attempt}"
                exporter.kill()
                exporter.wait()
            # The server reports max deliveries when a pull comes after the last ack deadline: a
            # healthy replica (restarted by the supervisor, say) pulls, and must not get the job.
            exporters.append(start_exporter(nats_url, tmp_path))
            deadline = time.monotonic() + 60
            job = (await client.get(f"/jobs/{job_id}")).json()
            while job["status"] != "failed" and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                job = (await client.get(f"/jobs/{job_id}")).json()
        assert job["status"] == "failed", job
        assert job["error"]["code"] == 500
        assert f"failed on all {max_deliver} attempts" in job["error"]["message"]
        assert (await js.stream_info("TUNEFORGE_JOBS")).state.messages == 0  # not left in the queue
        await nc.drain()
    finally:
        for process in (*exporters, api):
            _stop(process)
        _stop(nats_process)


async def test_a_replica_on_another_blob_store_never_fails_a_job_as_bad_input(tmp_path: Path) -> None:
    """An exporter configured with another blob store cannot read the job's MIDI: the job is retried
    (a well-configured replica would take it), and with none it fails as an internal error naming
    the cause, never as the user's bad input. A direct request with that reference is a 400."""
    from tuneforge.infra.jetstream import consumer_definition

    nats_process, nats_url = start_nats_server(tmp_path / "nats", port=free_port())
    misconfigured = start_exporter(nats_url, tmp_path / "elsewhere")
    try:
        nc = await nats.connect(nats_url)
        await wait_for_instances(nc, "tuneforge-exporter", 1)
        js = nc.jetstream()
        store = open_blob_store("", tmp_path)
        midi = await store.put_bytes(score_to_midi(dense_piece(2.0, 1)), "midi", "mid", "audio/midi")

        reply = await nc.request("tuneforge.export", msgspec.json.encode({"midi": midi}), timeout=30)
        assert reply.headers and reply.headers["Nats-Service-Error-Code"] == "400"
        assert "not a blob of this store" in reply.headers["Nats-Service-Error"]

        job_id = str(uuid.uuid4())
        events = await js.subscribe(f"tuneforge.events.{job_id}", ordered_consumer=True)
        job = ExportJob(job_id=job_id, midi=midi, options=RenderOptions(sample_rate_hz=22050))
        await js.publish("tuneforge.jobs.export", msgspec.json.encode(job))
        attempts, final = 0, None
        while final is None:  # back-off between tries: 2, 4, 8 s
            event = json.loads((await events.next_msg(timeout=40)).data)
            if event["event"] == "progress" and event["percent"] == 0:
                attempts += 1
            elif event["event"] in ("done", "failed"):
                final = event
        assert attempts == consumer_definition("exporter")["max_deliver"]
        assert final["event"] == "failed" and final["error"]["code"] == 500, final
        message = final["error"]["message"]
        assert "TUNEFORGE_BLOB_URL" in message and "not a blob of this store" in message
        # `nats micro stats` shows the consumer's work, which the request counters do not see.
        await asyncio.sleep(0.5)
        stats = json.loads((await nc.request("$SRV.STATS.tuneforge-exporter", b"", timeout=5)).data)
        jobs = stats["endpoints"][0]["data"]["jobs"]
        assert jobs["received"] == attempts and jobs["retried"] == attempts - 1 and jobs["failed"] == 1
        assert jobs["done"] == 0 and jobs["in_flight"] == 0 and "TUNEFORGE_BLOB_URL" in jobs["last_error"]
        await nc.drain()
    finally:
        _stop(misconfigured)
        _stop(nats_process)


def test_a_dead_replicas_partial_files_are_removed_when_a_replica_starts(tmp_path: Path) -> None:
    import socket

    from tuneforge.actors.runtime import worker_dir

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid names a process that is gone, like a replica killed mid-render
    host = socket.gethostname()
    dead = tmp_path / "work" / f"exporter-{host}-{finished.pid}"
    living = tmp_path / "work" / f"exporter-{host}-{os.getppid()}"  # pytest's parent is alive
    other_host = tmp_path / "work" / f"exporter-elsewhere-{finished.pid}"  # not ours to judge
    for folder in (dead, living, other_host):
        folder.mkdir(parents=True)
        (folder / "partial.wav").write_bytes(b"RIFF")
    own = worker_dir(tmp_path, "exporter")
    assert own == tmp_path / "work" / f"exporter-{host}-{os.getpid()}" and own.is_dir()
    assert not dead.exists()
    assert (living / "partial.wav").exists() and (other_host / "partial.wav").exists()


@pytest.mark.slow
async def test_a_stopped_exporter_gives_its_job_back_at_once(tmp_path: Path) -> None:
    """SIGTERM mid-render (a scale-down, a deploy): the replica gives the job back and exits within
    seconds; another replica starts it at once, not after the 15-s ack deadline."""
    nats_process, nats_url = start_nats_server(tmp_path / "nats", port=free_port())
    replicas: dict[int, subprocess.Popen[bytes]] = {}
    try:
        nc, _, events, _, victim = await long_render_underway(nats_url, tmp_path, replicas)
        stopped_at = time.monotonic()
        os.kill(victim, signal.SIGTERM)
        survivor = next(pid for pid in replicas if pid != victim)
        while True:
            event = json.loads((await events.next_msg(timeout=30)).data)
            if event["event"] == "progress" and event["percent"] == 0:
                assert int(event["worker"].rsplit(":", 1)[1]) == survivor
                break
        assert time.monotonic() - stopped_at < 8.0  # the ack deadline alone is 15 s
        replicas[victim].wait(timeout=8.0)  # exited, not held by its render thread until killed
        await nc.drain()
    finally:
        for process in replicas.values():
            _stop(process)
        _stop(nats_process)


def test_a_replica_stopped_while_it_warms_up_exits_at_once(tmp_path: Path) -> None:
    """A mood replica's first start compiles librosa's numba code (10 s and more on an empty
    cache); told to stop meanwhile, it exits at once instead of waiting for the compilation."""
    nats_process, nats_url = start_nats_server(tmp_path / "nats", port=free_port())
    env = {
        **os.environ,
        "TUNEFORGE_NATS_URL": nats_url,
        "TUNEFORGE_DATA_DIR": str(tmp_path),
        "NUMBA_CACHE_DIR": str(tmp_path / "empty-numba-cache"),
    }
    mood = subprocess.Popen(
        [sys.executable, "-m", "tuneforge", "actor", "mood"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        time.sleep(4.0)  # connected to NATS, into the warm-up
        assert mood.poll() is None
        asked = time.monotonic()
        mood.send_signal(signal.SIGTERM)
        mood.wait(timeout=8.0)
        assert time.monotonic() - asked < 4.0
        assert mood.stderr is not None and b"Traceback" not in mood.stderr.read()
    finally:
        _stop(mood)
        _stop(nats_process)
