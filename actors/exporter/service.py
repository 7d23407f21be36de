"""The exporter actor process: NATS micro service `tuneforge-exporter` and its job consumer.

- `tuneforge.export` (request-reply): `ExportRequest` → `ExportReply` with the audio blob;
- durable jobs on `tuneforge.jobs.export`: render with progress, then hand the job to the
  mood actor or finish it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tuneforge.actors.exporter.keyranges import SoundFontError, silent_notes, soundfont_presets
from tuneforge.actors.exporter.render import Renderer, RenderError
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
from tuneforge.contracts.jobs import (
    AUDIO_CONTENT_TYPES,
    ExportJob,
    ExportReply,
    ExportRequest,
    JobResult,
    MoodJob,
    SilentNotes,
    jobs_subject,
)
from tuneforge.contracts.limits import MAX_DURATION_SECONDS, MAX_MIDI_BYTES
from tuneforge.contracts.midi import MidiError, parse_midi, renderable_midi
from tuneforge.settings import Settings
from tuneforge.storage.blobs import BlobNotFound, BlobStore, open_blob_store

log = logging.getLogger("tuneforge.exporter")

SPEC = ActorSpec(
    service="tuneforge-exporter",
    description="MIDI → audio with FluidSynth and a General MIDI SoundFont",
    endpoint="export",
    subject="tuneforge.export",
    durable="exporter",
    stage="rendering",
)


class Exporter:
    """MIDI blob → audio blob; the work shared by the endpoint and the job consumer."""

    def __init__(self, blobs: BlobStore, renderer: Renderer, work_dir: Path) -> None:
        self.blobs = blobs
        self.renderer = renderer
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        # One render per core at most: libfluidsynth releases the GIL, one synth per thread.
        self._slots = asyncio.Semaphore(default_concurrency())

    async def export(
        self, request: ExportRequest, on_progress: Callable[[float], None] | None = None
    ) -> ExportReply:
        try:
            data = await self.blobs.read_bytes(request.midi, max_bytes=MAX_MIDI_BYTES)
        except BlobNotFound as error:
            raise UnreadableBlob(str(error)) from None
        try:  # parsing a 4-MiB file takes seconds: not on the event loop
            midi, expected_seconds, silent = await asyncio.to_thread(self._prepare, data, request.soundfont)
        except (MidiError, ValueError) as error:
            raise BadInput(str(error)) from None
        async with scratch_file(self.work_dir, f".{request.format}") as out_path:
            async with self._slots:
                try:
                    result = await asyncio.to_thread(
                        self.renderer.render,
                        midi,
                        out_path,
                        request.format,
                        request.sample_rate_hz,
                        request.soundfont,
                        expected_seconds,
                        on_progress,
                    )
                except RenderError as error:
                    raise BadInput(str(error)) from None
            audio = await self.blobs.put_file(
                out_path, "audio", request.format, AUDIO_CONTENT_TYPES[request.format]
            )
        return ExportReply(
            audio=audio,
            duration_seconds=round(result.duration_seconds, 6),
            sample_rate_hz=request.sample_rate_hz,
            format=request.format,
            render_seconds=round(result.render_seconds, 4),
            silent_notes=silent,
        )

    def _prepare(self, data: bytes, soundfont: str) -> tuple[bytes, float, list[SilentNotes]]:
        """The file to render, its length, and the notes the SoundFont cannot sound (none reported
        if its presets cannot be read: the render itself does not depend on them)."""
        parsed = parse_midi(data)
        midi, seconds = renderable_midi(parsed, MAX_DURATION_SECONDS)
        try:
            path = self.renderer.soundfont_path(soundfont)
        except RenderError:
            return midi, seconds, []  # not installed: the render says so
        try:
            presets = soundfont_presets(path)
        except (OSError, SoundFontError) as error:
            log.warning("cannot read the key ranges of %s: %s", path, error)
            return midi, seconds, []
        return midi, seconds, silent_notes(parsed, presets, path.stem)

    async def handle_request(self, data: bytes) -> ExportReply:
        return await self.export(msgspec.json.decode(data, type=ExportRequest))

    async def handle_job(self, msg: Msg, js: JetStreamContext, events: EventPublisher) -> None:
        job = msgspec.json.decode(msg.data, type=ExportJob)
        options = job.options
        request = ExportRequest(
            midi=job.midi,
            format=options.format,
            sample_rate_hz=options.sample_rate_hz,
            soundfont=options.soundfont,
        )
        await events.progress(job.job_id, "rendering", 0.0)
        progress = ProgressReporter(events, job.job_id, "rendering")
        try:
            reply = await self.export(request, progress.report)
        finally:
            await progress.close()
        await events.progress(job.job_id, "rendering", 100.0)
        if options.analyze_mood:
            mood_job = MoodJob(
                job_id=job.job_id,
                midi=job.midi,
                audio=reply.audio,
                duration_seconds=reply.duration_seconds,
                options=options,
                silent_notes=reply.silent_notes,
            )
            # From here the job waits for a mood replica: that is the analysis stage, not rendering
            # (announced before the hand-over, so it cannot arrive after the mood actor's own progress).
            await events.progress(job.job_id, "analyzing", 0.0, "waiting for a mood replica")
            # Message ids make a re-run of this stage after a crash a duplicate the server drops.
            await js.publish(
                jobs_subject("mood"),
                msgspec.json.encode(mood_job),
                headers={"Nats-Msg-Id": f"{job.job_id}:mood"},
            )
        else:
            result = JobResult(
                midi=job.midi,
                audio=reply.audio,
                duration_seconds=reply.duration_seconds,
                sample_rate_hz=reply.sample_rate_hz,
                format=reply.format,
                silent_notes=reply.silent_notes,
            )
            await events.done(job.job_id, result)
        await msg.ack()


def default_concurrency() -> int:
    """Jobs one replica renders at once: one per core (one warm synth per thread), or the env's."""
    return int(os.environ.get("TUNEFORGE_EXPORTER_CONCURRENCY", "0")) or max(1, os.cpu_count() or 1)


async def serve(settings: Settings, concurrency: int | None = None) -> None:
    blobs = open_blob_store(settings.blob_url, settings.data_dir)
    renderer = Renderer(settings.soundfont_dir)
    await in_daemon_thread(renderer.warm_up)  # SoundFont load is a start-up cost, not a request cost
    exporter = Exporter(blobs, renderer, worker_dir(settings.data_dir, "exporter"))
    try:
        await run_actor(
            SPEC,
            settings.nats_url,
            exporter.handle_request,
            exporter.handle_job,
            concurrency or default_concurrency(),
        )
    finally:
        await blobs.close()
        renderer.close()
