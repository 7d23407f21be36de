"""Render options, blob references, durable job messages and their progress events."""

import hashlib
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

# A module import: contracts.mood imports this module too (for BlobRef).
from tuneforge.contracts import mood as _mood

AudioFormat = Literal["wav", "flac", "ogg"]
SampleRateHz = Literal[22050, 44100, 48000]
SoundFontName = Literal["fluidr3_gm", "timgm6mb"]
Stage = Literal["queued", "converting", "rendering", "analyzing", "done", "failed"]
JobStatus = Literal["queued", "running", "done", "failed"]

AUDIO_CONTENT_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
}
MIDI_CONTENT_TYPE = "audio/midi"


class RenderOptions(Struct, frozen=True, forbid_unknown_fields=True):
    """How to render: container `format`, `sample_rate_hz`, SoundFont, and whether to analyse mood."""

    format: AudioFormat = "wav"
    sample_rate_hz: SampleRateHz = 44100
    soundfont: SoundFontName = "fluidr3_gm"
    analyze_mood: bool = False


class BlobRef(Struct, frozen=True):
    """Where a blob lives (`uri` in the configured store), its content hash and size."""

    uri: Annotated[str, Meta(min_length=1, max_length=2048)]
    sha256: Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]
    size_bytes: Annotated[int, Meta(ge=0)]
    content_type: str = "application/octet-stream"


class ErrorInfo(Struct, frozen=True):
    """A failure as clients see it: an HTTP-like `code` (400 bad input, 500 internal) and words."""

    code: int
    message: str


# --- request-reply bodies (NATS micro endpoints) ---------------------------------------------


class SilentNotes(Struct, frozen=True):
    """Notes of one instrument that the SoundFont has no sample for (outside the keys it covers,
    e.g. FluidR3_GM's contrabass above A3): they are silent in the audio. `program` is the General
    MIDI program (the kit's number for drums); pitches are MIDI note numbers."""

    instrument: str
    program: int
    drums: bool
    count: int
    lowest_pitch: int
    highest_pitch: int
    playable_low_pitch: int | None  # the SoundFont's keys for this instrument; None: it has none
    playable_high_pitch: int | None
    message: str  # the same, in words


class ConvertReply(Struct, frozen=True):
    """`tuneforge.convert` reply: the Standard MIDI File written to the blob store."""

    midi: BlobRef
    tracks: int
    notes: int
    duration_seconds: float
    tempo_bpm: float


class ExportRequest(Struct, frozen=True):
    """`tuneforge.export` request: a MIDI blob and how to render it."""

    midi: BlobRef
    format: AudioFormat = "wav"
    sample_rate_hz: SampleRateHz = 44100
    soundfont: SoundFontName = "fluidr3_gm"


class ExportReply(Struct, frozen=True):
    """`tuneforge.export` reply: the rendered audio blob."""

    audio: BlobRef
    duration_seconds: float
    sample_rate_hz: int
    format: AudioFormat
    render_seconds: float
    silent_notes: list[SilentNotes] = msgspec.field(default_factory=list)


# --- durable jobs (JetStream work queue `tuneforge.jobs.<stage>`) ------------------------------


class ConvertJob(Struct, frozen=True, tag="convert", tag_field="kind"):
    """Turn a stored Score (JSON blob) into MIDI, then hand the job to the exporter."""

    job_id: str
    score: BlobRef
    options: RenderOptions = RenderOptions()


class ExportJob(Struct, frozen=True, tag="export", tag_field="kind"):
    """Render a stored MIDI file to audio; then analyse its mood or finish the job."""

    job_id: str
    midi: BlobRef
    options: RenderOptions = RenderOptions()


class MoodJob(Struct, frozen=True, tag="mood", tag_field="kind"):
    """Analyse the mood of rendered audio; the last stage of a render job."""

    job_id: str
    midi: BlobRef | None
    audio: BlobRef
    duration_seconds: float
    options: RenderOptions = RenderOptions()
    silent_notes: list[SilentNotes] = msgspec.field(default_factory=list)  # passed on to the result


Job = ConvertJob | ExportJob | MoodJob


class JobResult(Struct, frozen=True):
    """What a finished render job produced."""

    midi: BlobRef
    audio: BlobRef
    duration_seconds: float
    sample_rate_hz: int
    format: AudioFormat
    mood: "_mood.Mood | None" = None
    silent_notes: list[SilentNotes] = msgspec.field(default_factory=list)  # notes the audio lacks


# --- progress events (`tuneforge.events.<job_id>`, persisted in a stream) --------------------


class Progress(Struct, frozen=True, tag="progress", tag_field="event"):
    job_id: str
    stage: Stage
    percent: Annotated[float, Meta(ge=0, le=100)]
    at_unix: float
    detail: str = ""  # words for people (e.g. "waiting for a mood replica"), or nothing
    worker: str = ""  # the replica that sent it (host:pid): for operators and tests, not for people


class Done(Struct, frozen=True, tag="done", tag_field="event"):
    job_id: str
    result: JobResult
    at_unix: float


class Failed(Struct, frozen=True, tag="failed", tag_field="event"):
    job_id: str
    stage: Stage
    error: ErrorInfo
    at_unix: float


JobEvent = Progress | Done | Failed


def jobs_subject(stage: Literal["convert", "export", "mood"]) -> str:
    return f"tuneforge.jobs.{stage}"


def events_subject(job_id: str) -> str:
    return f"tuneforge.events.{job_id}"


def input_key(kind: str, payload: bytes, options: RenderOptions) -> str:
    """Content address of a render: the same input and options always give the same key."""
    digest = hashlib.sha256()
    digest.update(kind.encode() + b"\0")
    digest.update(payload)
    digest.update(b"\0" + msgspec.json.encode(options))
    return digest.hexdigest()
