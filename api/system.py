"""Operational endpoints: health, cache reset, the instrument list and the page."""

from __future__ import annotations

import asyncio
import hmac
from pathlib import Path
from typing import Any

import msgspec
from litestar import HttpMethod, Request, post, route
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
)
from litestar.response import File, Response

from tuneforge.api.backend import ACTOR_SERVICES, MOOD_SERVICE, Backend
from tuneforge.api.inputs import media_type
from tuneforge.contracts.instruments import GM_PROGRAMS

STATIC_DIR = Path(__file__).parent / "static"


async def _check(coro: Any, timeout_s: float = 2.0) -> dict[str, Any]:
    try:
        await asyncio.wait_for(coro, timeout_s)
    except Exception as error:
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
    return {"ok": True}


# HEAD too: load balancers and uptime monitors probe with it.
@route(
    "/healthz",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    summary="NATS, database, blob store, cache and each actor service",
)
async def healthz(backend: Backend) -> Response[dict[str, Any]]:
    nats_ok = backend.nc is not None and backend.nc.is_connected
    checks: dict[str, Any] = {
        "nats": {"ok": nats_ok} if nats_ok else {"ok": False, "error": "not connected"},
        "database": await _check(backend.db.check()),
        "blob_store": await _check(backend.blobs.check()),
        "cache": await _check(backend.cache.check()),
    }
    services = (*ACTOR_SERVICES, MOOD_SERVICE)
    counts = await asyncio.gather(*(backend.ping(s, timeout_s=0.5, count_all=True) for s in services))
    for service, count in zip(services, counts, strict=True):
        checks[service] = (
            {"ok": count > 0, "instances": count}
            if count
            else {"ok": False, "instances": 0, "error": "no instance answered $SRV.PING"}
        )
    healthy = all(c["ok"] for c in checks.values())
    return Response(
        {"status": "ok" if healthy else "degraded", "checks": checks}, status_code=200 if healthy else 503
    )


class ClearCacheBody(msgspec.Struct):
    password: str = ""


@post("/clearcache", status_code=200, summary="Empty the result cache (needs CACHE_RESET_PWD)")
async def clear_cache(request: Request[Any, Any, Any], backend: Backend) -> dict[str, Any]:
    """`password` in a form or JSON body, compared in constant time with `CACHE_RESET_PWD`."""
    expected = backend.settings.cache_reset_password
    if not expected:
        raise PermissionDeniedException("cache reset is disabled: CACHE_RESET_PWD is not set on the server")
    kind = media_type(request)
    if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        given = (await request.form()).get("password", "")
    else:
        try:
            given = msgspec.json.decode(await request.body() or b"{}", type=ClearCacheBody).password
        except msgspec.MsgspecError as error:
            raise ClientException(f'expected a JSON body {{"password": "…"}} or a form: {error}') from None
    if not given:
        raise NotAuthorizedException('no password given: send {"password": "…"} as JSON or a form field')
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise NotAuthorizedException("wrong password")
    await backend.cache.clear()
    return {"cleared": True}


@route(
    "/instruments",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    summary="General MIDI program names (index = program number)",
)
async def instruments() -> dict[str, Any]:
    return {"programs": list(GM_PROGRAMS)}


@route("/", http_method=[HttpMethod.GET, HttpMethod.HEAD], include_in_schema=False)
async def page() -> File:
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        raise HTTPException(status_code=404, detail="the web page is not built")
    return File(path=index, media_type="text/html", content_disposition_type="inline")
