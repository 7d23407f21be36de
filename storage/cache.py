"""Result cache (aiocache): memory by default, Redis by URL.

Maps content addresses to finished results: a render's input key to its `JobResult`, an
audio file's sha256 to its mood. Everything under the `tuneforge` namespace, so clearing
never touches another application's keys in a shared Redis.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from aiocache import Cache
from aiocache.serializers import StringSerializer

NAMESPACE = "tuneforge"
T = TypeVar("T")


class ResultCache:
    def __init__(self, url: str = "memory://", ttl_seconds: int = 7 * 24 * 3600) -> None:
        self._cache = Cache.from_url(url or "memory://")
        self._cache.serializer = StringSerializer()
        self._cache.namespace = NAMESPACE
        self._ttl = ttl_seconds

    async def get(self, kind: str, key: str, type_: type[T]) -> T | None:
        raw = await self._cache.get(f"{kind}:{key}")
        if raw is None:
            return None
        try:
            return msgspec.json.decode(raw, type=type_)
        except msgspec.ValidationError:
            return None  # written by an older version with another shape: treat as a miss

    async def set(self, kind: str, key: str, value: object) -> None:
        await self._cache.set(f"{kind}:{key}", msgspec.json.encode(value).decode(), ttl=self._ttl)

    async def clear(self) -> None:
        await self._cache.clear(namespace=NAMESPACE)

    async def check(self) -> None:
        await self._cache.exists("health")

    async def close(self) -> None:
        await self._cache.close()
