"""Render endpoints: `POST /download` (synchronous), `POST /jobs` and everything under `/jobs/{id}`."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any, Literal

import msgspec
import nats
from litestar import Controller, HttpMethod, Request, get, post, route
from litestar.exceptions import ClientException, HTTPException, NotFoundException
from litestar.params import Parameter
from litestar.response import File, Response, ServerSentEvent, ServerSentEventMessage, Stream

from tuneforge.api.backend import Backend, RemoteError, ServiceTimeout, ServiceUnavailable
from tuneforge.api.inputs import read_render_input, refuse_unknown_query
from tuneforge.api.openapi import RenderBodyOperation
from tuneforge.contracts.jobs import (
    AUDIO_CONTENT_TYPES,
    BlobRef,
    Done,
    ExportReply,
    ExportRequest,
    Failed,
    JobEvent,
    JobResult,
    events_subject,
)
from tuneforge.storage.blobs import BlobNotFound, LocalBlobStore
from tuneforge.storage.database import JobRecord

DOWNLOAD_TIMEOUT_S = float(os.environ.get("TUNEFORGE_DOWNLOAD_TIMEOUT_S", "300"))
SSE_KEEPALIVE_S = 15.0
MAX_EVENT_ID = 2**63 - 2  # the largest Last-Event-ID honoured (a start sequence must fit in 64 bits)
EVENT_DECODER = msgspec.json.Decoder(JobEvent)


class Conflict(HTTPException):
    status_code = 409


class Unavailable(HTTPException):
    status_code = 503


class GatewayTimeout(HTTPException):
    status_code = 504


def pipeline_error_response(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """App-wide: a pipeline failure raised anywhere becomes its HTTP status with a JSON detail."""
    mapped = http_error(error)
    return Response(
        {"status_code": mapped.status_code, "detail": mapped.detail}, status_code=mapped.status_code
    )


def http_error(error: Exception) -> HTTPException:
    """The HTTP face of a pipeline failure."""
    if isinstance(error, ServiceUnavailable):
        return Unavailable(str(error))
    if isinstance(error, ServiceTimeout):
        return GatewayTimeout(str(error))
    if isinstance(error, RemoteError):
        if 400 <= error.code < 500:
            return ClientException(error.message)
        return HTTPException(status_code=502, detail=f"an actor failed: {error.message}")
    raise error


def job_links(job_id: str) -> dict[str, str]:
    base = f"/jobs/{job_id}"
    return {
        "self": base,
        "events": f"{base}/events",
        "audio": f"{base}/audio",
        "midi": f"{base}/midi",
        "mood": f"{base}/mood",
        "page": f"/?job={job_id}",
    }


def job_view(job: JobRecord) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "stage": job.stage,
        "percent": job.percent,
        "input_kind": job.input_kind,
        "options": job.options,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "timings": job.timings,
        "error": job.error,
        "from_cache": job.from_cache,
        "result": msgspec.to_builtins(job.result) if job.result else None,
        "links": job_links(job.id),
    }


class RangeNotSatisfiable(HTTPException):
    status_code = 416

    def __init__(self, detail: str, size_bytes: int) -> None:
        super().__init__(detail=detail, extra={"size_bytes": size_bytes})  # for Content-Range


def requested_range(header: str | None, size_bytes: int) -> tuple[int, int] | None:
    """The (first, last) byte of a `Range: bytes=…` header (RFC 9110), None for the whole file.

    One range is served (what a media player asks for, to seek); a header this does not read, or
    several ranges, gets the whole file, as the RFC allows. A range past the end is a 416."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first_text, dash, last_text = header.removeprefix("bytes=").strip().partition("-")
    if (
        not dash
        or not (first_text or last_text)
        or not all(t.isdigit() for t in (first_text, last_text) if t)
    ):
        return None
    if not first_text:  # the last N bytes
        if int(last_text) == 0:
            raise RangeNotSatisfiable(f"bytes=-0 asks for no bytes of a {size_bytes}-byte file", size_bytes)
        return max(0, size_bytes - int(last_text)), size_bytes - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # not a range at all (RFC 9110: ignored)
    if first >= size_bytes:
        raise RangeNotSatisfiable(
            f"bytes {first_text}-{last_text} are not in a {size_bytes}-byte file", size_bytes
        )
    return first, min(int(last_text), size_bytes - 1) if last_text else size_bytes - 1


def range_not_satisfiable_response(request: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    """416 with the file's size in `Content-Range`, as RFC 9110 asks."""
    size = error.extra.get("size_bytes") if isinstance(error.extra, dict) else None
    headers = {"Content-Range": f"bytes */{size}"} if size is not None else {}
    return Response({"status_code": 416, "detail": error.detail}, status_code=416, headers=headers)


async def blob_response(
    backend: Backend, ref: BlobRef, filename: str, media_type: str, range_header: str | None = None
) -> Response[Any]:
    """The blob as a download; a `Range` request (a player seeking) gets its bytes with 206."""
    byte_range = requested_range(range_header, ref.size_bytes)
    try:
        if byte_range is None and isinstance(backend.blobs, LocalBlobStore):
            return File(
                path=backend.blobs.local_path(ref),
                filename=filename,
                media_type=media_type,
                content_disposition_type="attachment",
                headers={"Accept-Ranges": "bytes"},
            )
        first, last = byte_range if byte_range is not None else (0, ref.size_bytes - 1)
        headers = {
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Content-Length": str(last - first + 1),
            "Accept-Ranges": "bytes",
        }
        if byte_range is not None:
            headers["Content-Range"] = f"bytes {first}-{last}/{ref.size_bytes}"
        if isinstance(backend.blobs, LocalBlobStore):
            backend.blobs.local_path(ref)  # a missing file is a 404 now, not a broken stream
        stream: AsyncIterator[bytes] = backend.blobs.stream(ref, first, last - first + 1)
        return Stream(
            stream, media_type=media_type, headers=headers, status_code=200 if byte_range is None else 206
        )
    except BlobNotFound:
        raise NotFoundException("the file of this result is no longer in the blob store") from None


async def finished_job(backend: Backend, job_id: str) -> tuple[JobRecord, JobResult]:
    job = await backend.get_job(job_id)
    if job is None:
        raise NotFoundException(f"no job {job_id}")
    if job.status == "failed":
        raise Conflict(f"job {job_id} failed: {(job.error or {}).get('message')}")
    if job.result is None:
        raise Conflict(f"job {job_id} is {job.status} ({job.stage}, {job.percent:.0f}%): not finished yet")
    return job, job.result


@post(
    "/download",
    status_code=200,
    summary="Render a Grid, a Score or a MIDI file and return the audio",
    operation_class=RenderBodyOperation,
)
async def download(request: Request[Any, Any, Any], backend: Backend) -> Response[Any]:
    """The original TuneForge endpoint: the body (Grid or Score JSON, or a `.mid` upload) → audio file."""
    render = await read_render_input(request)
    try:
        job, result = await backend.render_and_wait(render, DOWNLOAD_TIMEOUT_S)
    except (ServiceUnavailable, ServiceTimeout, RemoteError) as error:
        raise http_error(error) from None
    response = await blob_response(
        backend, result.audio, f"tuneforge.{result.format}", AUDIO_CONTENT_TYPES[result.format]
    )
    response.headers["X-TuneForge-Job"] = job.id
    silent = sum(part.count for part in result.silent_notes)
    if silent:
        # Notes outside the SoundFont's keys for their instrument: GET /jobs/{id} says which.
        response.headers["X-TuneForge-Silent-Notes"] = str(silent)
    return response


class JobController(Controller):
    path = "/jobs"

    @post("/", status_code=202, summary="Queue a render job", operation_class=RenderBodyOperation)
    async def create(self, request: Request[Any, Any, Any], backend: Backend) -> dict[str, Any]:
        """Accept a Grid or Score JSON body (with optional `options`) or a `.mid` upload."""
        render = await read_render_input(request)
        try:
            job = await backend.submit(render)
        except ServiceUnavailable as error:
            raise http_error(error) from None
        return {"id": job.id, "status": job.status, "links": job_links(job.id)}

    @route("/", http_method=[HttpMethod.GET, HttpMethod.HEAD], summary="Recent jobs, newest first")
    async def recent(
        self, backend: Backend, limit: int = Parameter(default=20, ge=1, le=200)
    ) -> dict[str, Any]:
        return {"jobs": [job_view(j) for j in await backend.db.recent_jobs(limit)]}

    @route(
        "/{job_id:str}",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        summary="A job's status, timings, result or error",
    )
    async def status(self, job_id: str, backend: Backend) -> dict[str, Any]:
        job = await backend.get_job(job_id)
        if job is None:
            raise NotFoundException(f"no job {job_id}")
        return job_view(job)

    @route(
        "/{job_id:str}/midi",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        summary="The job's Standard MIDI File",
    )
    async def midi(self, job_id: str, request: Request[Any, Any, Any], backend: Backend) -> Response[Any]:
        refuse_unknown_query(request, set())
        _, result = await finished_job(backend, job_id)
        return await blob_response(
            backend, result.midi, f"tuneforge-{job_id[:8]}.mid", "audio/midi", request.headers.get("range")
        )

    @route(
        "/{job_id:str}/audio",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        summary="The job's audio, in its format or another one",
    )
    async def audio(
        self,
        job_id: str,
        request: Request[Any, Any, Any],
        backend: Backend,
        format: Literal["wav", "flac", "ogg"] | None = None,
    ) -> Response[Any]:
        refuse_unknown_query(request, {"format"})
        job, result = await finished_job(backend, job_id)
        audio, audio_format = result.audio, result.format
        if format is not None and format != result.format:
            audio, audio_format = await self._other_format(backend, job, result, format), format
        filename = f"tuneforge-{job_id[:8]}.{audio_format}"
        return await blob_response(
            backend, audio, filename, AUDIO_CONTENT_TYPES[audio_format], request.headers.get("range")
        )

    async def _other_format(
        self, backend: Backend, job: JobRecord, result: JobResult, audio_format: str
    ) -> BlobRef:
        key = f"{result.midi.sha256}:{audio_format}:{result.sample_rate_hz}:{job.options.get('soundfont')}"
        cached = await backend.cache.get("export", key, BlobRef)
        if cached is not None and await backend.blobs.exists(cached):  # (see Backend.cached_render)
            return cached
        request = ExportRequest(
            midi=result.midi,
            format=audio_format,  # type: ignore[arg-type]
            sample_rate_hz=result.sample_rate_hz,  # type: ignore[arg-type]
            soundfont=job.options.get("soundfont", "fluidr3_gm"),
        )
        try:
            reply: ExportReply = await backend.request("tuneforge.export", request, ExportReply)
        except (ServiceUnavailable, ServiceTimeout, RemoteError) as error:
            raise http_error(error) from None
        await backend.cache.set("export", key, reply.audio)
        return reply.audio

    @get("/{job_id:str}/events", summary="Server-sent progress events: progress…, then done or failed")
    async def events(self, job_id: str, request: Request[Any, Any, Any], backend: Backend) -> ServerSentEvent:
        job = await backend.get_job(job_id)
        if job is None:
            raise NotFoundException(f"no job {job_id}")
        last_id = request.headers.get("last-event-id", "")
        # Bounded: JetStream sequences are 64-bit, and a larger start made the server refuse the stream.
        start_seq = min(int(last_id), MAX_EVENT_ID) + 1 if last_id.isdigit() else 1
        if not job.from_cache:
            _ = backend.jetstream  # 503 now, while a status can still be sent, if NATS is away
        return ServerSentEvent(
            self._event_stream(backend, job, start_seq),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _event_stream(
        self, backend: Backend, job: JobRecord, start_seq: int
    ) -> AsyncIterator[ServerSentEventMessage]:
        if job.from_cache:
            # Answered from the cache: the job never had events of its own.
            yield self._final_from_record(job, start_seq - 1)
            return
        from nats.js.api import ConsumerConfig, DeliverPolicy

        subscription = await backend.jetstream.subscribe(
            events_subject(job.id),
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq),
        )
        try:
            idle_s = 0.0
            record_checked = False
            while not backend.closing:  # a stopping API ends the stream; EventSource reconnects
                try:
                    msg = await subscription.next_msg(timeout=1.0)
                except nats.errors.TimeoutError:
                    idle_s += 1.0
                    if idle_s >= SSE_KEEPALIVE_S:
                        idle_s = 0.0
                        record_checked = False
                        yield ServerSentEventMessage(comment="keep-alive")
                    if not record_checked:
                        # Nothing more in the stream for a finished job: the client has seen its end
                        # already (a reconnect after `done`), or its events expired with the stream's
                        # max age. Either way the record has the final event: answer with it now.
                        record_checked = True
                        record = await backend.db.get_job(job.id)
                        if record is not None and record.status in ("done", "failed"):
                            yield self._final_from_record(record, start_seq - 1)
                            return
                    continue
                idle_s = 0.0
                try:
                    event = EVENT_DECODER.decode(msg.data)
                except msgspec.MsgspecError:
                    continue
                kind = (
                    "progress"
                    if not isinstance(event, Done | Failed)
                    else ("done" if isinstance(event, Done) else "failed")
                )
                yield ServerSentEventMessage(
                    event=kind, data=msgspec.json.encode(event).decode(), id=msg.metadata.sequence.stream
                )
                if kind != "progress":
                    return
        finally:
            # The client may be gone and the connection busy: never hang the response on cleanup.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(subscription.unsubscribe(), 2)

    @staticmethod
    def _final_from_record(job: JobRecord, last_event_id: int) -> ServerSentEventMessage:
        """The job's final event from its record, under the id the client already has (never lower),
        or 1 for a client that has none: every event carries an id."""
        event_id = max(last_event_id, 1)
        if job.status == "done" and job.result is not None:
            event: msgspec.Struct = Done(job_id=job.id, result=job.result, at_unix=job.finished_at or 0.0)
            return ServerSentEventMessage(event="done", data=msgspec.json.encode(event).decode(), id=event_id)
        error = job.error or {"code": 500, "message": "unknown"}
        data = {
            "event": "failed",
            "job_id": job.id,
            "stage": job.stage,
            "error": error,
            "at_unix": job.finished_at,
        }
        return ServerSentEventMessage(event="failed", data=msgspec.json.encode(data).decode(), id=event_id)
