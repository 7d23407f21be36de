"""A retrained mood model is not answered from moods its predecessor computed and the API cached.

The mood actor advertises its model's version in `$SRV.INFO` metadata; the API keys cached moods
(and renders that include a mood) by it. Here one stack runs with no mood replica of its own; the
test runs the mood actor itself, first with a model copy versioned `test-a`, then with `test-b`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from tests.conftest import REPO_ROOT, Stack, _stop, start_stack
from tests.test_pipeline_http import unique_score, wait_done
from tests.test_worker_death import start_process, wait_for_instances
from tuneforge.actors.mood.model import MODEL_DIR
from tuneforge.contracts.mood import MOOD_MODEL_METADATA_KEY
from tuneforge.embedded import free_port, start_nats_server

pytestmark = pytest.mark.skipif(not (MODEL_DIR / "model.json").is_file(), reason="no trained mood model")

SCORE = {
    "tempo_bpm": 132,
    "tracks": [
        {
            "instrument": 0,
            "notes": [
                {"pitch": p, "start_beats": i / 2, "duration_beats": 0.5}
                for i, p in enumerate([60, 64, 67, 72] * 6)
            ],
        }
    ],
}


def model_copy(directory: Path, version: str) -> Path:
    """The committed model under another version name (same weights)."""
    directory.mkdir()
    for name in ("model.onnx", "model_midi.onnx"):
        shutil.copy(MODEL_DIR / name, directory / name)
    meta = json.loads((MODEL_DIR / "model.json").read_text())
    (directory / "model.json").write_text(json.dumps({**meta, "version": version}))
    return directory


@pytest.fixture
def moodless_stack(tmp_path: Path) -> Iterator[tuple[Stack, str]]:
    nats_process, nats_url = start_nats_server(tmp_path / "nats", port=free_port())
    (tmp_path / "stack").mkdir()
    first = start_mood_actor(nats_url, tmp_path, model_copy(tmp_path / "model-a", "test-a"))
    try:
        # Readiness waits for a healthy mood service: the one started above.
        stack = start_stack("moodless", tmp_path / "stack", nats_url, {}, ("--moods", "0"))
    except BaseException:
        _stop(first)
        _stop(nats_process)
        raise
    _stop(first)
    yield stack, nats_url
    _stop(stack.process, 30)
    _stop(nats_process)


def start_mood_actor(nats_url: str, data_dir: Path, model_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TUNEFORGE_NATS_URL": nats_url,
        "TUNEFORGE_DATA_DIR": str(data_dir / "stack"),
        "TUNEFORGE_MOOD_MODEL_DIR": str(model_dir),
        "NUMBA_CACHE_DIR": str(REPO_ROOT / ".venv" / "numba-cache"),
    }
    return start_process([sys.executable, "-m", "tuneforge", "actor", "mood"], env)


async def advertised_model(nats_url: str) -> str:
    nc = await nats.connect(nats_url)
    try:
        await wait_for_instances(nc, "tuneforge-mood", 1)
        info = json.loads((await nc.request("$SRV.INFO.tuneforge-mood", b"", timeout=5)).data)
    finally:
        await nc.drain()
    return str(info["metadata"][MOOD_MODEL_METADATA_KEY])


async def test_a_new_model_version_is_not_answered_from_the_cache(
    moodless_stack: tuple[Stack, str], tmp_path: Path
) -> None:
    stack, nats_url = moodless_stack
    moods: dict[str, dict[str, str]] = {}
    for version in ("test-a", "test-b"):
        actor = start_mood_actor(nats_url, tmp_path, model_copy(tmp_path / f"served-{version}", version))
        try:
            assert await advertised_model(nats_url) == version
            with stack.client(timeout=120) as client:
                rendered = client.post("/get_mood", json=SCORE)
                assert rendered.status_code == 200, rendered.text
                wav = client.post("/download", json=SCORE)
                assert wav.status_code == 200, wav.text
                uploaded = client.post("/mood", content=wav.content, headers={"Content-Type": "audio/wav"})
                assert uploaded.status_code == 200, uploaded.text
                again = client.post("/mood", content=wav.content, headers={"Content-Type": "audio/wav"})
            moods[version] = {
                "rendered": rendered.json()["model"],
                "uploaded": uploaded.json()["model"],
                "again": again.json()["model"],
            }
        finally:
            _stop(actor)
    assert moods["test-a"] == {
        "rendered": "audio_midi@test-a",
        "uploaded": "audio@test-a",
        "again": "audio@test-a",
    }
    assert moods["test-b"] == {
        "rendered": "audio_midi@test-b",
        "uploaded": "audio@test-b",
        "again": "audio@test-b",
    }


def test_a_job_waiting_for_a_mood_replica_is_analysing_not_rendering(
    moodless_stack: tuple[Stack, str], tmp_path: Path
) -> None:
    """Once rendered, a job waiting for a free mood replica says so; the wait is not render time."""
    stack, nats_url = moodless_stack
    score = {**unique_score(seconds=3.0, pitch="C4", instrument=0), "options": {"analyze_mood": True}}
    with stack.client(timeout=120) as client:
        job = client.post("/jobs", json=score)
        assert job.status_code in (200, 201, 202), job.text
        job_id = job.json()["id"]
        deadline = time.monotonic() + 60
        while (status := client.get(f"/jobs/{job_id}").json())["stage"] != "analyzing":
            assert status["status"] != "failed" and time.monotonic() < deadline, status
            time.sleep(0.2)
        time.sleep(3)  # no mood replica: the job waits
        waiting = client.get(f"/jobs/{job_id}").json()
        assert (waiting["status"], waiting["stage"], waiting["percent"]) == ("running", "analyzing", 0)
        assert waiting["timings"]["rendering"] == status["timings"]["rendering"] < 3
        actor = start_mood_actor(nats_url, tmp_path, MODEL_DIR)
        try:
            done = wait_done(client, job_id, timeout_s=120)
        finally:
            _stop(actor)
    assert done["status"] == "done", done
    assert done["result"]["mood"]["label"] in ("happy", "tense", "sad", "calm")
    assert done["timings"]["rendering"] == status["timings"]["rendering"]
    assert done["timings"]["analyzing"] > 3
