"""Start-up checks: can this process reach and use every backend it needs?

Run before anything starts, each with a short timeout, through the storage layer's own
`check()` (the ones `/healthz` reports) and a plain NATS connection. A failure is one line that
names the backend, its address with the secrets masked, and the reason:

    tuneforge: database postgresql+asyncpg://postgres@127.0.0.1:5999/test: connection refused
    tuneforge: NATS nats://127.0.0.1:4334 has no JetStream (start nats-server with -js)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import socket
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from tuneforge.settings import Settings

log = logging.getLogger("tuneforge.checks")
CHECK_TIMEOUT_S = 5.0
BACKENDS = ("database", "blob store", "cache", "NATS")

# `key=value` parts that hold a secret: in a query string (`?sig=…`, `?password=…`) or an Azure
# connection string (`AccountKey=…`, `SharedAccessSignature=…`).
_SECRET_PART = re.compile(
    r"(^|[?&;])([\w.-]*(?:key|password|passwd|pwd|secret|token|signature|sig)=)([^&;#\s]+)", re.IGNORECASE
)
_USERINFO = re.compile(r"^([a-zA-Z][\w+.-]*://)([^/?#@\s]*)@")


class NotUsable(Exception):
    """The backend answers but cannot serve TuneForge; the message reads on from its address."""


def mask(address: str) -> tuple[str, list[str]]:
    """`address` (a URL, or a list of them, or a connection string) with its passwords, tokens and
    keys replaced by `***`, and the secrets it held (to keep them out of error messages too)."""
    secrets: list[str] = []
    masked_parts = []
    for part in address.strip().split(","):
        match = _USERINFO.match(part.strip())
        if match:
            scheme, userinfo = match.group(1), match.group(2)
            user, colon, password = userinfo.partition(":")
            if colon and password:
                secrets.append(password)
                userinfo = f"{user}:***"
            elif not colon and user and scheme.lower().startswith(("nats", "tls", "ws")):
                secrets.append(user)  # nats://<token>@host
                userinfo = "***"
            part = f"{scheme}{userinfo}@{part.strip()[match.end() :]}"

        def hide(found: re.Match[str]) -> str:
            secrets.append(found.group(3))
            return f"{found.group(1)}{found.group(2)}***"

        masked_parts.append(_SECRET_PART.sub(hide, part))
    return ",".join(masked_parts), secrets


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 4:  # a one-letter "secret" would mask half the message
            text = text.replace(secret, "***")
    return text


def _chain(error: BaseException) -> list[BaseException]:
    """The error, then what caused it, innermost last (an exception group: its first member)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        if isinstance(current, BaseExceptionGroup) and current.exceptions:
            current = current.exceptions[0]
        elif current.__cause__ is not None or current.__suppress_context__:
            current = current.__cause__
        else:
            current = current.__context__
    return chain


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__


def describe(error: BaseException, timeout_s: float = CHECK_TIMEOUT_S) -> str:
    """A short reason for a failed check: the network error under the library's wrapping, the
    server's own words, or the timeout."""
    chain = _chain(error)
    for cause in chain:
        if isinstance(cause, NotUsable):
            return str(cause)
    for cause in chain:
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the host name ({cause.strerror or cause})"
        if isinstance(cause, ConnectionRefusedError) or f"[Errno {errno.ECONNREFUSED}]" in str(cause):
            return "connection refused"
        if isinstance(cause, OSError) and cause.errno and not isinstance(cause, TimeoutError):
            return os.strerror(cause.errno).lower()
    for cause in chain:
        status = getattr(cause, "status_code", None)
        if isinstance(status, int) and status >= 400:  # an HTTP answer (Azure): its first line, status, code
            code = getattr(cause, "error_code", None)
            code_text = f" {getattr(code, 'value', code)}" if code else ""
            return f"{_first_line(cause)} (HTTP {status}{code_text})"
    informative = [c for c in chain if not isinstance(c, TimeoutError | asyncio.CancelledError)]
    if informative:
        # SQLAlchemy wraps the driver's error (`orig`), whose words are the server's.
        orig = getattr(informative[0], "orig", None)
        reason = _first_line(orig if isinstance(orig, BaseException) else informative[0])
        return f"{reason} (after {timeout_s:g} s)" if isinstance(error, TimeoutError) else reason
    return f"no answer within {timeout_s:g} s"


async def _close_quietly(closer: Callable[[], Awaitable[None]]) -> None:
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(closer(), 2.0)


async def check_database(url: str) -> None:
    from tuneforge.storage.database import JobDatabase

    try:
        database = JobDatabase(url)
    except ModuleNotFoundError as error:  # e.g. postgresql:// asks for psycopg
        hint = "use an async driver: postgresql+asyncpg://, sqlite+aiosqlite://"
        raise NotUsable(f"{error}: {hint}") from None
    except Exception as error:  # e.g. postgres:// (Heroku's spelling): no such SQLAlchemy dialect
        if "Can't load plugin" not in str(error):
            raise
        hint = "write postgresql+asyncpg://… or sqlite+aiosqlite:///…"
        raise NotUsable(f"{_first_line(error)}: {hint}") from None
    try:
        await database.check()
    finally:
        await _close_quietly(database.close)


async def check_blob_store(settings: Settings) -> None:
    from tuneforge.storage.blobs import open_blob_store

    store = open_blob_store(settings.blob_url, settings.data_dir)
    try:
        await store.check()
    except Exception as error:
        status = getattr(error, "status_code", None)
        if status in (401, 403):  # Azure: a wrong account key, or a SAS token without the rights
            code = getattr(error, "error_code", None)
            code_text = f" {getattr(code, 'value', code)}" if code else ""
            hint = "check the account key or SAS token"
            raise NotUsable(f"access denied (HTTP {status}{code_text}): {hint}") from None
        raise
    finally:
        await _close_quietly(store.close)


async def check_cache(url: str) -> None:
    from aiocache.exceptions import InvalidCacheType

    from tuneforge.storage.cache import ResultCache

    try:
        cache = ResultCache(url)
    except InvalidCacheType:
        raise NotUsable("not a cache URL: use memory:// or redis://host:6379/0") from None
    try:
        await cache.check()
    finally:
        await _close_quietly(cache.close)


async def check_nats(url: str, timeout_s: float = 2.0) -> None:
    """Connect once (no reconnect loop) and ask JetStream for the account's info."""
    import nats
    from nats.js.errors import APIError, ServiceUnavailableError

    errors: list[Exception] = []

    async def on_error(error: Exception) -> None:
        errors.append(error)

    try:
        client = await nats.connect(
            url,
            name="tuneforge-check",
            allow_reconnect=False,
            connect_timeout=timeout_s,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            error_cb=on_error,
        )
    except Exception as error:
        # nats-py ends with "no servers available"; the reason is what it reported on the way.
        reason = errors[-1] if errors else error
        if isinstance(reason, TimeoutError):
            raise NotUsable(f"no answer within {timeout_s:g} s") from None
        raise reason from None
    try:
        await client.jetstream(timeout=timeout_s).account_info()
    except ServiceUnavailableError:  # nobody answers the JetStream API
        raise NotUsable("has no JetStream (start nats-server with -js)") from None
    except APIError as error:
        if error.err_code == 10039:  # JetStream is on, but not for this account
            raise NotUsable("has no JetStream for this account (enable it in the server config)") from None
        raise
    except TimeoutError:
        raise NotUsable(f"has no JetStream answering within {timeout_s:g} s") from None
    finally:
        await _close_quietly(client.close)


@dataclass(frozen=True)
class Failure:
    backend: str
    address: str  # secrets masked
    reason: str  # secrets masked
    error: BaseException

    def line(self) -> str:
        if self.reason.startswith("has "):  # "NATS nats://… has no JetStream (…)"
            return f"{self.backend} {self.address} {self.reason}"
        return f"{self.backend} {self.address}: {self.reason}"


def _address(backend: str, settings: Settings) -> str:
    if backend == "database":
        return settings.database_url
    if backend == "blob store":
        return settings.blob_url.strip().rstrip(";") or str(settings.data_dir / "blobs")
    if backend == "cache":
        return settings.cache_url
    return settings.nats_url


async def check_backends(
    settings: Settings, backends: Iterable[str], timeout_s: float = CHECK_TIMEOUT_S
) -> list[Failure]:
    """Check `backends` (names from `BACKENDS`) at once; the failures, in the order asked."""
    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "database": lambda: check_database(settings.database_url),
        "blob store": lambda: check_blob_store(settings),
        "cache": lambda: check_cache(settings.cache_url),
        "NATS": lambda: check_nats(settings.nats_url, min(2.0, timeout_s)),
    }
    names = list(dict.fromkeys(backends))

    async def run(name: str) -> BaseException | None:
        try:
            await asyncio.wait_for(checks[name](), timeout_s)
        except Exception as error:
            return error
        return None

    outcomes = await asyncio.gather(*(run(name) for name in names))
    key = os.environ.get("TUNEFORGE_BLOB_KEY", "")
    failures = []
    for name, error in zip(names, outcomes, strict=True):
        if error is None:
            continue
        address, secrets = mask(_address(name, settings))
        secrets += [key] if name == "blob store" and key else []
        failures.append(Failure(name, address, redact(describe(error, timeout_s), secrets), error))
    return failures


def startup_checks(settings: Settings, backends: Iterable[str], timeout_s: float = CHECK_TIMEOUT_S) -> bool:
    """Check the backends; print one line per failure on stderr (tracebacks at DEBUG level)."""
    failures = asyncio.run(check_backends(settings, backends, timeout_s))
    for failure in failures:
        log.debug("%s check failed", failure.backend, exc_info=failure.error)
        print(f"tuneforge: {failure.line()}", file=sys.stderr, flush=True)
    return not failures
