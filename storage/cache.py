"""Result cache (aiocache): memory by default, Redis by URL.

Maps content addresses to finished results: a render's input key to its `JobResult`, an
audio file's sha256 to its mood. Everything under the `tuneforge` namespace, so clearing
never touches another application's keys in a shared Redis.

The cache only saves work: when its server is unreachable, a lookup is a miss and a store is
skipped (logged, at most once a minute), so requests go on being answered; /healthz reports it.
"""

from __future__ import annotations

import logging
import time
from typing import TypeVar

import msgspec
from aiocache import Cache
from aiocache.serializers import StringSerializer

NAMESPACE = "tuneforge"
T = TypeVar("T")
log = logging.getLogger(__name__)
WARN_EVERY_SECONDS = 60.0


class ResultCache:
    def __init__(self, url: str = "memory://", ttl_seconds: int = 7 * 24 * 3600) -> None:
        self._cache = Cache.from_url(url or "memory://")
        self._cache.serializer = StringSerializer()
        self._cache.namespace = NAMESPACE
        self._ttl = ttl_seconds
        self._warned_at = -WARN_EVERY_SECONDS

    def _unavailable(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(
                "result cache unavailable, answering without it: %s", str(error) or type(error).__name__
            )

    async def get(self, kind: str, key: str, type_: type[T]) -> T | None:
        try:
            raw = await self._cache.get(f"{kind}:{key}")
        except Exception as error:  # the backend's own (redis ConnectionError, TimeoutError, …)
            self._unavailable(error)
            return None
        if raw is None:
            return None
        try:
            return msgspec.json.decode(raw, type=type_)
        except msgspec.ValidationError:
            return None  # written by an older version with another shape: treat as a miss

    async def set(self, kind: str, key: str, value: object) -> None:
        try:
            await self._cache.set(f"{kind}:{key}", msgspec.json.encode(value).decode(), ttl=self._ttl)
        except Exception as error:
            self._unavailable(error)

    async def clear(self) -> None:
        await self._cache.clear(namespace=NAMESPACE)

    async def check(self) -> None:
        await self._cache.exists("health")

    async def close(self) -> None:
        await self._cache.close()
