"""The converter actor process: NATS micro service `tuneforge-converter` and its job consumer.

- `tuneforge.convert` (request-reply): Score or Grid JSON → `ConvertReply` with the MIDI blob;
- durable jobs on `tuneforge.jobs.convert`: the stored Score → MIDI, handed on to the exporter.
"""

from __future__ import annotations

import asyncio

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tuneforge.actors.converter.convert import score_to_midi
from tuneforge.actors.runtime import ActorSpec, BadInput, EventPublisher, UnreadableBlob, run_actor
from tuneforge.contracts.jobs import MIDI_CONTENT_TYPE, ConvertJob, ConvertReply, ExportJob, jobs_subject
from tuneforge.contracts.limits import MAX_UPLOAD_BYTES
from tuneforge.contracts.music import MusicError, Score, decode_music
from tuneforge.settings import Settings
from tuneforge.storage.blobs import BlobNotFound, BlobStore, open_blob_store

SPEC = ActorSpec(
    service="tuneforge-converter",
    description="Score or Grid → Standard MIDI File",
    endpoint="convert",
    subject="tuneforge.convert",
    durable="converter",
    stage="converting",
)


class Converter:
    """Score → MIDI blob; the work shared by the endpoint and the job consumer."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    async def convert(self, score: Score) -> ConvertReply:
        midi = await asyncio.to_thread(score_to_midi, score)
        ref = await self.blobs.put_bytes(midi, "midi", "mid", MIDI_CONTENT_TYPE)
        return ConvertReply(
            midi=ref,
            tracks=len(score.tracks),
            notes=score.note_count,
            duration_seconds=round(score.duration_seconds, 6),
            tempo_bpm=score.tempo_bpm,
        )

    async def handle_request(self, data: bytes) -> ConvertReply:
        try:
            score = decode_music(data)
        except MusicError as error:
            raise BadInput(str(error)) from None
        return await self.convert(score)

    async def handle_job(self, msg: Msg, js: JetStreamContext, events: EventPublisher) -> None:
        job = msgspec.json.decode(msg.data, type=ConvertJob)
        await events.progress(job.job_id, "converting", 0.0)
        try:
            score = decode_music(await self.blobs.read_bytes(job.score, max_bytes=MAX_UPLOAD_BYTES))
        except BlobNotFound as error:
            raise UnreadableBlob(str(error)) from None
        except MusicError as error:
            raise BadInput(str(error)) from None
        reply = await self.convert(score)
        await events.progress(job.job_id, "converting", 100.0)
        export = ExportJob(job_id=job.job_id, midi=reply.midi, options=job.options)
        # The message id makes a re-run of this stage after a crash a duplicate the server drops.
        await js.publish(
            jobs_subject("export"),
            msgspec.json.encode(export),
            headers={"Nats-Msg-Id": f"{job.job_id}:export"},
        )
        await msg.ack()


async def serve(settings: Settings, concurrency: int = 2) -> None:
    blobs = open_blob_store(settings.blob_url, settings.data_dir)
    converter = Converter(blobs)
    try:
        await run_actor(SPEC, settings.nats_url, converter.handle_request, converter.handle_job, concurrency)
    finally:
        await blobs.close()
