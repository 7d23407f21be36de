"""The band arrangement used to train the mood model: it plays the same music, on the piece's beat."""

from __future__ import annotations

import io
import random

import mido
import numpy as np
import pytest

from tuneforge.actors.mood import features as F
from tuneforge.actors.mood.arrange import (
    BASS_CHANNEL,
    BASS_LOWEST,
    DRUM_CHANNEL,
    DRUM_PATTERNS,
    LEAD_CHANNEL,
    PAD_CHANNEL,
    PAD_LOWEST,
    Arrangement,
    arrange,
    draw_arrangement,
    find_beat,
)
from tuneforge.actors.mood.train import Clip, variants_for


def piano_part(tempo_bpm: float, offset_s: float, bars: int = 4, seed: int = 3) -> bytes:
    """A piano part at `tempo_bpm` whose first downbeat is at `offset_s`: a low note on each beat,
    and chord tones on the off-beats, with velocities that rise bar by bar."""
    rng = np.random.default_rng(seed)
    beat = 60.0 / tempo_bpm
    notes: list[tuple[float, float, int, int]] = []
    for index in range(bars * 4):
        t = offset_s + index * beat
        velocity = 50 + 15 * (index // 4)
        notes.append((t, t + 0.9 * beat, int(rng.choice([36, 41, 43, 45])), velocity))
        notes.append((t + beat / 2, t + 0.9 * beat, int(rng.choice([60, 64, 67])), velocity - 20))
    return write(notes)


def write(notes: list[tuple[float, float, int, int]]) -> bytes:
    midi = mido.MidiFile(ticks_per_beat=480)
    track = midi.add_track()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(120), time=0))
    events = sorted(
        [(round(s * 960), 1, p, v) for s, _, p, v in notes]
        + [(round(e * 960), 0, p, 0) for _, e, p, _ in notes]
    )
    now = 0
    for tick, on, pitch, velocity in events:
        kind = "note_on" if on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=velocity, time=tick - now))
        now = tick
    out = io.BytesIO()
    midi.save(file=out)
    return out.getvalue()


def notes_by_channel(midi: bytes) -> dict[int, list[tuple[float, int, int]]]:
    """(start seconds, pitch, velocity) of every note, per channel."""
    now = 0.0
    channels: dict[int, list[tuple[float, int, int]]] = {}
    for message in mido.MidiFile(file=io.BytesIO(midi)):
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            channels.setdefault(message.channel, []).append((now, message.note, message.velocity))
    return channels


@pytest.mark.parametrize("offset_s", [0.0, 0.21, 0.43])
def test_the_beat_is_found_at_the_piece_tempo_and_phase(offset_s: float) -> None:
    beat = find_beat(F.read_midi_notes(piano_part(100, offset_s)))
    assert 60 / beat.period_s == pytest.approx(100, rel=0.03)
    assert beat.phase_s == pytest.approx(offset_s, abs=beat.period_s / 24 + 0.01)


def test_a_band_keeps_every_note_and_follows_the_beat_and_dynamics() -> None:
    piano = piano_part(100, 0.21)
    original = notes_by_channel(piano)[0]
    band = notes_by_channel(arrange(piano, Arrangement(0, 33, 48, "backbeat")))
    assert sorted(band) == [LEAD_CHANNEL, BASS_CHANNEL, PAD_CHANNEL, DRUM_CHANNEL]
    # the piano part is the lead, note for note
    lead = band[LEAD_CHANNEL]
    assert [(p, v) for _, p, v in lead] == [(p, v) for _, p, v in original]
    assert np.allclose([t for t, _, _ in lead], [t for t, _, _ in original], atol=0.002)
    # the bass plays each beat's lowest pitch class, in E1..D#2, on the beat
    beat_s = 0.6
    bass = band[BASS_CHANNEL]
    assert len(bass) == 16
    for (t, pitch, _), (low_t, low_pitch, _) in zip(bass, original[::2], strict=True):
        assert t == pytest.approx(low_t, abs=beat_s / 24 + 0.01)
        assert BASS_LOWEST <= pitch < BASS_LOWEST + 12 and pitch % 12 == low_pitch % 12
    # the pad holds chord tones in its own register
    pad = band[PAD_CHANNEL]
    assert pad and all(PAD_LOWEST <= p < PAD_LOWEST + 12 for _, p, _ in pad)
    assert {p % 12 for _, p, _ in pad} <= {p % 12 for _, p, _ in original}
    # the drums play on an eighth-note grid from the first downbeat, louder as the piano grows louder
    drums = band[DRUM_CHANNEL]
    eighths = (np.array([t for t, _, _ in drums]) - 0.21) / (beat_s / 2)
    assert np.allclose(eighths, np.round(eighths), atol=0.15)
    kicks = [(t, v) for t, p, v in drums if p == 36]
    first_bar = [v for t, v in kicks if t < 0.21 + 4 * beat_s - 0.1]
    last_bar = [v for t, v in kicks if t > 0.21 + 12 * beat_s - 0.1]
    assert first_bar and last_bar and min(last_bar) > max(first_bar)


def test_a_band_without_pad_or_drums_has_neither() -> None:
    arranged = arrange(piano_part(90, 0.0), Arrangement(25, 32, None, None))
    assert sorted(notes_by_channel(arranged)) == [LEAD_CHANNEL, BASS_CHANNEL]
    programs = {
        m.channel: m.program for m in mido.MidiFile(file=io.BytesIO(arranged)) if m.type == "program_change"
    }
    assert programs == {LEAD_CHANNEL: 25, BASS_CHANNEL: 32}


def test_an_empty_part_arranges_to_no_notes() -> None:
    assert notes_by_channel(arrange(write([]), Arrangement(0, 33, 48, "ride"))) == {}


def test_bands_are_drawn_reproducibly_and_vary() -> None:
    draws = [draw_arrangement(random.Random(f"seed:{i}")) for i in range(200)]
    assert draws == [draw_arrangement(random.Random(f"seed:{i}")) for i in range(200)]
    assert {d.drum_pattern for d in draws} == {*DRUM_PATTERNS, None}
    assert {d.pad_program is None for d in draws} == {True, False}
    assert len({d.lead_program for d in draws}) > 5


def test_every_clip_is_also_rendered_once_by_a_band() -> None:
    for split in ("train", "val"):
        clip = Clip(f"midi/Q2_x_{split}.mid", "Q2", split, "x", 30.0)
        bands = [v for v in variants_for(clip) if v.arrangement is not None]
        assert [v.name for v in bands] == ["band"]
        assert bands == [v for v in variants_for(clip) if v.arrangement is not None]  # same draw each time
