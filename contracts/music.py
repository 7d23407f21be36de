"""Musical input: the `Score` (programs) and the `Grid` (the original page's body)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from .instruments import frequency_to_midi, midi_number, program_number
from .limits import (
    MAX_DURATION_SECONDS,
    MAX_GRID_COLUMNS,
    MAX_MELODIC_CHANNELS,
    MAX_NOTES,
    MAX_TEMPO_BPM,
    MAX_TRACKS,
    MIN_TEMPO_BPM,
    seconds_over,
)

TempoBpm = Annotated[float, Meta(ge=MIN_TEMPO_BPM, le=MAX_TEMPO_BPM)]
Beats = Annotated[float, Meta(ge=0, le=100_000)]
PositiveBeats = Annotated[float, Meta(gt=0, le=100_000)]
Velocity = Annotated[int, Meta(ge=1, le=127)]


class Note(Struct, frozen=True, forbid_unknown_fields=True):
    """One note: `pitch` is a MIDI number (0-127) or a name like "C#4" (C4 = 60)."""

    pitch: int | str
    start_beats: Beats
    duration_beats: PositiveBeats
    velocity: Velocity = 100

    def __post_init__(self) -> None:
        midi_number(self.pitch)  # raises ValueError, which msgspec reports as a ValidationError

    @property
    def midi_pitch(self) -> int:
        return midi_number(self.pitch)

    @property
    def end_beats(self) -> float:
        return self.start_beats + self.duration_beats


class Track(Struct, frozen=True, forbid_unknown_fields=True):
    """One part: a General MIDI instrument (number or name) or, with `drums`, channel 10."""

    notes: list[Note]
    instrument: int | str = 0
    drums: bool = False
    name: Annotated[str, Meta(max_length=200)] | None = None  # any language: written as UTF-8

    def __post_init__(self) -> None:
        program_number(self.instrument)

    @property
    def program(self) -> int:
        return program_number(self.instrument)


class Score(Struct, frozen=True, forbid_unknown_fields=True):
    """A piece of music as programs send it; the contract every input converts to."""

    tracks: list[Track]
    tempo_bpm: TempoBpm = 120.0
    time_signature: tuple[Annotated[int, Meta(ge=1, le=64)], Annotated[int, Meta(ge=1, le=64)]] = (
        4,
        4,
    )

    def __post_init__(self) -> None:
        if not self.tracks:
            raise ValueError("a score needs at least one track")
        if len(self.tracks) > MAX_TRACKS:
            raise ValueError(f"{len(self.tracks)} tracks: at most {MAX_TRACKS} are allowed")
        melodic_programs = {t.program for t in self.tracks if not t.drums}
        if len(melodic_programs) > MAX_MELODIC_CHANNELS:
            raise ValueError(
                f"{len(melodic_programs)} different melodic instruments: at most {MAX_MELODIC_CHANNELS} fit"
                " in MIDI (16 channels, one kept for drums; tracks of one instrument share a channel)"
            )
        note_count = self.note_count
        if note_count == 0:
            raise ValueError("the score has no notes: give at least one track at least one note")
        if note_count > MAX_NOTES:
            raise ValueError(f"{note_count} notes: at most {MAX_NOTES} are allowed")
        denominator = self.time_signature[1]
        if denominator & (denominator - 1):
            raise ValueError(f"time signature denominator {denominator} must be a power of two")
        if self.duration_seconds > MAX_DURATION_SECONDS:
            raise ValueError(
                f"the music lasts {seconds_over(self.duration_seconds, MAX_DURATION_SECONDS)} s: at most "
                f"{MAX_DURATION_SECONDS:.0f} s ({MAX_DURATION_SECONDS / 60:.0f} minutes) is allowed"
            )

    def canonical(self) -> Score:
        """The same music spelled one way (MIDI numbers, program numbers, sorted notes): the cache key."""
        tracks = [
            Track(
                notes=sorted(
                    (
                        Note(n.midi_pitch, float(n.start_beats), float(n.duration_beats), n.velocity)
                        for n in t.notes
                    ),
                    key=lambda n: (n.start_beats, n.pitch, n.duration_beats, n.velocity),
                ),
                instrument=0 if t.drums else t.program,
                drums=t.drums,
                name=t.name,
            )
            for t in self.tracks
        ]
        return Score(tracks=tracks, tempo_bpm=float(self.tempo_bpm), time_signature=self.time_signature)

    @property
    def note_count(self) -> int:
        return sum(len(t.notes) for t in self.tracks)

    @property
    def duration_beats(self) -> float:
        return max((n.end_beats for t in self.tracks for n in t.notes), default=0.0)

    @property
    def duration_seconds(self) -> float:
        return self.duration_beats * 60.0 / self.tempo_bpm


class Grid(Struct, frozen=True, forbid_unknown_fields=True):
    """The original TuneForge page's body: one column per beat, each a list of frequencies.

    Tempo is `speed` x 120 bpm; `instrument` is a General MIDI program number (0-based).
    """

    notes: list[list[float]]
    speed: Annotated[float, Meta(ge=MIN_TEMPO_BPM / 120, le=MAX_TEMPO_BPM / 120)] = 1.0
    instrument: Annotated[int, Meta(ge=0, le=127)] = 0

    def __post_init__(self) -> None:
        if len(self.notes) > MAX_GRID_COLUMNS:
            raise ValueError(f"{len(self.notes)} columns: at most {MAX_GRID_COLUMNS} are allowed")
        for column in self.notes:
            for frequency in column:
                frequency_to_midi(frequency)

    def to_score(self) -> Score:
        notes = [
            Note(pitch=frequency_to_midi(f), start_beats=float(beat), duration_beats=1.0)
            for beat, column in enumerate(self.notes)
            for f in column
        ]
        if not notes:
            raise ValueError("the grid has no notes: select at least one cell")
        return Score(tracks=[Track(notes=notes, instrument=self.instrument)], tempo_bpm=120.0 * self.speed)


class MusicError(ValueError):
    """Input that is not valid music; the message says what is wrong and where."""


UTF8_BOM = b"\xef\xbb\xbf"


def looks_like_json(data: bytes) -> bool:
    """Whether a body starts like a JSON object or array (after a byte order mark and whitespace)."""
    return data.removeprefix(UTF8_BOM).lstrip()[:1] in (b"{", b"[")


def decode_json_object(body: bytes) -> dict[str, Any]:
    """The JSON object a Score or Grid arrives as; `MusicError` for anything else."""
    try:
        # Editors on Windows save JSON with a UTF-8 byte order mark; RFC 8259 lets a parser skip it.
        raw = msgspec.json.decode(body.removeprefix(UTF8_BOM))
    except msgspec.DecodeError as error:
        raise MusicError(f"malformed JSON: {error}") from None
    except RecursionError:
        raise MusicError("malformed JSON: nested too deeply (no piece of music needs that)") from None
    if not isinstance(raw, dict):
        raise MusicError("expected a JSON object: a Score (with 'tracks') or a Grid (with 'notes')")
    return raw


def decode_music(body: bytes | dict[str, Any]) -> Score:
    """Decode a JSON `Score` or `Grid` (told apart by `tracks` vs `notes`) into a `Score`."""
    raw = decode_json_object(body) if isinstance(body, bytes | bytearray) else body
    if "tracks" in raw and "notes" in raw:
        raise MusicError("a body is a Score (with 'tracks') or a Grid (with 'notes'), not both")
    try:
        if "tracks" in raw:
            return msgspec.convert(raw, Score)
        if "notes" in raw:
            return msgspec.convert(raw, Grid).to_score()
    except msgspec.ValidationError as error:
        message = _with_known_fields(str(error), Score if "tracks" in raw else Grid)
        if message.endswith("`$.speed`") and (
            "Expected `float` >=" in message or "Expected `float` <=" in message
        ):
            message = (
                f"speed must be from {MIN_TEMPO_BPM / 120:.4g} to {MAX_TEMPO_BPM / 120:.4g}: the tempo is"
                f" speed x 120 bpm, and {MIN_TEMPO_BPM:.0f}-{MAX_TEMPO_BPM:.0f} bpm is allowed - at `$.speed`"
            )
        raise MusicError(message) from None
    except ValueError as error:
        raise MusicError(str(error)) from None
    raise MusicError("expected a Score (an object with 'tracks') or a Grid (an object with 'notes')")


def _with_known_fields(message: str, root: type[Struct]) -> str:
    """A misspelt field is an error (else `vel` would silently play at velocity 100): say which
    fields the object there has."""
    if not message.startswith("Object contains unknown field"):
        return message
    where = message.rpartition(" - at `")[2].rstrip("`") if " - at `" in message else "$"
    struct = Note if where.endswith("]") and ".notes[" in where else Track if ".tracks[" in where else root
    return f"{message}; {struct.__name__} fields are {', '.join(struct.__struct_fields__)}"
