"""The converter actor process: NATS micro service `tuneforge-converter` and its job consumer.

- `tuneforge.convert` (request-reply): Score or Grid JSON → `ConvertReply` with the MIDI blob;
- durable jobs on `tuneforge.jobs.convert`: the stored Score → MIDI, handed on to the exporter.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.micro import add_service

from tuneforge.actors.converter.convert import score_to_midi
from tuneforge.actors.runtime import (
    WORKER_ID,
    BadInput,
    EventPublisher,
    connect,
    micro_handler,
    run_consumer,
    shut_down,
)
from tuneforge.contracts.jobs import MIDI_CONTENT_TYPE, ConvertJob, ConvertReply, ExportJob, jobs_subject
from tuneforge.contracts.limits import MAX_UPLOAD_BYTES
from tuneforge.contracts.music import MusicError, Score, decode_music
from tuneforge.settings import Settings
from tuneforge.storage.blobs import BlobNotFound, BlobStore, open_blob_store

log = logging.getLogger(__name__)
VERSION = "0.1.0"


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


async def serve(settings: Settings, concurrency: int = 2) -> None:
    blobs = open_blob_store(settings.blob_url, settings.data_dir)
    client, js = await connect(settings.nats_url, "tuneforge-converter")
    converter = Converter(blobs)
    events = EventPublisher(js)
    service = await add_service(
        client, name="tuneforge-converter", version=VERSION, description="Score or Grid → Standard MIDI File"
    )
    await service.add_endpoint(
        name="convert", subject="tuneforge.convert", handler=micro_handler(converter.handle_request)
    )

    async def handle_job(msg: Msg) -> None:
        job = msgspec.json.decode(msg.data, type=ConvertJob)
        await events.progress(job.job_id, "converting", 0.0, WORKER_ID)
        try:
            score_json = await blobs.read_bytes(job.score, max_bytes=MAX_UPLOAD_BYTES)
        except BlobNotFound as error:
            raise BadInput(str(error)) from None
        try:
            score = decode_music(score_json)
        except MusicError as error:
            raise BadInput(str(error)) from None
        reply = await converter.convert(score)
        await events.progress(job.job_id, "converting", 100.0, WORKER_ID)
        await _hand_on(js, ExportJob(job_id=job.job_id, midi=reply.midi, options=job.options))
        await msg.ack()

    stopping = asyncio.Event()
    log.info("tuneforge-converter %s ready (service id %s)", VERSION, service.id)
    try:
        await run_consumer(js, "converter", handle_job, events, "converting", concurrency, stopping)
    finally:
        stopping.set()
        await shut_down(service, client)
        await blobs.close()


async def _hand_on(js: JetStreamContext, job: ExportJob) -> None:
    # The message id makes a re-run of this stage after a crash a duplicate the server drops.
    await js.publish(
        jobs_subject("export"), msgspec.json.encode(job), headers={"Nats-Msg-Id": f"{job.job_id}:export"}
    )
