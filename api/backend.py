"""The API's connections and its side of the job pipeline, all over NATS and the storage layer.

`Backend` submits jobs to the JetStream work queue, waits for their events, records every
event in the database (a durable consumer, so no event is lost while the API is down) and
asks actors for request-reply work. It never imports an actor: contracts are the interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Literal

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tuneforge.contracts.jobs import (
    MIDI_CONTENT_TYPE,
    ConvertJob,
    Done,
    ErrorInfo,
    ExportJob,
    Failed,
    JobEvent,
    JobResult,
    Progress,
    RenderOptions,
    Stage,
    events_subject,
    input_key,
    jobs_subject,
)
from tuneforge.contracts.mood import MOOD_MODEL_METADATA_KEY
from tuneforge.contracts.music import Score
from tuneforge.infra.jetstream import apply_definitions
from tuneforge.settings import Settings
from tuneforge.storage.blobs import BlobStore, open_blob_store
from tuneforge.storage.cache import ResultCache
from tuneforge.storage.database import JobDatabase, JobRecord

log = logging.getLogger(__name__)
ACTOR_SERVICES = ("tuneforge-converter", "tuneforge-exporter")
MOOD_SERVICE = "tuneforge-mood"
EVENT_DECODER = msgspec.json.Decoder(JobEvent)


class ServiceUnavailable(RuntimeError):
    """A peer (NATS, an actor service) cannot be reached: HTTP 503."""


class ServiceTimeout(RuntimeError):
    """A peer did not answer in time: HTTP 504."""


class RemoteError(RuntimeError):
    """An actor answered a request with an error reply."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class RenderInput:
    """What to render: a Score, or a Standard MIDI File rendered as it is."""

    kind: str  # "score" | "midi"
    options: RenderOptions
    score: Score | None = None
    midi: bytes | None = None

    @property
    def key(self) -> str:
        payload = (
            msgspec.json.encode(self.score.canonical()) if self.score is not None else (self.midi or b"")
        )
        return input_key(self.kind, payload, self.options)


# How long a job's status waits for the bus's last event before answering from its record.
GET_JOB_BUS_TIMEOUT_S = 2.0


class StoppedBeforeStart(RuntimeError):
    """The API was told to stop before it had started (while it waited for NATS)."""


class Backend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.blobs: BlobStore = open_blob_store(settings.blob_url, settings.data_dir)
        self.db = JobDatabase(settings.database_url)
        self.cache = ResultCache(settings.cache_url)
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        # Set (from the server's signal handler: a plain flag) once the API is told to stop: open
        # event streams end then, cleanly, rather than hold the server until it cuts them off.
        self.closing = False

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.db.create_schema()

        async def on_error(error: Exception) -> None:  # one line, not nats-py's default traceback
            log.warning("nats: %s", str(error).removeprefix("nats: ") or type(error).__name__)

        async def on_disconnect() -> None:
            # Closed on purpose (the API stopping) is not news worth a warning.
            closed = self.nc is not None and self.nc.is_closed
            log.log(logging.INFO if closed else logging.WARNING, "nats: disconnected")

        async def on_reconnect() -> None:
            log.info("nats: reconnected")

        connecting = asyncio.ensure_future(
            nats.connect(
                self.settings.nats_url,
                name="tuneforge-api",
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
            )
        )
        # nats-py waits for the server indefinitely; an API told to stop meanwhile (SIGTERM from
        # systemd or `docker stop`) stops now rather than when the supervisor gives up and kills it.
        while not connecting.done():
            await asyncio.wait({connecting}, timeout=0.2)
            if self.closing and not connecting.done():
                connecting.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await connecting
                raise StoppedBeforeStart("told to stop while waiting for NATS")
        self.nc = connecting.result()
        self.js = self.nc.jetstream(timeout=10)
        await apply_definitions(self.js)
        self._tasks.append(asyncio.create_task(self._record_events()))
        await self.nc.subscribe(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.TUNEFORGE_JOBS.*", cb=self._on_max_deliveries
        )

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.nc is not None:
            # Flush, then close: drain() can wait its full 30 s on the event recorder's pull
            # subscription (nats-py drops a late 408 without marking it done); the recorder is
            # stopped already, and an event it did not ack is redelivered.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.flush(), 2.0)
            with contextlib.suppress(Exception):
                await self.nc.close()
        await self.blobs.close()
        await self.cache.close()
        await self.db.close()

    @property
    def jetstream(self) -> JetStreamContext:
        if self.js is None or self.nc is None or not self.nc.is_connected:
            raise ServiceUnavailable("the message bus (NATS) is not connected")
        return self.js

    # --- jobs -----------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> JobRecord | None:
        """A job as recorded; if its final event is out but not yet recorded, as that event says."""
        job = await self.db.get_job(job_id)
        if job is None or job.status in ("done", "failed") or self.js is None:
            return job
        if self.nc is None or not self.nc.is_connected:
            return job  # the bus is away: asking it would wait out its 10-s timeout on every request
        try:
            last = await asyncio.wait_for(
                self.js.get_last_msg("TUNEFORGE_EVENTS", events_subject(job_id)), GET_JOB_BUS_TIMEOUT_S
            )
            event = EVENT_DECODER.decode(last.data or b"")
        except Exception:  # no event yet, or the bus is away: the record stands
            return job
        if not isinstance(event, Done | Failed):
            return job
        # The recorder is normally a few milliseconds behind: give it the chance to finish the
        # record (with every stage's timing) before answering from the event alone.
        for _ in range(25):
            await asyncio.sleep(0.02)
            recorded = await self.db.get_job(job_id)
            if recorded is not None and recorded.status in ("done", "failed"):
                return recorded
        if isinstance(event, Done):
            await self.cache.set("render", job.input_sha256, event.result)
            return msgspec.structs.replace(
                job,
                status="done",
                stage="done",
                percent=100.0,
                result=event.result,
                finished_at=event.at_unix,
            )
        error = {"code": event.error.code, "message": event.error.message}
        return msgspec.structs.replace(
            job, status="failed", stage="failed", finished_at=event.at_unix, error=error
        )

    async def mood_model(self) -> str:
        """The model version the running mood actor advertises in `$SRV.INFO` ("" when none answers)."""
        if self.nc is None or not self.nc.is_connected:
            return ""
        try:
            msg = await self.nc.request(f"$SRV.INFO.{MOOD_SERVICE}", b"", timeout=0.5)
            info = msgspec.json.decode(msg.data)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError, msgspec.DecodeError):
            return ""
        metadata = info.get("metadata") if isinstance(info, dict) else None
        return str((metadata or {}).get(MOOD_MODEL_METADATA_KEY, ""))

    async def render_key(self, render: RenderInput) -> str:
        """The render's cache key; with mood analysis it names the mood model too.

        So a retrained model is not answered with moods its predecessor computed.
        """
        if not render.options.analyze_mood:
            return render.key
        return hashlib.sha256(f"{render.key}:{await self.mood_model()}".encode()).hexdigest()

    async def cached_render(self, key: str) -> JobResult | None:
        """A finished render from the cache, if its files are still in this blob store: a cache
        shared with another store, or kept across a change of `TUNEFORGE_BLOB_URL`, names files
        this store does not hold (answering with them fails mid-download)."""
        cached = await self.cache.get("render", key, JobResult)
        if cached is None:
            return None
        for ref in (cached.audio, cached.midi):
            if not await self.blobs.exists(ref):
                log.info("cached render %s names %s, not in this blob store: rendering again", key, ref.uri)
                return None
        return cached

    async def submit(
        self, render: RenderInput, job_id: str | None = None, key: str | None = None
    ) -> JobRecord:
        """Accept a render job: answered from the cache, or queued on the durable work queue."""
        key = key or await self.render_key(render)
        cached = await self.cached_render(key)
        if cached is not None:
            return await self.db.create_job(key, render.kind, msgspec.to_builtins(render.options), cached)
        js = self.jetstream
        job = await self.db.create_job(key, render.kind, msgspec.to_builtins(render.options), job_id=job_id)
        job_message: msgspec.Struct
        stage: Literal["convert", "export"]
        if render.score is not None:
            score_ref = await self.blobs.put_bytes(
                msgspec.json.encode(render.score), "scores", "json", "application/json"
            )
            job_message, stage = ConvertJob(job_id=job.id, score=score_ref, options=render.options), "convert"
        else:
            midi_ref = await self.blobs.put_bytes(render.midi or b"", "midi", "mid", MIDI_CONTENT_TYPE)
            job_message, stage = ExportJob(job_id=job.id, midi=midi_ref, options=render.options), "export"
        try:
            await js.publish(
                events_subject(job.id),
                msgspec.json.encode(
                    Progress(job_id=job.id, stage="queued", percent=0.0, at_unix=time.time())
                ),
            )
            await js.publish(
                jobs_subject(stage),
                msgspec.json.encode(job_message),
                headers={"Nats-Msg-Id": f"{job.id}:{stage}"},
            )
        except Exception as error:
            # Not accepted after all: the record must not stay `queued` for a job nobody will run.
            message = f"could not queue the job: {type(error).__name__}: {error}"
            await self.db.mark_failed(job.id, 503, message)
            raise ServiceUnavailable(message) from None
        return job

    async def render_and_wait(self, render: RenderInput, timeout_s: float) -> tuple[JobRecord, JobResult]:
        """Submit a job and wait for its result (for the synchronous endpoints)."""
        key = await self.render_key(render)
        cached = await self.cached_render(key)
        if cached is not None:
            job = await self.db.create_job(key, render.kind, msgspec.to_builtins(render.options), cached)
            return job, cached
        await self.require_services(*self._services_for(render))
        outcome: asyncio.Future[Done | Failed] = asyncio.get_running_loop().create_future()

        async def on_event(msg: Msg) -> None:
            event = EVENT_DECODER.decode(msg.data)
            if isinstance(event, Done | Failed) and not outcome.done():
                outcome.set_result(event)

        # Subscribe to this job's events before publishing it, so the final one cannot slip past.
        job_id = str(uuid.uuid4())
        subscription = await self.nc.subscribe(events_subject(job_id), cb=on_event)  # type: ignore[union-attr]
        try:
            job = await self.submit(render, job_id, key)
            try:
                final = await asyncio.wait_for(outcome, timeout_s)
            except TimeoutError:
                raise ServiceTimeout(
                    f"job {job.id} did not finish within {timeout_s:.0f} s; follow it at /jobs/{job.id}"
                ) from None
        finally:
            await subscription.unsubscribe()
        if isinstance(final, Failed):
            raise RemoteError(final.error.code, final.error.message)
        await self.cache.set("render", key, final.result)
        return job, final.result

    def _services_for(self, render: RenderInput) -> tuple[str, ...]:
        names = ["tuneforge-exporter"] if render.kind == "midi" else list(ACTOR_SERVICES)
        if render.options.analyze_mood:
            names.append(MOOD_SERVICE)
        return tuple(names)

    async def request(self, subject: str, body: msgspec.Struct, reply_type: type, timeout_s: float = 120.0):
        """Request-reply to an actor endpoint, mapping NATS failures to API errors."""
        if self.nc is None or not self.nc.is_connected:
            raise ServiceUnavailable("the message bus (NATS) is not connected")
        try:
            msg = await self.nc.request(subject, msgspec.json.encode(body), timeout=timeout_s)
        except nats.errors.NoRespondersError:
            raise ServiceUnavailable(f"no service is answering on {subject}; is the actor running?") from None
        except nats.errors.TimeoutError:
            raise ServiceTimeout(
                f"the service on {subject} did not answer within {timeout_s:.0f} s"
            ) from None
        headers = msg.headers or {}
        if "Nats-Service-Error-Code" in headers:
            raise RemoteError(int(headers["Nats-Service-Error-Code"]), headers.get("Nats-Service-Error", ""))
        return msgspec.json.decode(msg.data, type=reply_type)

    async def ping(self, service: str, timeout_s: float = 0.25, count_all: bool = False) -> int:
        """How many instances of `service` answer `$SRV.PING` (0 if none; 1 at most unless `count_all`)."""
        if self.nc is None or not self.nc.is_connected:
            return 0
        inbox = self.nc.new_inbox()
        replies = 0
        done = asyncio.Event()

        async def on_reply(msg: Msg) -> None:
            nonlocal replies
            if not msg.data:  # the server's "no responders" status message, not an instance
                return
            replies += 1
            if not count_all:
                done.set()

        subscription = await self.nc.subscribe(inbox, cb=on_reply)
        try:
            await self.nc.publish(f"$SRV.PING.{service}", b"", reply=inbox)
            with contextlib.suppress(TimeoutError):
                # Instances answer within a millisecond or two on one network; wait a little longer.
                await asyncio.wait_for(done.wait(), timeout=timeout_s)
        finally:
            await subscription.unsubscribe()
        return replies

    async def require_services(self, *services: str) -> None:
        for service in services:
            if await self.ping(service) == 0:
                raise ServiceUnavailable(
                    f"the {service} service is not running (no instance answered $SRV.PING)"
                )

    # --- event recording ------------------------------------------------------------------

    async def _record_events(self) -> None:
        """Apply every job event to the database, exactly in stream order; supervised."""
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                subscription = await self.jetstream.pull_subscribe_bind(
                    durable="api-recorder", stream="TUNEFORGE_EVENTS"
                )
                backoff = 0.5
                while not self._stopping.is_set():
                    try:
                        # One at a time: a batched fetch waits for its batch to fill (up to the
                        # timeout) once the first event arrives, which would delay every record.
                        messages = await subscription.fetch(1, timeout=5)
                    except nats.errors.TimeoutError:
                        continue
                    for msg in messages:
                        await self._record(msg)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("event recorder restarting after %s", error)
                await asyncio.sleep(backoff)
                backoff = min(10.0, backoff * 2)

    async def _record(self, msg: Msg) -> None:
        try:
            event = EVENT_DECODER.decode(msg.data)
        except msgspec.MsgspecError:
            log.warning("dropping an undecodable event on %s", msg.subject)
            await msg.term()
            return
        job = await self.db.apply_event(event, msg.metadata.sequence.stream)
        if isinstance(event, Done) and job is not None:
            await self.cache.set("render", job.input_sha256, event.result)
        await msg.ack()

    async def _on_max_deliveries(self, msg: Msg) -> None:
        """A job stage failed on every delivery (e.g. its workers kept dying): report it failed."""
        try:
            advisory = msgspec.json.decode(msg.data)
            stored = await self.jetstream.get_msg("TUNEFORGE_JOBS", advisory["stream_seq"])
            job_id = msgspec.json.decode(stored.data or b"{}").get("job_id")
            if not job_id:
                return
            stages: dict[str, Stage] = {
                "converter": "converting",
                "exporter": "rendering",
                "mood": "analyzing",
            }
            stage = stages.get(advisory.get("consumer", ""), "rendering")
            message = f"the {stage} stage failed on all {advisory.get('deliveries')} attempts"
            failed = Failed(
                job_id=job_id, stage=stage, error=ErrorInfo(code=500, message=message), at_unix=time.time()
            )
            await self.jetstream.publish(
                events_subject(job_id),
                msgspec.json.encode(failed),
                headers={"Nats-Msg-Id": f"{job_id}:failed"},
            )
            # Reported: the message would otherwise wait in the work queue until its max age.
            with contextlib.suppress(nats.js.errors.NotFoundError):  # another API replica was first
                await self.jetstream.delete_msg("TUNEFORGE_JOBS", advisory["stream_seq"])
        except Exception:
            log.exception("could not handle a max-deliveries advisory")
