"""The last line of error handling: what no route handled becomes JSON, and the server log says why.

A store that is down or refuses our credentials (blob store, database, cache) is the service being
unavailable, not a bug: 503 with the store named. Anything else is a 500 whose traceback is logged
(Litestar logs nothing for it outside debug mode).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from azure.core.exceptions import AzureError, ClientAuthenticationError
from litestar import Request, Response
from redis.exceptions import RedisError
from sqlalchemy.exc import InterfaceError, OperationalError

log = logging.getLogger("tuneforge.api")


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def unavailable_store(error: Exception) -> str | None:
    """What is down, in words, if `error` is a store being unreachable or refusing us."""
    if isinstance(error, ClientAuthenticationError):
        return "the blob store refused the configured credentials"
    if isinstance(error, AzureError):
        return f"the blob store is unavailable: {_first_line(error)}"
    if isinstance(error, (OperationalError, InterfaceError)):  # connection-level, not a bad statement
        cause = error.orig if isinstance(error.orig, Exception) else error
        return f"the database is unavailable: {_first_line(cause)}"
    if isinstance(error, RedisError):
        return f"the cache is unavailable: {_first_line(error)}"
    if isinstance(error, (ConnectionError, TimeoutError, socket.gaierror)):
        return f"a backend is unavailable: {_first_line(error)}"
    return None


def internal_error_response(request: Request[Any, Any, Any], error: Exception) -> Response[dict[str, Any]]:
    """App-wide handler of status 500: every exception no route turned into an HTTP answer."""
    down = unavailable_store(error)
    if down:
        log.error("%s %s: %s (%s)", request.method, request.url.path, down, type(error).__name__)
        return Response({"status_code": 503, "detail": down}, status_code=503)
    log.error("%s %s failed", request.method, request.url.path, exc_info=error)
    detail = f"internal error ({type(error).__name__}); the server log has the details"
    return Response({"status_code": 500, "detail": detail}, status_code=500)
