"""Reading render requests: a Grid or Score JSON body, or a Standard MIDI File upload.

Everything is validated here, at the edge, with the contracts' own rules; what is wrong
becomes a 400 whose `detail` says what and where.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
from litestar import Request, Response
from litestar.datastructures import UploadFile
from litestar.exceptions import ClientException, HTTPException

from tuneforge.api.backend import RenderInput
from tuneforge.contracts.jobs import RenderOptions
from tuneforge.contracts.limits import MAX_DURATION_SECONDS, MAX_MIDI_BYTES, MAX_UPLOAD_BYTES
from tuneforge.contracts.midi import MidiError, inspect_midi, is_midi, playable_midi
from tuneforge.contracts.music import MusicError, decode_json_object, decode_music, looks_like_json

MIDI_TYPES = {"audio/midi", "audio/x-midi", "audio/mid", "application/x-midi", "audio/sp-midi"}
OPTION_FIELDS = {"format", "sample_rate_hz", "soundfont", "analyze_mood"}
TRUE_WORDS, FALSE_WORDS = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class PayloadTooLarge(HTTPException):
    status_code = 413


def too_large_response(request: Request[Any, Any, Any], error: HTTPException) -> Response[dict[str, Any]]:
    """413 with the limit in words: ours say which limit; Litestar's own (a body over the route's
    `request_max_body_size`, stopped before it is all read) says only "Request Entity Too Large"."""
    if isinstance(error, PayloadTooLarge):
        detail = error.detail
    else:
        limit = request.route_handler.resolve_request_max_body_size() or MAX_UPLOAD_BYTES
        limit -= FORM_OVERHEAD_BYTES
        detail = (
            f"the request body is larger than the {limit} bytes ({limit // (1024 * 1024)} MiB) allowed here"
        )
    return Response({"status_code": 413, "detail": detail}, status_code=413)


# Room above a file's limit for a multipart form's boundaries and headers.
FORM_OVERHEAD_BYTES = 64 * 1024


def body_limit(max_file_bytes: int) -> int:
    """A route's `request_max_body_size` for files of up to `max_file_bytes`."""
    return max_file_bytes + FORM_OVERHEAD_BYTES


class ReceivedFile(msgspec.Struct, frozen=True):
    """An upload written to disk while it arrived, with its sha256 and first bytes."""

    path: Path
    sha256: str
    size_bytes: int
    content_type: str
    head: bytes  # the first bytes, to tell MIDI, JSON and audio apart


def _append(out: BinaryIO, digest: Any, chunk: bytes) -> None:
    digest.update(chunk)
    out.write(chunk)


def _new_scratch_file(work_dir: Path) -> Path:
    work_dir.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(suffix=".upload", dir=work_dir)
    os.close(handle)
    return Path(name)


@asynccontextmanager
async def received_file(
    request: Request[Any, Any, Any], max_bytes: int, work_dir: Path
) -> AsyncIterator[ReceivedFile]:
    """The upload (raw body, streamed to disk; or multipart field `file`) as a file, removed afterwards."""
    path = await asyncio.to_thread(_new_scratch_file, work_dir)
    kind = media_type(request)

    async def arriving() -> AsyncIterator[bytes]:
        nonlocal kind
        if kind == "multipart/form-data":  # Litestar parses the form in memory
            data, kind, _ = await read_upload(request, max_bytes)
            yield data
        else:
            async for chunk in request.stream():
                yield chunk

    try:
        digest, size, head = hashlib.sha256(), 0, b""
        out = await asyncio.to_thread(path.open, "wb")
        with out:
            async for chunk in arriving():
                size += len(chunk)
                if size > max_bytes:
                    _check_size(size, max_bytes)  # stop reading once over the limit
                head += chunk[: max(0, 64 - len(head))]
                await asyncio.to_thread(_append, out, digest, chunk)  # a form's file arrives as one chunk
        _check_size(size, max_bytes)
        yield ReceivedFile(
            path=path, sha256=digest.hexdigest(), size_bytes=size, content_type=kind, head=head
        )
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)


def media_type(request: Request[Any, Any, Any]) -> str:
    return (request.headers.get("content-type") or "").split(";")[0].strip().lower()


def _normalised_options(given: dict[str, Any]) -> dict[str, Any]:
    """Options as typed in a query string or a form (all text) read as the JSON body would give them."""
    fields = dict(given)
    rate = fields.get("sample_rate_hz")
    if isinstance(rate, str):
        try:
            hz = float(rate)
        except ValueError:
            hz = math.nan
        if not hz.is_integer():
            raise ClientException(
                f"invalid render options: sample_rate_hz must be a whole number of Hz, not {rate!r}"
            )
        fields["sample_rate_hz"] = int(hz)
    flag = fields.get("analyze_mood")
    if isinstance(flag, str):
        if flag.lower() not in TRUE_WORDS | FALSE_WORDS:
            raise ClientException(f"invalid render options: analyze_mood must be true or false, not {flag!r}")
        fields["analyze_mood"] = flag.lower() in TRUE_WORDS
    return fields


def _validated_options(fields: dict[str, Any]) -> RenderOptions:
    try:
        return msgspec.convert(fields, RenderOptions)
    except msgspec.ValidationError as error:
        raise ClientException(f"invalid render options: {error}") from None


def _options(raw: dict[str, Any], query: dict[str, Any]) -> RenderOptions:
    """Options from the body (or form fields) and from the query string, each checked: an invalid
    query is an error even where the body gives the option, and the two may not disagree."""
    from_query, from_body = _normalised_options(query), _normalised_options(raw)
    _validated_options(from_query)
    for name in sorted(from_query.keys() & from_body.keys()):
        if from_query[name] != from_body[name]:
            raise ClientException(
                f"render option {name} is given twice, differently: {from_query[name]!r} in the query "
                f"string and {from_body[name]!r} in the body; give it once"
            )
    return _validated_options({**from_query, **from_body})


def refuse_unknown_query(request: Request[Any, Any, Any], known: set[str]) -> None:
    """A query parameter the route does not read is a 400 (`?fromat=ogg` would render a WAV)."""
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
        raise ClientException(f"unknown query parameter {', '.join(map(repr, unknown))}: {takes}")


def query_options(request: Request[Any, Any, Any]) -> dict[str, Any]:
    refuse_unknown_query(request, OPTION_FIELDS)
    return dict(request.query_params.items())


async def read_upload(
    request: Request[Any, Any, Any], max_bytes: int = MAX_UPLOAD_BYTES
) -> tuple[bytes, str, dict[str, Any]]:
    """The uploaded file (raw body or multipart field `file`), its content type and other form fields."""
    kind = media_type(request)
    if kind == "multipart/form-data":
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ClientException("multipart upload needs a file in the field 'file'")
        data = await upload.read(max_bytes + 1)
        fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
        return _checked_size(data, max_bytes), (upload.content_type or "").lower(), fields
    data = await request.body()
    return _checked_size(data, max_bytes), kind, {}


def _check_size(size_bytes: int, max_bytes: int) -> None:
    """413 for an upload over `max_bytes` (checked as it arrives), 400 for an empty one."""
    if size_bytes > max_bytes:
        raise PayloadTooLarge(
            f"the upload is larger than the {max_bytes} bytes ({max_bytes // (1024 * 1024)} MiB) allowed"
        )
    if size_bytes == 0:
        raise ClientException("the upload is empty: send the file as the body or as multipart field 'file'")


def _checked_size(data: bytes, max_bytes: int) -> bytes:
    _check_size(len(data), max_bytes)
    return data


def check_midi_size(size_bytes: int) -> None:
    """413 for a MIDI file over `MAX_MIDI_BYTES`."""
    if size_bytes > MAX_MIDI_BYTES:
        raise PayloadTooLarge(f"MIDI files are limited to {MAX_MIDI_BYTES} bytes")


async def midi_input(data: bytes, options: RenderOptions) -> RenderInput:
    """A MIDI upload as a render input; 4xx if it is too large or not playable."""
    check_midi_size(len(data))
    try:
        # Reading a 4-MiB file takes seconds: in a thread, so other requests (progress streams,
        # health checks) are answered meanwhile.
        data = await asyncio.to_thread(_checked_midi, data)
    except MidiError as error:
        raise ClientException(str(error)) from None
    return RenderInput(kind="midi", options=options, midi=data)


def _checked_midi(data: bytes) -> bytes:
    playable = playable_midi(data)  # RMID unwrapped, a header's track count repaired
    inspect_midi(playable, MAX_DURATION_SECONDS)
    return playable


async def read_render_input(request: Request[Any, Any, Any]) -> RenderInput:
    """A render request from any of the accepted bodies; options from the body or the query."""
    kind = media_type(request)
    defaults = query_options(request)
    if kind in MIDI_TYPES or kind == "multipart/form-data" or kind == "application/octet-stream":
        data, file_type, fields = await read_upload(request, MAX_MIDI_BYTES)
        options = _options({k: v for k, v in fields.items() if k in OPTION_FIELDS}, defaults)
        if file_type == "application/json" or looks_like_json(data):
            return _music_input(data, options)
        return await midi_input(data, options)
    body = await request.body()
    if not body:
        raise ClientException("the request has no body: send a Grid or Score as JSON, or a MIDI file")
    # A MIDI file is known by its first bytes, whatever its label: `curl --data-binary @song.mid`
    # says form data, other clients audio/x-mid or application/x-mid.
    if is_midi(body):
        return await midi_input(body, _options({}, defaults))
    # `curl -d` and plain HTML forms label JSON as form data; accept it when it is JSON.
    if kind not in ("", "application/json", "text/plain", "application/x-www-form-urlencoded") and not (
        looks_like_json(body)
    ):
        raise ClientException(
            f"unsupported content type {kind!r}: send JSON (a Grid or a Score) or a MIDI file (audio/midi)"
        )
    try:
        raw = decode_json_object(body)
    except MusicError as error:
        raise ClientException(str(error)) from None
    raw_options = raw.pop("options", None) or {}
    if not isinstance(raw_options, dict):
        raise ClientException("'options' must be an object")
    misplaced = sorted(OPTION_FIELDS & raw.keys())
    if misplaced:
        raise ClientException(
            f'render options go in "options": {{...}} or in the query string, not beside the music: '
            f"{', '.join(misplaced)}"
        )
    return _music_input(raw, _options(raw_options, defaults))


def _music_input(body: bytes | dict[str, Any], options: RenderOptions) -> RenderInput:
    try:
        score = decode_music(body)
    except MusicError as error:
        raise ClientException(str(error)) from None
    return RenderInput(kind="score", options=options, score=score)
