"""Score → Standard MIDI File (type 1) with mido: pure, testable without NATS."""

from __future__ import annotations

import io

import mido

from tuneforge.contracts.music import Score, Track

TICKS_PER_BEAT = 480
DRUM_CHANNEL = 9  # General MIDI channel 10


def _channels(tracks: list[Track]) -> list[int]:
    """One channel per melodic instrument (skipping the drum channel); drums on channel 10."""
    free = [c for c in range(16) if c != DRUM_CHANNEL]
    by_program: dict[int, int] = {}
    channels = []
    for track in tracks:
        if track.drums:
            channels.append(DRUM_CHANNEL)
            continue
        if track.program not in by_program:
            by_program[track.program] = free[len(by_program)]
        channels.append(by_program[track.program])
    return channels


def _ticks(beats: float) -> int:
    return round(beats * TICKS_PER_BEAT)


def _as_meta_text(text: str) -> str:
    """Text for a MIDI meta event. The file format has no encoding; mido writes Latin-1 and fails on
    anything else ("Bass’s part", "ピアノ"). Its UTF-8 bytes are written instead, as most editors
    and DAWs do and read."""
    return text.encode("utf-8").decode("latin-1")


def score_to_midi(score: Score) -> bytes:
    """Encode a validated Score: tempo, time signature, program changes, one track per part."""
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    numerator, denominator = score.time_signature
    conductor = mido.MidiTrack(
        [
            mido.MetaMessage("track_name", name="TuneForge", time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(score.tempo_bpm), time=0),
            mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator, time=0),
        ]
    )
    end_tick = _ticks(score.duration_beats)
    conductor.append(mido.MetaMessage("end_of_track", time=end_tick))
    midi.tracks.append(conductor)

    for index, (track, channel) in enumerate(zip(score.tracks, _channels(score.tracks), strict=True)):
        events: list[tuple[int, int, mido.Message]] = []
        for note in track.notes:
            pitch = note.midi_pitch
            start = _ticks(note.start_beats)
            end = max(start + 1, _ticks(note.end_beats))
            # Sort key puts note-offs before note-ons on the same tick, so repeated notes retrigger.
            events.append(
                (start, 1, mido.Message("note_on", channel=channel, note=pitch, velocity=note.velocity))
            )
            events.append((end, 0, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
        events.sort(key=lambda item: (item[0], item[1]))
        default_name = "Drums" if track.drums else f"Track {index + 1}"
        name = _as_meta_text(track.name or default_name)
        part = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0)])
        if not track.drums:
            part.append(mido.Message("program_change", channel=channel, program=track.program, time=0))
        now = 0
        for tick, _, message in events:
            part.append(message.copy(time=tick - now))
            now = tick
        part.append(mido.MetaMessage("end_of_track", time=0))
        midi.tracks.append(part)

    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()
