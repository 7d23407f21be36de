"""Standard MIDI File reading and validation at the edge: parse, check limits, report clearly.

Files found in the wild are read as players read them: a RIFF `RMID` wrapper (Windows `.rmi`)
is taken off, data bytes above 127 are clipped, and an impossible key signature (a meta event
that only labels the score) does not make the whole file unreadable.
"""

import io
import math
import struct

import mido
from mido.midifiles import meta as mido_meta

from .limits import MAX_MIDI_NOTES, seconds_over


class MidiError(ValueError):
    """Bytes that are not a usable Standard MIDI File."""


class _TolerantKeySignature(mido_meta.MetaSpec_key_signature):
    """mido's key signature, reading one it cannot name (e.g. 9 sharps) as C rather than failing."""

    type = "key_signature"

    def decode(self, message: mido.MetaMessage, data: list[int]) -> None:
        try:
            super().decode(message, data)
        except mido_meta.KeySignatureError:
            message.key = "C"


# The key signature is only a label (nothing here plays or analyses by it); without this, mido
# refuses files that FluidSynth and every player accept. Registered once, for this process.
mido_meta.add_meta_spec(_TolerantKeySignature)


def standard_midi_bytes(data: bytes) -> bytes:
    """The Standard MIDI File itself: RIFF `RMID` files (Windows `.rmi`) carry one in a `data` chunk."""
    if data[:4] != b"RIFF" or data[8:12] != b"RMID":
        return data
    position = 12
    while position + 8 <= len(data):
        chunk, size = data[position : position + 4], struct.unpack("<I", data[position + 4 : position + 8])[0]
        if chunk == b"data":
            return data[position + 8 : position + 8 + size]
        position += 8 + size + (size & 1)  # RIFF chunks are padded to an even length
    raise MidiError("a RIFF MIDI (RMID) file without its 'data' chunk")


def _tracks_as_players_read_them(smf: bytes) -> bytes:
    """The header and its tracks, read as players read them rather than the file refused: chunks of
    other kinds between them are skipped (the standard tells readers to), a header that declares
    more tracks than the file holds (files cut short by editors) is corrected to the tracks present,
    and a last track whose declared length runs past the end of the file is read to the end (the
    parser still reports one whose events stop short). A file with nothing to mend is returned as is."""
    if smf[:4] != b"MThd" or len(smf) < 14:
        return smf
    header_size = struct.unpack(">I", smf[4:8])[0]
    declared = struct.unpack(">H", smf[10:12])[0]
    position, mended = 8 + header_size, False
    tracks: list[bytes] = []
    while position + 8 <= len(smf) and len(tracks) < declared:
        kind, size = smf[position : position + 4], struct.unpack(">I", smf[position + 4 : position + 8])[0]
        body = smf[position + 8 : position + 8 + size]
        if kind == b"MTrk":
            tracks.append(body)
            mended |= len(body) < size  # runs past the end of the file
        elif tracks or (kind.isascii() and kind.isalnum()):
            mended = True  # another kind of chunk (the first one must look like a chunk's name)
        else:
            return smf  # not chunks at all: left for the parser to report
        position += 8 + size
    if not tracks or (not mended and len(tracks) == declared):
        return smf
    header = smf[: 8 + header_size]
    header = header[:10] + struct.pack(">H", len(tracks)) + header[12:]
    return header + b"".join(b"MTrk" + struct.pack(">I", len(t)) + t for t in tracks)


def _repaired(data: bytes) -> bytes:
    return _tracks_as_players_read_them(standard_midi_bytes(data))


def playable_midi(data: bytes) -> bytes:
    """The bytes to store and render: the bare Standard MIDI File, its track count as present; a
    file with data bytes above 127 (which FluidSynth drops) is written out again as mido reads it."""
    smf = _repaired(data)
    try:
        mido.MidiFile(file=io.BytesIO(smf))
    except (OSError, ValueError) as error:  # mido raises OSError for a data byte over 127
        if "data byte" in str(error):
            out = io.BytesIO()
            parse_midi(smf).save(file=out)
            return out.getvalue()
    except Exception:
        pass  # unusable: parse_midi says why
    return smf


def renderable_midi(midi: mido.MidiFile, max_seconds: float) -> tuple[bytes, float]:
    """The file the synthesizer is handed, and its length (checked as `inspect_midi` does), for a
    file `parse_midi` has read: written out again from this module's tolerant reading.

    FluidSynth's own reader gives up, silently and part-way, on files every other player reads:
    running status carried across a meta event (a 291-s piece rendered 0.09 s), data bytes above
    127. mido writes a strict file of the same events and timing.
    """
    seconds = _checked_length(midi, max_seconds)
    out = io.BytesIO()
    midi.save(file=out)
    return out.getvalue(), seconds


def is_midi(data: bytes) -> bool:
    """Whether bytes are a Standard MIDI File, bare or in a RIFF `RMID` wrapper."""
    return data[:4] == b"MThd" or (data[:4] == b"RIFF" and data[8:12] == b"RMID")


def parse_midi(data: bytes) -> mido.MidiFile:
    """A Standard MIDI File (or RMID), read tolerantly; `MidiError` with words if it is unusable."""
    try:
        midi = mido.MidiFile(file=io.BytesIO(_repaired(data)), clip=True)
    except EOFError:
        raise MidiError(
            "not a valid Standard MIDI File: it ends in the middle of its data (truncated?)"
        ) from None
    except MidiError:
        raise
    except Exception as error:  # mido raises what its parser meets: ValueError, KeyError, IndexError…
        raise MidiError(f"not a valid Standard MIDI File: {str(error) or type(error).__name__}") from None
    if midi.type == 2:
        raise MidiError("MIDI type 2 (asynchronous tracks) is not supported")
    if midi.ticks_per_beat <= 0:  # the header's top bit: SMPTE frames, which mido reads as < 0
        raise MidiError(
            "SMPTE (frames per second) timing is not supported: save the file with ticks per beat"
        )
    return midi


def inspect_midi(data: bytes, max_seconds: float) -> float:
    """Parse a Standard MIDI File and return its length in seconds; `MidiError` if unusable."""
    return _checked_length(parse_midi(data), max_seconds)


def _checked_length(midi: mido.MidiFile, max_seconds: float) -> float:
    try:
        seconds = float(midi.length)
    except Exception as error:
        raise MidiError(f"not a valid Standard MIDI File: {str(error) or type(error).__name__}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise MidiError("the MIDI file contains no timed events to play")
    if seconds > max_seconds:
        lasts = seconds_over(seconds, max_seconds)
        raise MidiError(f"the MIDI file lasts {lasts} s: at most {max_seconds:.0f} s is allowed")
    notes = sum(1 for track in midi.tracks for m in track if m.type == "note_on" and m.velocity > 0)
    # A file of tempo and end-of-track events only would render as seconds of silence, called done.
    if notes == 0:
        raise MidiError("the MIDI file has no notes to play")
    if notes > MAX_MIDI_NOTES:
        raise MidiError(f"the MIDI file has {notes} notes: at most {MAX_MIDI_NOTES} are allowed")
    return seconds
