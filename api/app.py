"""The Litestar application: routes, dependency injection and the connection lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.static_files import create_static_files_router

from tuneforge.api.backend import Backend, RemoteError, ServiceTimeout, ServiceUnavailable, StoppedBeforeStart
from tuneforge.api.errors import internal_error_response
from tuneforge.api.inputs import too_large_response
from tuneforge.api.jobs import (
    JobController,
    download,
    pipeline_error_response,
    range_not_satisfiable_response,
)
from tuneforge.api.mood import get_mood, job_mood, mood
from tuneforge.api.openapi import add_contract_schemas
from tuneforge.api.system import STATIC_DIR, clear_cache, healthz, instruments, page
from tuneforge.contracts.limits import MAX_UPLOAD_BYTES
from tuneforge.settings import Settings


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        backend = Backend(settings)
        app.state.backend = backend  # before it starts: a stop signal during start-up reaches it
        backend.closing = bool(getattr(app.state, "stopping", False))  # or came before it was made
        try:
            await backend.start()
        except StoppedBeforeStart as stopped:
            # Not a failure: the server, told to stop, shuts down as soon as start-up returns.
            logging.getLogger("tuneforge.api").info("%s: stopping", stopped)
        try:
            yield
        finally:
            await backend.stop()

    def provide_backend(state: State) -> Backend:
        backend: Backend = state.backend
        return backend

    route_handlers: list = [download, JobController, healthz, clear_cache, instruments, page]
    route_handlers += [get_mood, mood, job_mood]
    if Path(STATIC_DIR).is_dir():
        route_handlers.append(create_static_files_router(path="/static", directories=[STATIC_DIR]))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = Litestar(
        route_handlers=route_handlers,
        dependencies={"backend": Provide(provide_backend, sync_to_thread=False)},
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(title="TuneForge", version="0.1.0", path="/schema"),
        request_max_body_size=MAX_UPLOAD_BYTES + 64 * 1024,
        exception_handlers={
            ServiceUnavailable: pipeline_error_response,
            ServiceTimeout: pipeline_error_response,
            RemoteError: pipeline_error_response,
            413: too_large_response,
            416: range_not_satisfiable_response,
            500: internal_error_response,
        },
    )
    add_contract_schemas(app.openapi_schema)
    return app
