"""Band arrangements of a solo piano part: an augmentation for training the mood model.

EMOPIA is solo piano; the music people compose on the page, and much they upload, is a band:
a lead, a bass line, pads and drums. A model that only ever heard piano read drums and a bass
as "tense" whatever the music said. `arrange` turns a clip into a band playing the same music:
the piano part on a lead instrument, a bass on the lowest note struck each beat, a pad on each
bar's main pitch classes and a drum pattern, all following the piece's own beat and dynamics.
It is built from the notes alone, never from the clip's label, so it adds no mood of its own.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

import mido
import numpy as np

from tuneforge.actors.mood import features as F

# General MIDI programs (0-based) for each part.
LEAD_PROGRAMS = (0, 1, 2, 4, 5, 11, 16, 24, 25, 26)  # pianos, e-pianos, vibraphone, organ, guitars
BASS_PROGRAMS = (32, 33, 34, 35, 38)  # acoustic, finger, pick, fretless, synth bass
PAD_PROGRAMS = (48, 49, 50, 52, 61, 89)  # strings, choir, brass section, warm pad
PAD_PROBABILITY = 0.5
DRUMS_PROBABILITY = 0.85
BEATS_PER_BAR = 4
DRUM_CHANNEL = 9
LEAD_CHANNEL, BASS_CHANNEL, PAD_CHANNEL = 0, 1, 2
BASS_LOWEST = 28  # E1: the bass plays each beat's lowest pitch class in E1..D#2
PAD_LOWEST = 55  # G3: pad voices lie in G3..F#4
PAD_VOICES = 3
PAD_VELOCITY_RATIO = 0.6
TICKS_PER_BEAT = 480
WRITE_TEMPO_BPM = 120.0  # the file's own tempo: times are written in seconds, not in the piece's beats

# One bar of each pattern: (beat within the bar, GM drum note, velocity relative to the music's).
KICK, SNARE, CLOSED_HAT, OPEN_HAT, RIDE, SIDE_STICK, CLAP = 36, 38, 42, 46, 51, 37, 39
EIGHTHS = tuple(i / 2 for i in range(2 * BEATS_PER_BAR))
DRUM_PATTERNS: dict[str, tuple[tuple[float, int, float], ...]] = {
    "backbeat": (
        (0.0, KICK, 1.0),
        (2.0, KICK, 0.9),
        (1.0, SNARE, 0.9),
        (3.0, SNARE, 0.9),
        *((beat, CLOSED_HAT, 0.6) for beat in EIGHTHS),
    ),
    "half_time": (
        (0.0, KICK, 1.0),
        (2.0, SNARE, 0.9),
        *((beat, CLOSED_HAT, 0.55) for beat in EIGHTHS),
    ),
    "ride": (
        (0.0, KICK, 0.8),
        (2.5, KICK, 0.7),
        (1.0, SIDE_STICK, 0.7),
        (3.0, SIDE_STICK, 0.7),
        *((float(beat), RIDE, 0.6) for beat in range(BEATS_PER_BAR)),
    ),
    "four_on_the_floor": (
        *((float(beat), KICK, 1.0) for beat in range(BEATS_PER_BAR)),
        (1.0, CLAP, 0.8),
        (3.0, CLAP, 0.8),
        *((beat + 0.5, OPEN_HAT, 0.55) for beat in range(BEATS_PER_BAR)),
    ),
}


@dataclass(frozen=True)
class Arrangement:
    """Which instruments play: a lead (the piano part), a bass, an optional pad and drum pattern."""

    lead_program: int
    bass_program: int
    pad_program: int | None
    drum_pattern: str | None


def draw_arrangement(rng: random.Random) -> Arrangement:
    """A random band, as `rng` draws it (seeded per clip by the training script)."""
    lead = rng.choice(LEAD_PROGRAMS)
    bass = rng.choice(BASS_PROGRAMS)
    pad = rng.choice(PAD_PROGRAMS) if rng.random() < PAD_PROBABILITY else None
    drums = rng.choice(sorted(DRUM_PATTERNS)) if rng.random() < DRUMS_PROBABILITY else None
    return Arrangement(lead, bass, pad, drums)


@dataclass(frozen=True)
class Beat:
    period_s: float
    phase_s: float  # the first beat's time, in [0, period_s)

    def time(self, index: int) -> float:
        return self.phase_s + index * self.period_s


def find_beat(notes: F.MidiNotes) -> Beat:
    """The piece's beat: its tempo as the MIDI features read it, folded into 60-180 bpm, and the
    phase (of 24 tried across one beat) that puts the most note weight nearest the beats."""
    if not len(notes.start):
        return Beat(0.5, 0.0)
    log2_tempo = F.midi_piece_features(notes).vector[F.MIDI_FEATURE_NAMES.index("midi_log2_tempo_bpm")]
    bpm = float(2.0**log2_tempo)
    while bpm < 60.0:
        bpm *= 2
    while bpm > 180.0:
        bpm /= 2
    period = 60.0 / bpm
    weight = notes.velocity / 127.0
    phases = np.arange(24) * period / 24
    # Each onset's distance from its nearest beat, for every candidate phase; an onset counts
    # fully on the beat and not at all a twelfth of a beat away (a triangular kernel, so the phase
    # nearest the onsets wins over one that merely has them inside its window).
    late = np.mod(notes.start[None, :] - phases[:, None], period)
    distance = np.minimum(late, period - late)
    closeness = np.clip(1.0 - distance / (period / 12), 0.0, None)
    best = int(np.argmax((closeness * weight[None, :]).sum(axis=1)))
    return Beat(period, float(phases[best]))


def _median_velocity(velocity: np.ndarray, fallback: float) -> float:
    return float(np.median(velocity)) if len(velocity) else fallback


def arrange(midi: bytes, arrangement: Arrangement) -> bytes:
    """The piece as `arrangement` plays it: a new Standard MIDI File (format 0)."""
    notes = F.read_midi_notes(midi)
    events: list[tuple[float, int, mido.Message]] = []  # (seconds, order: offs first, message)

    def note(start_s: float, end_s: float, channel: int, pitch: int, velocity: float) -> None:
        velocity_int = int(np.clip(round(velocity), 1, 127))
        events.append(
            (start_s, 1, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity_int))
        )
        events.append((end_s, 0, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))

    for start, end, pitch, velocity in zip(notes.start, notes.end, notes.pitch, notes.velocity, strict=True):
        note(float(start), float(max(end, start + 0.01)), LEAD_CHANNEL, int(pitch), float(velocity))

    end_s = float(max(notes.duration_seconds, notes.end.max() if len(notes.end) else 0.0))
    overall_velocity = _median_velocity(notes.velocity, 64.0)
    beat = find_beat(notes)
    period = beat.period_s
    first = -1 if beat.phase_s - period / 8 > 0 else 0
    last = math.ceil((end_s - beat.phase_s) / period)
    for index in range(first, last + 1):
        t = beat.time(index)
        struck = (notes.start >= t - period / 8) & (notes.start < t + 7 * period / 8)
        if not struck.any():
            continue
        lowest = int(notes.pitch[struck].min())
        bass_pitch = BASS_LOWEST + (lowest - BASS_LOWEST) % 12
        start = max(t, 0.0)
        note(
            start, min(t + 0.95 * period, end_s), BASS_CHANNEL, bass_pitch, np.median(notes.velocity[struck])
        )

    bar_s = BEATS_PER_BAR * period
    for bar in range(0, math.ceil((end_s - beat.phase_s) / bar_s) + 1):
        bar_start = beat.phase_s + bar * bar_s
        bar_end = min(bar_start + bar_s, end_s)
        if bar_start >= end_s:
            break
        sounding = (notes.end > bar_start) & (notes.start < bar_end)
        if not sounding.any():
            continue
        in_bar = (notes.start >= bar_start) & (notes.start < bar_end)
        velocity = _median_velocity(notes.velocity[in_bar], overall_velocity)
        if arrangement.pad_program is not None:
            clipped = np.minimum(notes.end[sounding], bar_end) - np.maximum(notes.start[sounding], bar_start)
            profile = np.zeros(12)
            np.add.at(profile, notes.pitch[sounding].astype(int) % 12, clipped * notes.velocity[sounding])
            for pitch_class in np.argsort(-profile, kind="stable")[:PAD_VOICES]:
                if profile[pitch_class] > 0:
                    pitch = PAD_LOWEST + (int(pitch_class) - PAD_LOWEST) % 12
                    note(bar_start, bar_end, PAD_CHANNEL, pitch, PAD_VELOCITY_RATIO * velocity)
        if arrangement.drum_pattern:
            for offset_beats, drum, relative in DRUM_PATTERNS[arrangement.drum_pattern]:
                hit = bar_start + offset_beats * period
                if hit < end_s:
                    note(hit, hit + 0.1, DRUM_CHANNEL, drum, relative * velocity)

    return _write(events, arrangement, end_s)


def _write(events: list[tuple[float, int, mido.Message]], arrangement: Arrangement, end_s: float) -> bytes:
    midi = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT)
    track = midi.add_track()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(WRITE_TEMPO_BPM), time=0))
    programs = [(LEAD_CHANNEL, arrangement.lead_program), (BASS_CHANNEL, arrangement.bass_program)]
    if arrangement.pad_program is not None:
        programs.append((PAD_CHANNEL, arrangement.pad_program))
    for channel, program in programs:
        track.append(mido.Message("program_change", channel=channel, program=program, time=0))
    ticks_per_s = TICKS_PER_BEAT * WRITE_TEMPO_BPM / 60.0
    now = 0
    for seconds, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        tick = round(seconds * ticks_per_s)
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(0, round(end_s * ticks_per_s) - now)))
    out = io.BytesIO()
    midi.save(file=out)
    return out.getvalue()
