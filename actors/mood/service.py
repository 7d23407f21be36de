"""The mood actor process: NATS micro service `tuneforge-mood` and its job consumer.

- `tuneforge.mood` (request-reply): `MoodRequest` (`{"audio": BlobRef, "midi": BlobRef?}`) → `Mood`;
- durable jobs on `tuneforge.jobs.mood`: the last stage of a render job with `analyze_mood`;
  progress `analyzing` 0 → 100, then the job's `done` event with the mood in its result.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tuneforge.actors.mood.analyze import AudioError, analyze, warm_up
from tuneforge.actors.mood.model import MODEL_DIR, MoodModel, load_model
from tuneforge.actors.runtime import (
    ActorSpec,
    BadInput,
    EventPublisher,
    ProgressReporter,
    UnreadableBlob,
    in_daemon_thread,
    run_actor,
    scratch_file,
    worker_dir,
)
from tuneforge.contracts.jobs import JobResult, MoodJob
from tuneforge.contracts.limits import MAX_MIDI_BYTES
from tuneforge.contracts.mood import MOOD_MODEL_METADATA_KEY, Mood, MoodRequest
from tuneforge.settings import Settings
from tuneforge.storage.blobs import BlobNotFound, BlobStore, open_blob_store

log = logging.getLogger(__name__)
SPEC = ActorSpec(
    service="tuneforge-mood",
    description="Audio (+ MIDI) → mood: valence, arousal and a quadrant label (happy, tense, sad, calm)",
    endpoint="mood",
    subject="tuneforge.mood",
    durable="mood",
    stage="analyzing",
)
RESULT_MEMORY = 256  # recent results kept per process, by audio (and MIDI) sha256


class MoodAnalyzer:
    """Audio blob (+ MIDI blob) → `Mood`; the work shared by the endpoint and the job consumer."""

    def __init__(self, blobs: BlobStore, model: MoodModel, work_dir: Path) -> None:
        self.blobs = blobs
        self.model = model
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        self._slots = asyncio.Semaphore(max(1, os.cpu_count() or 1))
        self._recent: collections.OrderedDict[str, Mood] = collections.OrderedDict()

    async def analyze(self, request: MoodRequest, on_progress: Callable[[float], None] | None = None) -> Mood:
        # The blobs are read (and checked against their sha256) before any remembered result is
        # used: a reference that names no blob, or other content, gets an error, not a mood.
        try:
            midi = (
                await self.blobs.read_bytes(request.midi, max_bytes=MAX_MIDI_BYTES) if request.midi else None
            )
        except BlobNotFound as error:
            raise UnreadableBlob(str(error)) from None
        except ValueError as error:
            raise BadInput(str(error)) from None
        key = f"{request.audio.sha256}:{request.midi.sha256 if request.midi else '-'}"
        suffix = PurePosixPath(urlparse(request.audio.uri).path).suffix[:8] or ".audio"
        async with scratch_file(self.work_dir, suffix) as path:
            try:
                await self.blobs.download_to(request.audio, path)
            except BlobNotFound as error:
                raise UnreadableBlob(str(error)) from None
            if key in self._recent:
                self._recent.move_to_end(key)
                return self._recent[key]
            async with self._slots:
                try:
                    mood = await asyncio.to_thread(analyze, path, midi, self.model, on_progress)
                except (AudioError, ValueError) as error:
                    raise BadInput(str(error)) from None
        self._recent[key] = mood
        if len(self._recent) > RESULT_MEMORY:
            self._recent.popitem(last=False)
        return mood

    async def handle_request(self, data: bytes) -> Mood:
        return await self.analyze(msgspec.json.decode(data, type=MoodRequest))

    async def handle_job(self, msg: Msg, js: JetStreamContext, events: EventPublisher) -> None:
        job = msgspec.json.decode(msg.data, type=MoodJob)
        if job.midi is None:
            raise BadInput("a mood job finishes a render job: it needs the MIDI the audio was rendered from")
        await events.progress(job.job_id, "analyzing", 0.0)
        progress = ProgressReporter(events, job.job_id, "analyzing")
        try:
            mood = await self.analyze(MoodRequest(audio=job.audio, midi=job.midi), progress.report)
        finally:
            await progress.close()
        await events.progress(job.job_id, "analyzing", 100.0)
        result = JobResult(
            midi=job.midi,
            audio=job.audio,
            duration_seconds=job.duration_seconds,
            sample_rate_hz=job.options.sample_rate_hz,
            format=job.options.format,
            mood=mood,
            silent_notes=job.silent_notes,
        )
        await events.done(job.job_id, result)
        await msg.ack()


async def serve(settings: Settings, concurrency: int = 1) -> None:
    blobs = open_blob_store(settings.blob_url, settings.data_dir)
    started = time.perf_counter()
    model = await in_daemon_thread(load_model, settings.mood_model_dir or MODEL_DIR)
    # numba JIT (librosa) is a start-up cost, not a request cost; cached under NUMBA_CACHE_DIR.
    await in_daemon_thread(warm_up, model)
    log.info(
        "mood model %s loaded and librosa warmed up in %.1f s", model.version, time.perf_counter() - started
    )
    analyzer = MoodAnalyzer(blobs, model, worker_dir(settings.data_dir, "mood"))
    try:
        # The model's version is advertised so that the API can key its cached moods by it.
        await run_actor(
            SPEC,
            settings.nats_url,
            analyzer.handle_request,
            analyzer.handle_job,
            concurrency,
            metadata={MOOD_MODEL_METADATA_KEY: model.version},
        )
    finally:
        await blobs.close()
