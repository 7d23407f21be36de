"""The NATS plumbing every actor shares.

- `connect`: a client that reconnects forever and applies the JetStream definitions;
- `micro_handler`: wraps an endpoint's work so bad input becomes a 400 error reply and
  anything else a 500, with the `Nats-Service-Error(-Code)` headers set by `nats.micro`;
- `EventPublisher`: progress, done and failed events on `tuneforge.events.<job_id>`, in order;
- `run_consumer`: supervised JetStream pull loops that keep long work alive with
  `in_progress`, ack when done, `term` poison messages and retry transient failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service, ServiceError

from tuneforge.contracts.jobs import (
    Done,
    ErrorInfo,
    Failed,
    JobResult,
    Progress,
    Stage,
    events_subject,
)
from tuneforge.infra.jetstream import apply_definitions, consumer_definition

log = logging.getLogger(__name__)
T = TypeVar("T")


VERSION = "0.1.0"  # of the actors' interface, reported in $SRV.INFO

# Which replica works on a job, in progress events (`worker`): operators see it, tests kill the right one.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class BadInput(ValueError):
    """The request or job cannot succeed as sent: report it (400), never retry it."""


class UnreadableBlob(BadInput):
    """A blob reference that does not resolve in this replica's store.

    In a request the caller's reference is wrong: 400. In a job the pipeline stored the blob itself,
    so this replica reads another store than the one the job was written to (or the store is
    failing): the job is retried, on any replica, and fails as an internal error at the last try.
    """


async def connect(url: str, name: str) -> tuple[Client, JetStreamContext]:
    async def on_error(error: Exception) -> None:
        log.warning("nats: %s", str(error).removeprefix("nats: ") or type(error).__name__)

    connected: list[Client] = []  # the client, once there: the callbacks are made before it

    async def on_disconnect() -> None:
        # Closed on purpose (the actor stopping) is not news worth a warning.
        closed = bool(connected) and connected[0].is_closed
        log.log(logging.INFO if closed else logging.WARNING, "nats: disconnected")

    async def on_reconnect() -> None:
        log.info("nats: reconnected")

    client = await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )
    connected.append(client)
    js = client.jetstream(timeout=10)
    await apply_definitions(js)
    return client, js


async def shut_down(service: Service, client: Client, timeout_s: float = 2.0) -> None:
    """Leave NATS promptly: stop answering, then close.

    No drain: by now the actor's work is cancelled, and a job it had not acked is redelivered
    to another replica; draining would only wait on pull requests that never complete.
    """
    try:
        await asyncio.wait_for(service.stop(), timeout_s)
        # close() drops what is still buffered: the naks of jobs given back must reach the server.
        await asyncio.wait_for(client.flush(), timeout_s)
    except Exception as error:  # the server is gone or slow
        log.warning("stopping the service: %s", type(error).__name__)
    finally:
        if not client.is_closed:
            await client.close()


def micro_handler(work: Callable[[bytes], Awaitable[msgspec.Struct]]) -> Callable[[Request], Awaitable[None]]:
    """A `nats.micro` handler replying with the JSON of `work(request.data)`."""

    async def handle(request: Request) -> None:
        try:
            reply = await work(request.data)
        except msgspec.ValidationError as error:  # before DecodeError: it is one
            raise ServiceError("400", f"invalid request: {error}") from None
        except msgspec.DecodeError as error:
            raise ServiceError("400", f"malformed JSON: {error}") from None
        except BadInput as error:
            raise ServiceError("400", str(error)) from None
        except RecursionError:  # msgspec's answer to JSON nested thousands deep
            raise ServiceError("400", "malformed JSON: nested too deeply") from None
        except ServiceError:
            raise
        except Exception as error:
            log.exception("request on %s failed", request.subject)
            raise ServiceError("500", f"internal error: {type(error).__name__}: {error}") from None
        await request.respond(msgspec.json.encode(reply))

    return handle


class EventPublisher:
    """Publishes a job's events to JetStream one at a time, so they are stored in order."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def _publish(self, job_id: str, event: msgspec.Struct, msg_id: str | None = None) -> None:
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        await self._js.publish(events_subject(job_id), msgspec.json.encode(event), headers=headers)

    async def progress(self, job_id: str, stage: Stage, percent: float, detail: str = "") -> None:
        event = Progress(
            job_id=job_id,
            stage=stage,
            percent=round(min(100.0, max(0.0, percent)), 1),
            at_unix=time.time(),
            detail=detail,
            worker=WORKER_ID,
        )
        try:
            await self._publish(job_id, event)
        except Exception as error:
            # Progress is news about the work, not the work: after a NATS outage a failed
            # "rendering 100 %" once threw a finished render away and had the job rendered again.
            log.warning(
                "job %s: a progress event was not published: %s", job_id, str(error) or type(error).__name__
            )

    async def done(self, job_id: str, result: JobResult) -> None:
        # The message id makes a redelivered job's second `done` a duplicate the server drops.
        await self._publish(
            job_id, Done(job_id=job_id, result=result, at_unix=time.time()), msg_id=f"{job_id}:done"
        )

    async def failed(self, job_id: str, stage: Stage, code: int, message: str) -> None:
        event = Failed(
            job_id=job_id, stage=stage, error=ErrorInfo(code=code, message=message), at_unix=time.time()
        )
        await self._publish(job_id, event, msg_id=f"{job_id}:failed")


class ProgressReporter:
    """Thread-safe progress for work running in a worker thread: latest value wins, sent in order."""

    def __init__(self, events: EventPublisher, job_id: str, stage: Stage, min_interval_s: float = 0.2):
        self._events = events
        self._job_id = job_id
        self._stage = stage
        self._min_interval_s = min_interval_s
        self._loop = asyncio.get_running_loop()
        self._latest: float | None = None
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    def report(self, percent: float) -> None:
        """Callable from any thread."""
        self._loop.call_soon_threadsafe(self._set, percent)

    def _set(self, percent: float) -> None:
        self._latest = percent
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._latest is not None:
                percent, self._latest = self._latest, None
                with contextlib.suppress(Exception):
                    await self._events.progress(self._job_id, self._stage, percent)
            await asyncio.sleep(self._min_interval_s)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


JobHandler = Callable[[Msg], Awaitable[None]]


async def in_daemon_thread(work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` in a daemon thread: for start-up work (loading a model, compiling librosa's
    numba code) that a replica told to stop must not wait for, as it waits for `to_thread` work."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if result.done():  # the awaiting coroutine was cancelled
            return
        if error is not None:
            result.set_exception(error)
        else:
            result.set_result(value)

    def run() -> None:
        try:
            value, error = work(*args), None
        except BaseException as caught:  # handed to the awaiting coroutine
            value, error = None, caught
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=run, name=f"start-up:{getattr(work, '__name__', 'work')}", daemon=True).start()
    return await result


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def worker_dir(data_dir: Path, role: str) -> Path:
    """This replica's own work folder, `<data>/work/<role>-<host>-<pid>`; the folders of this
    host's replicas that died (killed mid-render, their partial files still there) are removed."""
    host = socket.gethostname()
    parent = data_dir / "work"
    parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{role}-{host}-"
    for folder in parent.glob(f"{prefix}*"):
        pid = folder.name[len(prefix) :]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    own = parent / f"{role}-{host}-{os.getpid()}"
    own.mkdir(exist_ok=True)
    return own


@contextlib.asynccontextmanager
async def scratch_file(work_dir: Path, suffix: str) -> AsyncIterator[Path]:
    """A temporary file in the actor's work folder, removed afterwards whatever happens."""
    handle, name = tempfile.mkstemp(suffix=suffix, dir=work_dir)
    os.close(handle)
    path = Path(name)
    try:
        yield path
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)


async def _keep_alive(msg: Msg, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        with contextlib.suppress(Exception):
            await msg.in_progress()


def job_id_of(data: bytes) -> str | None:
    """Best effort: the `job_id` of a message that may not decode as a job."""
    try:
        raw: Any = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    job_id = raw.get("job_id") if isinstance(raw, dict) else None
    return job_id if isinstance(job_id, str) and 0 < len(job_id) <= 64 else None


@dataclass(frozen=True)
class ActorSpec:
    """What an actor is on NATS: a micro service with one endpoint, and a durable job consumer."""

    service: str  # e.g. "tuneforge-exporter", what `nats micro ls` shows
    description: str
    endpoint: str  # endpoint name, e.g. "export"
    subject: str  # request-reply subject, e.g. "tuneforge.export"
    durable: str  # JetStream consumer in infra/nats/jetstream.json, e.g. "exporter"
    stage: Stage  # the job stage its failures are reported under


JobWork = Callable[[Msg, JetStreamContext, EventPublisher], Awaitable[None]]


@dataclass
class JobStats:
    """What this replica's job consumer did: shown as the endpoint's `data` in `$SRV.STATS`
    (`nats micro stats`), whose request counters see only direct requests, not the job queue."""

    received: int = 0
    done: int = 0  # handed on to the next stage, or finished
    failed: int = 0  # reported failed: bad input, or the last delivery's error
    retried: int = 0  # given back to the queue after an error, for any replica to try again
    in_flight: int = 0
    processing_seconds: float = 0.0
    last_error: str = ""

    def as_data(self) -> dict[str, object]:
        return {"jobs": {**asdict(self), "processing_seconds": round(self.processing_seconds, 3)}}


async def run_actor(
    spec: ActorSpec,
    nats_url: str,
    handle_request: Callable[[bytes], Awaitable[msgspec.Struct]],
    handle_job: JobWork,
    concurrency: int,
    metadata: dict[str, str] | None = None,
) -> None:
    """Serve the endpoint and consume jobs until cancelled; then leave NATS promptly.

    `metadata` is published in the service's `$SRV.INFO` (what `nats micro info` shows).
    """
    client, js = await connect(nats_url, spec.service)
    events = EventPublisher(js)
    job_stats = JobStats()
    service = await add_service(
        client,
        name=spec.service,
        version=VERSION,
        description=spec.description,
        metadata=metadata or {},
        stats_handler=lambda _endpoint: job_stats.as_data(),
    )
    await service.add_endpoint(
        name=spec.endpoint, subject=spec.subject, handler=micro_handler(handle_request)
    )
    log.info("%s %s ready (service id %s, %d job slots)", spec.service, VERSION, service.id, concurrency)

    async def handle(msg: Msg) -> None:
        await handle_job(msg, js, events)

    try:
        await run_consumer(
            js, spec.durable, handle, events, spec.stage, concurrency, asyncio.Event(), job_stats
        )
    finally:
        await shut_down(service, client)


async def run_consumer(
    js: JetStreamContext,
    durable: str,
    handle: JobHandler,
    events: EventPublisher,
    stage: Stage,
    concurrency: int,
    stopping: asyncio.Event,
    stats: JobStats | None = None,
) -> None:
    """Run `concurrency` supervised pull loops on a durable consumer until `stopping` is set.

    `handle` does the work and acks; here a `BadInput` (or an undecodable message) becomes a
    `failed` event and `term`, other errors are retried after a back-off and reported failed
    on the last delivery.
    """
    spec = consumer_definition(durable)
    keep_alive_s = max(1.0, spec["ack_wait_seconds"] / 4)
    max_deliver = spec["max_deliver"]
    stats = stats or JobStats()

    async def fail(msg: Msg, code: int, message: str) -> None:
        """Report the job failed and take it off the queue."""
        stats.failed += 1
        stats.last_error = message[:300]
        job_id = job_id_of(msg.data)
        if job_id:
            await events.failed(job_id, stage, code, message)
        await msg.term()

    async def retry_or_fail(msg: Msg, message: str) -> None:
        if max_deliver > 0 and msg.metadata.num_delivered >= max_deliver:
            await fail(msg, 500, message)
        else:
            stats.retried += 1
            stats.last_error = message[:300]
            await msg.nak(delay=min(30.0, 2.0**msg.metadata.num_delivered))

    async def process(msg: Msg) -> None:
        heartbeat = asyncio.create_task(_keep_alive(msg, keep_alive_s))
        stats.received += 1
        stats.in_flight += 1
        started = time.perf_counter()
        try:
            await handle(msg)
            stats.done += 1
        except asyncio.CancelledError:
            # The replica is stopping: give the job back now, so another replica starts it at once
            # instead of after the ack deadline.
            heartbeat.cancel()  # an in-progress beat after the nak would hold the job here again
            with contextlib.suppress(Exception):
                # Redelivered after a second: at once, the server would hand it to this replica's own
                # pending pull requests, which go with its connection.
                await asyncio.wait_for(msg.nak(delay=1.0), 2.0)
            raise
        except UnreadableBlob as error:
            log.error(
                "%s: job %s: %s: is this replica's blob store the pipeline's?",
                durable,
                job_id_of(msg.data),
                error,
            )
            await retry_or_fail(
                msg,
                # The remedy first: stats keep the first 300 characters, and a blob's URI is long.
                f"this {durable} replica cannot read the job's files; every replica must use the same "
                f"blob store (TUNEFORGE_BLOB_URL): {error}",
            )
        except (BadInput, msgspec.ValidationError, msgspec.DecodeError) as error:
            log.warning("%s: job %s rejected: %s", durable, job_id_of(msg.data), error)
            await fail(msg, 400, str(error))
        except Exception as error:
            log.exception("%s: delivery %s failed", durable, msg.metadata.num_delivered)
            await retry_or_fail(msg, f"{type(error).__name__}: {error}")
        finally:
            heartbeat.cancel()
            stats.in_flight -= 1
            stats.processing_seconds += time.perf_counter() - started

    async def loop(worker: int) -> None:
        backoff = 0.5
        while not stopping.is_set():
            try:
                subscription = await js.pull_subscribe_bind(durable=durable, stream=spec["stream"])
                backoff = 0.5
                while not stopping.is_set():
                    try:
                        messages = await subscription.fetch(1, timeout=2)
                    except nats.errors.TimeoutError:
                        continue
                    for msg in messages:
                        await process(msg)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # Pull loops do not always recover on their own after a server restart: rebuild.
                log.warning("%s[%d]: consumer loop restarting after %s", durable, worker, error)
                await asyncio.sleep(backoff)
                backoff = min(10.0, backoff * 2)

    loops = [asyncio.create_task(loop(i)) for i in range(concurrency)]
    try:
        await asyncio.gather(*loops)
    finally:
        # Cancelled (the replica is stopping): let each loop give its job back before the caller
        # closes the connection.
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
