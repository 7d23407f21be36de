"""Standard MIDI File validation at the edge: parse, check limits, report clearly."""

import io
import math

import mido


class MidiError(ValueError):
    """Bytes that are not a usable Standard MIDI File."""


def inspect_midi(data: bytes, max_seconds: float) -> float:
    """Parse a Standard MIDI File and return its length in seconds; `MidiError` if unusable."""
    try:
        midi = mido.MidiFile(file=io.BytesIO(data))
        if midi.type == 2:
            raise MidiError("MIDI type 2 (asynchronous tracks) is not supported")
        if midi.ticks_per_beat <= 0:  # the header's top bit: SMPTE frames, which mido reads as < 0
            raise MidiError(
                "SMPTE (frames per second) timing is not supported: save the file with ticks per beat"
            )
        seconds = float(midi.length)
    except MidiError:
        raise
    except EOFError:
        raise MidiError(
            "not a valid Standard MIDI File: it ends in the middle of its data (truncated?)"
        ) from None
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise MidiError(f"not a valid Standard MIDI File: {str(error) or type(error).__name__}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise MidiError("the MIDI file contains no timed events to play")
    if seconds > max_seconds:
        raise MidiError(f"the MIDI file lasts {seconds:.1f} s: at most {max_seconds:.0f} s is allowed")
    return seconds
