"""Mood endpoints: `POST /get_mood`, `POST /mood` and `GET /jobs/{id}/mood`.

- `POST /get_mood`: the same Grid or Score body as `/download` → the mood of the music it renders;
- `POST /mood`: an audio upload (WAV, FLAC, OGG, MP3 or AIFF) → its mood; a Standard MIDI File is
  rendered first and analysed with its MIDI features too. Raw body with its content type, or
  multipart field `file`;
- `GET /jobs/{id}/mood`: the mood of a finished job (analysed now if the job did not ask for it).

Moods are cached by the mood model's version and the sha256 of the audio (and of the MIDI, when it
informs the result): the mood actor advertises its model in `$SRV.INFO` metadata.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import soundfile
from litestar import Request, get, post
from litestar.exceptions import ClientException, HTTPException

from tuneforge.api.backend import Backend, RemoteError, RenderInput, ServiceTimeout, ServiceUnavailable
from tuneforge.api.inputs import (
    MIDI_TYPES,
    body_limit,
    check_midi_size,
    midi_input,
    read_render_input,
    received_file,
)
from tuneforge.api.jobs import DOWNLOAD_TIMEOUT_S, finished_job, http_error
from tuneforge.contracts.jobs import BlobRef, RenderOptions
from tuneforge.contracts.limits import MAX_AUDIO_SECONDS, MAX_AUDIO_UPLOAD_BYTES, sample_rate_problem
from tuneforge.contracts.midi import is_midi
from tuneforge.contracts.mood import Mood, MoodRequest
from tuneforge.contracts.music import looks_like_json

MOOD_TIMEOUT_S = 120.0
# soundfile's container names → (extension, content type) of what /mood accepts.
AUDIO_CONTAINERS: dict[str, tuple[str, str]] = {
    "WAV": ("wav", "audio/wav"),
    "WAVEX": ("wav", "audio/wav"),
    "RF64": ("wav", "audio/wav"),
    "FLAC": ("flac", "audio/flac"),
    "OGG": ("ogg", "audio/ogg"),
    "MP3": ("mp3", "audio/mpeg"),
    "AIFF": ("aiff", "audio/aiff"),
}
ACCEPTED = "WAV, FLAC, OGG Vorbis, MP3 or AIFF, or a MIDI file"


def looks_like_audio(head: bytes) -> bool:
    """Whether a file's first bytes are those of a container /mood reads (an MP3 may start with a
    frame's sync word or an ID3 tag)."""
    return (
        (head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE")
        or head[:4] in (b"fLaC", b"OggS")
        or head[:3] == b"ID3"
        or (head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"))
        or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)
    )


# Files libsndfile cannot open, named by their first bytes so the answer says what was sent.
KNOWN_OTHER_FILES: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "MP4/M4A audio (AAC or ALAC) is not accepted"),
    (0, bytes.fromhex("3026b2758e66cf11"), "WMA (ASF) audio is not accepted"),
    (0, b"\xff\xd8\xff", "this is a JPEG image, not audio"),
    (0, b"\x89PNG", "this is a PNG image, not audio"),
    (0, b"%PDF", "this is a PDF document, not audio"),
    (0, b"PK\x03\x04", "this is a ZIP archive, not audio"),
)


class UnsupportedMediaType(HTTPException):
    status_code = 415


def _unaccepted(head: bytes) -> str | None:
    """What a file libsndfile could not open is, when its first bytes say so."""
    if head[:4] == b"OggS" and b"OpusHead" in head:
        return "this Ogg Opus file could not be decoded (libsndfile reads only some Opus encoders' files)"
    if head[:4] == b"OggS" and b"\x7fFLAC" in head:
        return "FLAC in an Ogg container is not accepted (FLAC in its own .flac container is)"
    return next((what for at, magic, what in KNOWN_OTHER_FILES if head[at : at + len(magic)] == magic), None)


def audio_container(path: Path) -> tuple[str, str]:
    """(extension, content type) of an audio file soundfile can decode; a clear 4xx otherwise."""
    try:
        with soundfile.SoundFile(str(path)) as f:
            container = f.format
            if f.samplerate <= 0 or f.channels <= 0:
                raise ClientException("the audio file has no samples")
            rate_problem = sample_rate_problem(f.samplerate)
            seconds = f.frames / f.samplerate
            f.read(min(f.samplerate, 1 << 16), dtype="float32")  # decode a little: catches corrupt data
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        with path.open("rb") as file:
            unaccepted = _unaccepted(file.read(64))
        if unaccepted:
            raise UnsupportedMediaType(f"{unaccepted}: send {ACCEPTED}") from None
        reason = getattr(error, "error_string", None) or str(error)  # libsndfile's words, not our paths
        raise ClientException(f"not a readable audio file (send {ACCEPTED}): {reason}") from None
    if container not in AUDIO_CONTAINERS:
        raise UnsupportedMediaType(f"{container} audio is not accepted: send {ACCEPTED}")
    if rate_problem:
        raise ClientException(rate_problem)
    if seconds > MAX_AUDIO_SECONDS:
        raise ClientException(
            f"the audio lasts {seconds:.0f} s: at most {MAX_AUDIO_SECONDS:.0f} s "
            f"({MAX_AUDIO_SECONDS / 60:.0f} minutes) is analysed"
        )
    return AUDIO_CONTAINERS[container]


async def mood_cache_key(backend: Backend, audio_sha256: str, midi_sha256: str | None = None) -> str:
    """Moods are cached per model version, so a retrained model is not answered from old results."""
    key = audio_sha256 if midi_sha256 is None else f"{audio_sha256}:{midi_sha256}"
    return f"{await backend.mood_model()}:{key}"


async def mood_of_audio(backend: Backend, audio: BlobRef, midi: BlobRef | None = None) -> Mood:
    """Ask the mood actor, through the cache (keyed by the model, the audio's sha256 and the MIDI's)."""
    key = await mood_cache_key(backend, audio.sha256, midi.sha256 if midi else None)
    cached = await backend.cache.get("mood", key, Mood)
    return cached if cached is not None else await analyse_and_cache(backend, key, audio, midi)


async def analyse_and_cache(backend: Backend, key: str, audio: BlobRef, midi: BlobRef | None = None) -> Mood:
    """Ask the mood actor and cache its answer under `key`."""
    try:
        mood: Mood = await backend.request(
            "tuneforge.mood", MoodRequest(audio=audio, midi=midi), Mood, timeout_s=MOOD_TIMEOUT_S
        )
    except (ServiceUnavailable, ServiceTimeout, RemoteError) as error:
        raise http_error(error) from None
    await backend.cache.set("mood", key, mood)
    return mood


async def mood_of_render(backend: Backend, render: RenderInput) -> Mood:
    """Render (through the job pipeline, ending with the mood stage) and return the mood."""
    render = RenderInput(
        kind=render.kind,
        options=msgspec.structs.replace(render.options, analyze_mood=True),
        score=render.score,
        midi=render.midi,
    )
    try:
        _, result = await backend.render_and_wait(render, DOWNLOAD_TIMEOUT_S)
    except (ServiceUnavailable, ServiceTimeout, RemoteError) as error:
        raise http_error(error) from None
    if result.mood is None:
        raise HTTPException(status_code=502, detail="the render finished without a mood analysis")
    return result.mood


@post("/get_mood", status_code=200, summary="The mood of the music a Grid, a Score or a MIDI file renders to")
async def get_mood(request: Request[Any, Any, Any], backend: Backend) -> Mood:
    """The same bodies as `/download`: rendered with the mood stage, the `Mood` is returned."""
    return await mood_of_render(backend, await read_render_input(request))


@post(
    "/mood",
    status_code=200,
    summary="The mood of an uploaded audio file (or MIDI file)",
    request_max_body_size=body_limit(MAX_AUDIO_UPLOAD_BYTES),
)
async def mood(request: Request[Any, Any, Any], backend: Backend) -> Mood:
    """WAV, FLAC, OGG, MP3 or AIFF (raw body with its content type, or multipart field `file`) → `Mood`.

    A Standard MIDI File is rendered first and analysed with its MIDI features too. A raw body is
    streamed to disk as it arrives, so a long WAV does not sit in memory. What a file is, is read
    from its first bytes; its content type only decides where they say nothing (Postman's raw mode
    and `fetch` with a string body label a FLAC `text/plain`).
    """
    work_dir = backend.settings.data_dir / "work" / "api"
    async with received_file(request, MAX_AUDIO_UPLOAD_BYTES, work_dir) as upload:
        audio_bytes = looks_like_audio(upload.head)
        if is_midi(upload.head) or (upload.content_type in MIDI_TYPES and not audio_bytes):
            check_midi_size(upload.size_bytes)  # before the file is read into memory
            midi = await asyncio.to_thread(upload.path.read_bytes)
            return await mood_of_render(backend, await midi_input(midi, RenderOptions(analyze_mood=True)))
        if looks_like_json(upload.head):
            raise UnsupportedMediaType(
                "POST /mood takes an audio or MIDI file; send Grid or Score JSON to /get_mood"
            )
        extension, audio_type = await asyncio.to_thread(audio_container, upload.path)
        # Looked up before the upload is stored: a repeated upload costs no blob write.
        key = await mood_cache_key(backend, upload.sha256)
        cached = await backend.cache.get("mood", key, Mood)
        if cached is not None:
            return cached
        ref = await backend.blobs.put_file(upload.path, "uploads", extension, audio_type)
    return await analyse_and_cache(backend, key, ref)


@get("/jobs/{job_id:str}/mood", summary="The mood of a finished job's audio")
async def job_mood(job_id: str, backend: Backend) -> Mood:
    """The job's mood; analysed now (and cached) if the job was rendered without `analyze_mood`."""
    _, result = await finished_job(backend, job_id)
    if result.mood is not None:
        return result.mood
    return await mood_of_audio(backend, result.audio, result.midi)
