"""Which keys a SoundFont can sound, and the notes of a MIDI file it will leave silent.

A SoundFont instrument only sounds for the keys its zones cover: FluidR3_GM's contrabass stops at
A3 (MIDI 57), its tuba at C5 (72), its piano at C8 (108). FluidSynth plays a note outside them as
silence, without a word. The exporter reads each preset's keys from the SoundFont's `pdta` chunk
(the preset and instrument zones and their `keyRange` generators, SoundFont 2.04 §7) and counts
the notes that fall outside, so a job can say so instead of handing back a quiet file.
"""

from __future__ import annotations

import functools
import itertools
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import mido

from tuneforge.contracts.instruments import GM_PROGRAMS, pitch_name
from tuneforge.contracts.jobs import SilentNotes

DRUM_CHANNEL = 9  # channel 10: FluidSynth's percussion channel, bank 128
DRUM_BANK = 128
# Generator operators (SoundFont 2.04 §8.1.2).
GEN_INSTRUMENT = 41
GEN_KEY_RANGE = 43
GEN_SAMPLE_ID = 53
_PHDR = struct.Struct("<20sHHHIII")  # name, program, bank, first zone (bag), library, genre, morphology
_INST = struct.Struct("<20sH")  # name, first zone (bag)
_BAG = struct.Struct("<HH")  # first generator, first modulator
_GEN = struct.Struct("<HH")  # operator, amount (a key range: low byte, high byte)


class SoundFontError(ValueError):
    """A file that is not a SoundFont 2 this module can read."""


@dataclass(frozen=True)
class Preset:
    keys: frozenset[int]  # the MIDI keys that have a sample


def _chunks(handle: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(id, data offset, size) of each RIFF chunk between two offsets; seeks past the data."""
    offset = start
    while offset + 8 <= end:
        handle.seek(offset)
        header = handle.read(8)
        if len(header) < 8:
            return
        chunk_id, size = struct.unpack("<4sI", header)
        yield chunk_id, offset + 8, size
        offset += 8 + size + (size & 1)


def _records(data: bytes, layout: struct.Struct) -> list[tuple]:
    return [layout.unpack_from(data, i) for i in range(0, len(data) - layout.size + 1, layout.size)]


def _hydra(path: Path) -> dict[str, bytes]:
    """The sub-chunks of the `pdta` list, read without touching the (large) sample data."""
    with path.open("rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
            raise SoundFontError(f"{path.name} is not a SoundFont 2 file")
        riff_end = 8 + struct.unpack_from("<I", head, 4)[0]
        for chunk_id, offset, size in _chunks(handle, 12, riff_end):
            handle.seek(offset)
            if chunk_id == b"LIST" and handle.read(4) == b"pdta":
                parts = {}
                for sub_id, sub_offset, sub_size in _chunks(handle, offset + 4, offset + size):
                    handle.seek(sub_offset)
                    parts[sub_id.decode("latin-1")] = handle.read(sub_size)
                return parts
    raise SoundFontError(f"{path.name} has no preset data (pdta)")


def _zones(
    bags: list[tuple], gens: list[tuple], first: int, stop: int, target: int
) -> list[tuple[range, int]]:
    """The (key range, target) of each zone in `first:stop` that names a target (an instrument or a
    sample); a first zone without one is the global zone, whose key range the others default to."""
    found: list[tuple[range, int]] = []
    default = range(0, 128)
    for zone in range(first, min(stop, len(bags) - 1)):
        generators = gens[bags[zone][0] : bags[zone + 1][0]]
        key_range = next((range(a & 0xFF, (a >> 8) + 1) for op, a in generators if op == GEN_KEY_RANGE), None)
        pointed = next((a for op, a in generators if op == target), None)
        if pointed is None:
            if zone == first and key_range is not None:
                default = key_range
            continue
        found.append((key_range or default, pointed))
    return found


@functools.cache
def soundfont_presets(path: Path) -> dict[tuple[int, int], Preset]:
    """(bank, program) → the keys the preset can sound; read once per file."""
    parts = _hydra(path)
    try:
        headers = _records(parts["phdr"], _PHDR)
        preset_bags, preset_gens = _records(parts["pbag"], _BAG), _records(parts["pgen"], _GEN)
        instruments = _records(parts["inst"], _INST)
        inst_bags, inst_gens = _records(parts["ibag"], _BAG), _records(parts["igen"], _GEN)
    except KeyError as missing:
        raise SoundFontError(f"{path.name} lacks its {missing} chunk") from None

    @functools.cache
    def instrument_keys(index: int) -> frozenset[int]:
        if index + 1 >= len(instruments):  # the last record is the terminal "EOI"
            return frozenset()
        zones = _zones(inst_bags, inst_gens, instruments[index][1], instruments[index + 1][1], GEN_SAMPLE_ID)
        return frozenset(key for keys, _ in zones for key in keys)

    presets: dict[tuple[int, int], Preset] = {}
    for this, following in itertools.pairwise(headers):  # the last is the terminal "EOP"
        program, bank, first_bag = this[1], this[2], this[3]
        keys: set[int] = set()
        for key_range, instrument in _zones(
            preset_bags, preset_gens, first_bag, following[3], GEN_INSTRUMENT
        ):
            keys |= instrument_keys(instrument) & set(key_range)
        presets.setdefault((bank, program), Preset(frozenset(keys)))
    return presets


def _preset_for(
    presets: dict[tuple[int, int], Preset], bank: int, program: int, drums: bool
) -> tuple[int, int] | None:
    """The preset FluidSynth selects for a program change, with its fallbacks (fluid_synth.c,
    fluid_synth_program_change): drums use bank 128, then kit 0; melodic banks fall back to
    bank 0 with the same program, then to bank 0 program 0."""
    candidates = [(DRUM_BANK, program), (DRUM_BANK, 0)] if drums else [(bank, program), (0, program), (0, 0)]
    return next((c for c in candidates if c in presets), None)


def silent_notes(
    midi: mido.MidiFile, presets: dict[tuple[int, int], Preset], soundfont: str
) -> list[SilentNotes]:
    """The notes of `midi` that the SoundFont's presets cannot sound, grouped by instrument."""
    bank_select = [0] * 16
    selected: list[tuple[int, int] | None] = [
        _preset_for(presets, 0, 0, channel == DRUM_CHANNEL) for channel in range(16)
    ]
    silent: dict[tuple[bool, tuple[int, int] | None], list[int]] = {}
    for _, _, _, kind, channel, value in _channel_events(midi):
        drums = channel == DRUM_CHANNEL
        if kind == _BANK:
            bank_select[channel] = value  # FluidSynth's default "gs" style: the MSB is the bank
        elif kind == _PROGRAM:
            selected[channel] = _preset_for(presets, bank_select[channel], value, drums)
        else:
            preset = selected[channel]
            if preset is None or value not in presets[preset].keys:
                silent.setdefault((drums, preset), []).append(value)
    return [_describe(drums, preset, presets, notes, soundfont) for (drums, preset), notes in silent.items()]


_BANK, _PROGRAM, _NOTE = 0, 1, 2


def _channel_events(midi: mido.MidiFile) -> list[tuple[int, int, int, int, int, int]]:
    """(tick, track, index, kind, channel, value) of every bank select, program change and sounding
    note, in the order a player meets them (time, then track order, as mido.merge_tracks orders
    them, in a twentieth of its time: 0.24 s against 5.1 s for a 100,000-note file)."""
    events = []
    for track_index, track in enumerate(midi.tracks):
        tick = 0
        for index, message in enumerate(track):
            tick += message.time
            kind = message.type
            if kind == "note_on":
                if message.velocity > 0:
                    events.append((tick, track_index, index, _NOTE, message.channel, message.note))
            elif kind == "program_change":
                events.append((tick, track_index, index, _PROGRAM, message.channel, message.program))
            elif kind == "control_change" and message.control == 0:
                events.append((tick, track_index, index, _BANK, message.channel, message.value))
    events.sort()
    return events


def _describe(
    drums: bool,
    preset: tuple[int, int] | None,
    presets: dict[tuple[int, int], Preset],
    notes: list[int],
    soundfont: str,
) -> SilentNotes:
    keys = presets[preset].keys if preset is not None else frozenset()
    program = preset[1] if preset is not None else 0
    count, low_note, high_note = len(notes), min(notes), max(notes)
    plural, verb = ("", "makes") if count == 1 else ("s", "make")
    if drums:
        instrument, where = "drums", f"{soundfont}'s drum kit"
        what = f"{count} drum note{plural} (MIDI {_span(low_note, high_note, str)})"
    else:
        instrument = GM_PROGRAMS[program].replace("_", " ")
        where = f"{soundfont}'s {instrument}"
        what = f"{count} note{plural} of {instrument} ({_span(low_note, high_note, pitch_name)})"
    if not keys:
        why = f"{where} has no sound at all"
    else:
        low, high = min(keys), max(keys)
        if drums:
            why = f"{where} sounds keys {low}-{high}"
        elif low == 0:
            why = f"{where} sounds only up to {pitch_name(high)} (MIDI {high})"
        elif high == 127:
            why = f"{where} sounds only from {pitch_name(low)} (MIDI {low}) up"
        else:
            why = f"{where} sounds only from {pitch_name(low)} to {pitch_name(high)} (MIDI {low}-{high})"
    return SilentNotes(
        instrument=instrument,
        program=program,
        drums=drums,
        count=count,
        lowest_pitch=low_note,
        highest_pitch=high_note,
        playable_low_pitch=min(keys) if keys else None,
        playable_high_pitch=max(keys) if keys else None,
        message=f"{what} {verb} no sound: {why}",
    )


def _span(low: int, high: int, name: Callable[[int], str]) -> str:
    return name(low) if low == high else f"{name(low)} to {name(high)}"
