"""The storage layer against its real backends: folder and Azurite, SQLite and PostgreSQL,
memory and Redis."""

from __future__ import annotations

import hashlib
import os
import stat
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import redis.asyncio

from tests.conftest import AZURITE_KEY, POSTGRES_URL, REDIS_URL
from tuneforge.contracts.jobs import BlobRef, Done, ErrorInfo, Failed, JobResult, Progress
from tuneforge.storage.blobs import BlobMismatch, BlobNotFound, BlobStore, LocalBlobStore, open_blob_store
from tuneforge.storage.cache import ResultCache
from tuneforge.storage.database import JobDatabase


@pytest.fixture(params=["folder", "azurite", "azurite-account-url"])
async def blobs(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[BlobStore]:
    if request.param == "folder":
        store: BlobStore = open_blob_store(str(tmp_path / "blobs"), tmp_path)
        assert isinstance(store, LocalBlobStore)
    elif request.param == "azurite":
        connection = request.getfixturevalue("azurite_connection_string")
        store = open_blob_store(connection + f"Container=t{uuid.uuid4().hex[:12]}", tmp_path)
    else:
        # The account-URL form: http://host:port/<account>/<container>, key from TUNEFORGE_BLOB_KEY.
        connection = request.getfixturevalue("azurite_connection_string")
        endpoint = connection.split("BlobEndpoint=")[1].rstrip(";")
        monkeypatch.setenv("TUNEFORGE_BLOB_KEY", AZURITE_KEY)
        store = open_blob_store(f"{endpoint}/u{uuid.uuid4().hex[:12]}", tmp_path)
    yield store
    await store.close()


async def test_blobs_are_content_addressed_and_read_back(blobs: BlobStore, tmp_path: Path) -> None:
    data = b"MThd" + uuid.uuid4().bytes * 1000
    ref = await blobs.put_bytes(data, "midi", "mid", "audio/midi")
    assert ref.sha256 == hashlib.sha256(data).hexdigest() and ref.size_bytes == len(data)
    assert ref.uri.endswith(f"midi/{ref.sha256}.mid") and ref.content_type == "audio/midi"
    assert await blobs.put_bytes(data, "midi", "mid", "audio/midi") == ref  # same content, same blob
    assert await blobs.read_bytes(ref) == data
    assert b"".join([chunk async for chunk in blobs.stream(ref)]) == data
    target = tmp_path / "copy.bin"
    await blobs.download_to(ref, target)
    assert target.read_bytes() == data
    with pytest.raises(ValueError, match="more than"):
        await blobs.read_bytes(ref, max_bytes=10)


async def test_large_files_stream_in_and_out(blobs: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "big.wav"
    source.write_bytes(uuid.uuid4().bytes * (5 * 1024 * 1024 // 16))  # 5 MiB
    ref = await blobs.put_file(source, "audio", "wav", "audio/wav")
    assert ref.size_bytes == source.stat().st_size
    assert ref.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    chunks = [chunk async for chunk in blobs.stream(ref)]
    assert len(chunks) > 1 and b"".join(chunks) == source.read_bytes()


async def test_references_outside_the_store_are_refused(blobs: BlobStore) -> None:
    ref = await blobs.put_bytes(b"hello", "x", "bin", "application/octet-stream")
    outsiders = [
        BlobRef(uri="file:///etc/passwd", sha256="0" * 64, size_bytes=1),
        BlobRef(uri=ref.uri.replace(ref.sha256, "f" * 64), sha256="f" * 64, size_bytes=1),
        BlobRef(uri=ref.uri.rsplit("/", 2)[0] + "/../../etc/passwd", sha256="0" * 64, size_bytes=1),
        BlobRef(uri="https://example.invalid/container/x", sha256="0" * 64, size_bytes=1),
    ]
    for outsider in outsiders:
        with pytest.raises(BlobNotFound):
            await blobs.read_bytes(outsider)
    # The reason is the store's bounds, not a missing file (/etc/passwd is there).
    with pytest.raises(BlobNotFound, match="not a blob of this store"):
        await blobs.read_bytes(outsiders[0])


async def test_a_reference_must_name_the_content_it_points_at(blobs: BlobStore, tmp_path: Path) -> None:
    ref = await blobs.put_bytes(b"the real content", "x", "bin", "application/octet-stream")
    liars = [
        msgspec.structs.replace(ref, sha256=hashlib.sha256(b"other content").hexdigest()),
        msgspec.structs.replace(ref, size_bytes=ref.size_bytes + 1),
    ]
    for liar in liars:
        with pytest.raises(BlobMismatch, match="does not match its reference"):
            await blobs.read_bytes(liar)
        with pytest.raises(BlobMismatch, match="does not match its reference"):
            await blobs.download_to(liar, tmp_path / "copy.bin")
    assert issubclass(BlobMismatch, BlobNotFound)  # every reader already answers BlobNotFound as bad input


async def test_blob_store_health(blobs: BlobStore) -> None:
    await blobs.check()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobDatabase]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}" if request.param == "sqlite" else POSTGRES_URL
    db = JobDatabase(url)
    await db.create_schema()
    yield db
    await db.close()


def result() -> JobResult:
    ref = BlobRef(uri="file:///x", sha256="a" * 64, size_bytes=1)
    return JobResult(midi=ref, audio=ref, duration_seconds=2.5, sample_rate_hz=44100, format="wav")


async def test_job_follows_its_events(database: JobDatabase) -> None:
    job = await database.create_job("k" * 64, "score", {"format": "wav"})
    assert (job.status, job.stage, job.percent) == ("queued", "queued", 0.0)
    t = time.time()
    events = [
        Progress(job_id=job.id, stage="queued", percent=0, at_unix=t),
        Progress(job_id=job.id, stage="converting", percent=0, at_unix=t + 0.1),
        Progress(job_id=job.id, stage="rendering", percent=50, at_unix=t + 0.3),
    ]
    for seq, event in enumerate(events, start=1):
        await database.apply_event(event, seq)
    running = await database.get_job(job.id)
    assert running is not None and (running.status, running.stage, running.percent) == (
        "running",
        "rendering",
        50,
    )
    # A replayed old event changes nothing.
    await database.apply_event(Progress(job_id=job.id, stage="converting", percent=0, at_unix=t + 0.1), 2)
    assert (await database.get_job(job.id)).stage == "rendering"  # type: ignore[union-attr]
    done = await database.apply_event(Done(job_id=job.id, result=result(), at_unix=t + 1.3), 4)
    assert done is not None and done.status == "done" and done.result == result()
    queued_s = t + 0.1 - job.created_at  # queued time runs from the job's creation
    assert done.timings == pytest.approx({"queued": queued_s, "converting": 0.2, "rendering": 1.0}, abs=1e-3)
    # Nothing moves a finished job.
    failed = Failed(job_id=job.id, stage="rendering", error=ErrorInfo(code=500, message="x"), at_unix=t + 2)
    assert (await database.apply_event(failed, 5)).status == "done"  # type: ignore[union-attr]
    assert job.id in [j.id for j in await database.recent_jobs(50)]


async def test_failed_job_keeps_its_error(database: JobDatabase) -> None:
    job = await database.create_job("f" * 64, "midi", {})
    error = ErrorInfo(code=400, message="not a valid Standard MIDI File")
    failed = await database.apply_event(
        Failed(job_id=job.id, stage="rendering", error=error, at_unix=time.time()), 1
    )
    assert failed is not None and failed.status == "failed"
    assert failed.error == {"code": 400, "message": "not a valid Standard MIDI File"}


async def test_cached_job_is_born_done(database: JobDatabase) -> None:
    job = await database.create_job("c" * 64, "score", {}, result())
    assert job.status == "done" and job.from_cache and job.result == result()
    assert await database.get_job("no-such-job") is None


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[ResultCache]:
    store = ResultCache("memory://" if request.param == "memory" else REDIS_URL)
    yield store
    await store.close()


async def test_cache_round_trip_and_clear(cache: ResultCache) -> None:
    key = uuid.uuid4().hex
    assert await cache.get("render", key, JobResult) is None
    await cache.set("render", key, result())
    assert await cache.get("render", key, JobResult) == result()
    await cache.clear()
    assert await cache.get("render", key, JobResult) is None


async def test_clearing_leaves_other_applications_keys_alone() -> None:
    client = redis.asyncio.from_url(REDIS_URL)
    await client.set("someone-else:key", b"keep me")
    cache = ResultCache(REDIS_URL)
    try:
        await cache.set("render", "x", result())
        await cache.clear()
        assert await client.get("someone-else:key") == b"keep me"
    finally:
        await client.delete("someone-else:key")
        await client.aclose()
        await cache.close()


async def test_an_unreachable_cache_is_a_miss_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    from tuneforge.embedded import free_port

    cache = ResultCache(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        with caplog.at_level("WARNING", logger="tuneforge.storage.cache"):
            for _ in range(3):
                await cache.set("render", "x", result())
                assert await cache.get("render", "x", JobResult) is None
        warnings = [r for r in caplog.records if "result cache unavailable" in r.getMessage()]
        assert len(warnings) == 1  # said once, not on every request
    finally:
        await cache.close()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
async def test_folder_blobs_are_readable_by_other_users(tmp_path: Path, umask: int, mode: int) -> None:
    """The API and the actors may run as different users on one shared folder: blobs are written
    0644 less the umask (as any file), not 0600 (`tempfile`'s), and no temporary file is left."""
    store = LocalBlobStore(tmp_path / "blobs")
    source = tmp_path / "input.wav"
    source.write_bytes(uuid.uuid4().bytes * 100)
    previous = os.umask(umask)
    try:
        written = await store.put_bytes(uuid.uuid4().bytes, "midi", "mid", "audio/midi")
        copied = await store.put_file(source, "audio", "wav", "audio/wav")
    finally:
        os.umask(previous)
    for ref in (written, copied):
        assert stat.S_IMODE(store.local_path(ref).stat().st_mode) == mode
    assert sorted(p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()) == sorted(
        [f"{written.sha256}.mid", f"{copied.sha256}.wav"]
    )


async def test_a_blob_exists_only_in_its_own_store(blobs: BlobStore, tmp_path: Path) -> None:
    ref = await blobs.put_bytes(b"MThd" + uuid.uuid4().bytes, "midi", "mid", "audio/midi")
    assert await blobs.exists(ref)
    assert not await blobs.exists(msgspec.structs.replace(ref, size_bytes=ref.size_bytes + 1))
    elsewhere = open_blob_store(str(tmp_path / "another"), tmp_path)
    assert not await elsewhere.exists(ref)  # a reference from another store: not here
    missing = msgspec.structs.replace(ref, uri=ref.uri.replace(ref.sha256, "0" * 64))
    assert not await blobs.exists(missing)
