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


def _note_events(score: Score, channels: list[int]) -> list[list[tuple[int, mido.Message]]]:
    """Each track's note messages in time order, with notes of one pitch on one channel that overlap
    (within a track, or in tracks sharing the channel) played as a synth can play them.

    A synth keeps one key per pitch and channel: written as they come, the first note-off of two
    overlapping notes silenced both (C4 for beats 0-4 and again 2-6 stopped at beat 4). So a note
    struck while its pitch still sounds re-strikes it (a note-off, then its note-on), and the pitch
    sounds until the last of the overlapping notes ends.
    """
    # (tick, 0 for a note-off or 1 for a note-on, channel, pitch, velocity, track index)
    timeline: list[tuple[int, int, int, int, int, int]] = []
    for index, (track, channel) in enumerate(zip(score.tracks, channels, strict=True)):
        for note in track.notes:
            start = _ticks(note.start_beats)
            end = max(start + 1, _ticks(note.end_beats))
            timeline.append((start, 1, channel, note.midi_pitch, note.velocity, index))
            timeline.append((end, 0, channel, note.midi_pitch, 0, index))
    # Note-offs before note-ons on the same tick, so a note repeated end to start retriggers.
    timeline.sort(key=lambda event: (event[0], event[1]))
    sounding: dict[tuple[int, int], int] = {}  # (channel, pitch): notes holding it
    tracks: list[list[tuple[int, mido.Message]]] = [[] for _ in score.tracks]
    for tick, is_on, channel, pitch, velocity, index in timeline:
        held = sounding.get((channel, pitch), 0)
        note_off = (tick, mido.Message("note_off", channel=channel, note=pitch, velocity=0))
        if is_on:
            if held:
                tracks[index].append(note_off)
            tracks[index].append(
                (tick, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity))
            )
            sounding[(channel, pitch)] = held + 1
        else:
            sounding[(channel, pitch)] = held - 1
            if held == 1:
                tracks[index].append(note_off)
    return tracks


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

    channels = _channels(score.tracks)
    for index, (track, events) in enumerate(zip(score.tracks, _note_events(score, channels), strict=True)):
        channel = channels[index]
        default_name = "Drums" if track.drums else f"Track {index + 1}"
        name = _as_meta_text(track.name or default_name)
        part = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0)])
        if not track.drums:
            part.append(mido.Message("program_change", channel=channel, program=track.program, time=0))
        now = 0
        for tick, message in events:
            part.append(message.copy(time=tick - now))
            now = tick
        part.append(mido.MetaMessage("end_of_track", time=0))
        midi.tracks.append(part)

    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()
