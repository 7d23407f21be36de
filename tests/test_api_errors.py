"""What no route handles: a store that is down is a 503 naming it, anything else a logged 500."""

from __future__ import annotations

import logging

import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from litestar import Litestar, get
from litestar.exceptions import NotFoundException
from litestar.testing import AsyncTestClient
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import IntegrityError, OperationalError

from tuneforge.api.app import create_app
from tuneforge.api.errors import internal_error_response

FAILURES: dict[str, Exception] = {
    "azure-key": ClientAuthenticationError("Server failed to authenticate the request."),
    "azure-down": ServiceRequestError("Cannot connect to host 127.0.0.1:1"),
    "postgres-down": OperationalError("SELECT 1", {}, ConnectionRefusedError("Connect call failed")),
    "redis-down": RedisConnectionError("Error 111 connecting to 127.0.0.1:6999. Connection refused."),
    "bug": ZeroDivisionError("division by zero"),
    "bad-statement": IntegrityError("INSERT", {}, ValueError("duplicate key")),
    "not-found": NotFoundException("no such job"),
}


@get("/fail/{kind:str}", sync_to_thread=False)
def fail(kind: str) -> None:
    raise FAILURES[kind]


@pytest.mark.parametrize(
    ("kind", "status", "detail"),
    [
        ("azure-key", 503, "the blob store refused the configured credentials"),
        ("azure-down", 503, "the blob store is unavailable: Cannot connect to host"),
        ("postgres-down", 503, "the database is unavailable: Connect call failed"),
        ("redis-down", 503, "the cache is unavailable: Error 111"),
        ("bug", 500, "internal error (ZeroDivisionError)"),
        ("bad-statement", 500, "internal error (IntegrityError)"),
        ("not-found", 404, "no such job"),
    ],
)
async def test_unhandled_errors_are_json_and_logged(
    kind: str, status: int, detail: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = Litestar([fail], exception_handlers={500: internal_error_response}, logging_config=None)
    caplog.set_level(logging.ERROR, logger="tuneforge.api")
    async with AsyncTestClient(app) as client:
        response = await client.get(f"/fail/{kind}")
    assert response.status_code == status
    assert response.json()["detail"].startswith(detail)
    if status == 500:  # the traceback is in the server log
        assert any(r.exc_info and isinstance(r.exc_info[1], type(FAILURES[kind])) for r in caplog.records)
    elif status == 503:
        assert any(detail in r.getMessage() for r in caplog.records)


def test_the_app_answers_unhandled_errors_with_that_handler() -> None:
    assert create_app().exception_handlers[500] is internal_error_response
