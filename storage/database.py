"""The job database (SQLAlchemy asyncio): SQLite by default, PostgreSQL through asyncpg by URL.

One row per job: its input's hash, status, stage and percent, stage timings, artifacts and error.
Rows change only through `JobDatabase`, which applies the actors' progress events in order.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import JSON, Boolean, Float, Integer, String, Text, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tuneforge.contracts.jobs import Done, Failed, JobEvent, JobResult, Progress


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    input_sha256: Mapped[str] = mapped_column(String(64), index=True)
    input_kind: Mapped[str] = mapped_column(String(16))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    percent: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    stage_started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    timings: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_event_seq: Mapped[int] = mapped_column(Integer, default=0)
    from_cache: Mapped[bool] = mapped_column(Boolean, default=False)


class JobRecord(msgspec.Struct, frozen=True):
    """A job as the API reports it."""

    id: str
    status: str
    stage: str
    percent: float
    input_sha256: str
    input_kind: str
    options: dict[str, Any]
    created_at: float
    started_at: float | None
    finished_at: float | None
    timings: dict[str, float]
    result: JobResult | None
    error: dict[str, Any] | None
    from_cache: bool


def _record(row: JobRow) -> JobRecord:
    return JobRecord(
        id=row.id,
        status=row.status,
        stage=row.stage,
        percent=row.percent,
        input_sha256=row.input_sha256,
        input_kind=row.input_kind,
        options=row.options,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        timings=dict(row.timings or {}),
        result=msgspec.convert(row.result, JobResult) if row.result else None,
        error={"code": row.error_code, "message": row.error_message} if row.error_code else None,
        from_cache=bool(row.from_cache),
    )


class JobDatabase:
    """Jobs and their history."""

    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=True)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def create_schema(self) -> None:
        async with self.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)

    async def check(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()

    async def create_job(
        self,
        input_sha256: str,
        input_kind: str,
        options: dict[str, Any],
        result: JobResult | None = None,
        job_id: str | None = None,
    ) -> JobRecord:
        """A new job: queued, or already done when its result came from the cache."""
        now = time.time()
        row = JobRow(
            id=job_id or str(uuid.uuid4()),
            input_sha256=input_sha256,
            input_kind=input_kind,
            options=options,
            status="done" if result else "queued",
            stage="done" if result else "queued",
            percent=100.0 if result else 0.0,
            created_at=now,
            started_at=now if result else None,
            finished_at=now if result else None,
            stage_started_at=now,
            timings={},
            result=msgspec.to_builtins(result) if result else None,
            last_event_seq=0,
            from_cache=result is not None,
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
        return _record(row)

    async def get_job(self, job_id: str) -> JobRecord | None:
        async with self._sessions() as session:
            row = await session.get(JobRow, job_id)
            return _record(row) if row else None

    async def recent_jobs(self, limit: int = 20) -> Sequence[JobRecord]:
        async with self._sessions() as session:
            rows = await session.scalars(select(JobRow).order_by(JobRow.created_at.desc()).limit(limit))
            return [_record(r) for r in rows]

    async def apply_event(self, event: JobEvent, stream_seq: int) -> JobRecord | None:
        """Apply one progress event; replays (seq already seen) and late events change nothing."""
        async with self._sessions() as session, session.begin():
            row = await session.get(JobRow, event.job_id, with_for_update=True)
            if row is None or stream_seq <= row.last_event_seq or row.status in ("done", "failed"):
                return _record(row) if row else None
            row.last_event_seq = stream_seq
            now = event.at_unix
            if isinstance(event, Progress):
                if event.stage != row.stage:
                    self._close_stage(row, now)
                    row.stage = event.stage
                    row.stage_started_at = now
                if event.stage != "queued":
                    row.status = "running"
                    row.started_at = row.started_at or now
                row.percent = event.percent
            elif isinstance(event, Done):
                self._close_stage(row, now)
                row.status = row.stage = "done"
                row.percent = 100.0
                row.finished_at = now
                row.result = msgspec.to_builtins(event.result)
            elif isinstance(event, Failed):
                self._close_stage(row, now)
                row.status = row.stage = "failed"
                row.finished_at = now
                row.error_code = event.error.code
                row.error_message = event.error.message
            return _record(row)

    async def mark_failed(self, job_id: str, code: int, message: str) -> None:
        """Fail a job that never reached the pipeline (so no event will ever finish it)."""
        async with self._sessions() as session, session.begin():
            row = await session.get(JobRow, job_id, with_for_update=True)
            if row is not None and row.status not in ("done", "failed"):
                row.status = row.stage = "failed"
                row.finished_at = time.time()
                row.error_code, row.error_message = code, message

    @staticmethod
    def _close_stage(row: JobRow, now: float) -> None:
        if row.stage_started_at is not None and row.stage not in ("done", "failed"):
            timings = dict(row.timings or {})
            timings[row.stage] = round(timings.get(row.stage, 0.0) + max(0.0, now - row.stage_started_at), 4)
            row.timings = timings
