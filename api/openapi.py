"""OpenAPI documentation of bodies that handlers read themselves (Grid, Score or a MIDI upload).

These endpoints accept several content types and tell a Grid from a Score by their fields,
so the body cannot be a single typed `data` parameter; the schema is documented here from
the contracts' own JSON Schema (msgspec), so it never drifts from what is validated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.openapi.spec import OpenAPI, OpenAPIMediaType, Operation, RequestBody

from tuneforge.contracts.jobs import RenderOptions
from tuneforge.contracts.music import Grid, Score

_REF = "#/components/schemas/{name}"
_SCHEMAS, _COMPONENTS = msgspec.json.schema_components([Score, Grid, RenderOptions], ref_template=_REF)
_SCORE_REF, _GRID_REF, _OPTIONS_REF = _SCHEMAS


def add_contract_schemas(schema: OpenAPI) -> None:
    """Add the contracts' schemas to the app's generated components (which replace configured ones)."""
    if schema.components.schemas is None:
        schema.components.schemas = {}
    schema.components.schemas.update(_COMPONENTS)  # plain JSON Schema dicts serialise as they are


def _render_body(description: str) -> RequestBody:
    music: dict[str, Any] = {
        "oneOf": [
            {"allOf": [_SCORE_REF, {"type": "object", "properties": {"options": _OPTIONS_REF}}]},
            {"allOf": [_GRID_REF, {"type": "object", "properties": {"options": _OPTIONS_REF}}]},
        ]
    }
    midi = {"type": "string", "format": "binary"}
    return RequestBody(
        required=True,
        description=description,
        content={
            "application/json": OpenAPIMediaType(schema=music),  # type: ignore[arg-type]
            "audio/midi": OpenAPIMediaType(schema=midi),  # type: ignore[arg-type]
            "multipart/form-data": OpenAPIMediaType(
                schema={"type": "object", "properties": {"file": midi}, "required": ["file"]}  # type: ignore[arg-type]
            ),
        },
    )


@dataclass
class RenderBodyOperation(Operation):
    """An operation whose body is a Score, a Grid (the original page's body) or a MIDI file."""

    def __post_init__(self) -> None:
        self.request_body = _render_body(
            "A Score (`tracks`), a Grid (`notes` as columns of frequencies), each with optional `options`; "
            "or a Standard MIDI File as the raw body (`audio/midi`) or the multipart field `file`. "
            "Options may also be given in the query string."
        )
