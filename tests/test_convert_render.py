"""The actors' pure work: Score → MIDI (mido) and MIDI → audio (libfluidsynth), no NATS."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import tracemalloc
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile

from tests.audio import dominant_frequency_hz, sounding_seconds
from tuneforge.actors.converter.convert import score_to_midi
from tuneforge.actors.exporter.keyranges import SoundFontError, silent_notes, soundfont_presets
from tuneforge.actors.exporter.render import Renderer, RenderError
from tuneforge.contracts.midi import MidiError, inspect_midi, parse_midi, playable_midi, renderable_midi
from tuneforge.contracts.music import MusicError, Note, Score, Track, decode_music


@pytest.fixture(scope="module")
def renderer(soundfont_dir: Path) -> Renderer:
    warm = Renderer(soundfont_dir)
    yield warm
    warm.close()


def held_a4(seconds: float = 2.0, instrument: int | str = 0, tempo_bpm: float = 120) -> Score:
    beats = seconds * tempo_bpm / 60
    return Score(
        tracks=[Track(notes=[Note(pitch="A4", start_beats=0, duration_beats=beats)], instrument=instrument)],
        tempo_bpm=tempo_bpm,
    )


def test_midi_has_tempo_time_signature_programs_and_drums_on_channel_10() -> None:
    score = decode_music(b"""{"tempo_bpm": 90, "time_signature": [3, 4], "tracks": [
        {"instrument": "violin",
         "notes": [{"pitch": "E5", "start_beats": 1, "duration_beats": 2, "velocity": 80}]},
        {"drums": true, "notes": [{"pitch": 36, "start_beats": 0, "duration_beats": 0.5}]}]}""")
    midi = mido.MidiFile(file=io.BytesIO(score_to_midi(score)))
    assert midi.type == 1 and len(midi.tracks) == 3
    meta = {m.type: m for m in midi.tracks[0] if m.is_meta}
    assert round(mido.tempo2bpm(meta["set_tempo"].tempo)) == 90
    assert (meta["time_signature"].numerator, meta["time_signature"].denominator) == (3, 4)
    violin = [m for m in midi.tracks[1] if not m.is_meta]
    assert violin[0].type == "program_change" and violin[0].program == 40
    on = next(m for m in violin if m.type == "note_on")
    assert (on.note, on.velocity, on.time) == (76, 80, midi.ticks_per_beat)
    drums = [m for m in midi.tracks[2] if m.type == "note_on"]
    assert drums[0].channel == 9 and drums[0].note == 36
    assert midi.length == pytest.approx(3 * 60 / 90, abs=1e-5)  # tempo is whole µs per beat


def test_repeated_notes_retrigger() -> None:
    notes = [Note(pitch=60, start_beats=float(i), duration_beats=1.0) for i in range(4)]
    midi = mido.MidiFile(file=io.BytesIO(score_to_midi(Score(tracks=[Track(notes=notes)]))))
    kinds = [m.type for m in midi.tracks[1] if m.type in ("note_on", "note_off")]
    assert kinds == ["note_on", "note_off"] * 4


def test_overlapping_notes_of_one_pitch_sound_until_the_last_ends(renderer: Renderer, tmp_path: Path) -> None:
    """C4 for beats 0-4 and again 2-6 (and a third in another track of the same instrument, so on
    the same channel): the pitch is struck at 0, 2 and 3 and sounds until beat 6, 3 s at 120 bpm.
    Written as they came, the first note-off silenced the pitch at beat 4."""
    score = decode_music(b"""{"tracks": [
        {"instrument": "violin", "notes": [{"pitch": "C4", "start_beats": 0, "duration_beats": 4},
                                           {"pitch": "C4", "start_beats": 2, "duration_beats": 4}]},
        {"instrument": "violin", "notes": [{"pitch": "C4", "start_beats": 3, "duration_beats": 0.5},
                                           {"pitch": "E4", "start_beats": 0, "duration_beats": 1}]}]}""")
    midi = mido.MidiFile(file=io.BytesIO(score_to_midi(score)))
    held, timeline = 0, []
    for message in mido.merge_tracks(midi.tracks):
        held += message.time
        if message.type in ("note_on", "note_off") and message.note == 60:
            timeline.append((message.type, held // midi.ticks_per_beat))
    assert timeline == [
        ("note_on", 0),
        ("note_off", 2),
        ("note_on", 2),
        ("note_off", 3),
        ("note_on", 3),
        ("note_off", 6),
    ]
    out = tmp_path / "overlap.wav"
    renderer.render(score_to_midi(score), out, "wav", 44100, "fluidr3_gm", 3.0)
    samples, rate = soundfile.read(out)
    assert sounding_seconds(samples.mean(axis=1), rate) >= 3.0


def test_a_warm_synth_renders_as_a_fresh_one(soundfont_dir: Path, tmp_path: Path) -> None:
    """Nothing of the previous job's sound reaches the next: its reverb was left ringing in the
    warm synth (the same MIDI rendered 15.70 s on a fresh synth and 15.79 s after another job)."""
    cello = decode_music(
        b'{"tempo_bpm": 100, "tracks": [{"instrument": "cello", "notes": ['
        + b",".join(
            b'{"pitch": %d, "start_beats": %d, "duration_beats": 1}' % (48 + i * 5 % 12, i) for i in range(24)
        )
        + b"]}]}"
    )
    loud = decode_music(
        b'{"tracks": [{"instrument": "trumpet", "notes": [{"pitch": 72, "start_beats": 0, '
        b'"duration_beats": 3, "velocity": 127}]}]}'
    )
    seconds = 24 * 60 / 100
    fresh = Renderer(soundfont_dir)
    fresh.render(score_to_midi(cello), tmp_path / "fresh.wav", "wav", 44100, "fluidr3_gm", seconds)
    fresh.close()
    warm = Renderer(soundfont_dir)
    for piece, name, length in ((cello, "first", seconds), (loud, "loud", 1.5), (cello, "after", seconds)):
        warm.render(score_to_midi(piece), tmp_path / f"{name}.wav", "wav", 44100, "fluidr3_gm", length)
    warm.close()
    reference, _ = soundfile.read(tmp_path / "fresh.wav", dtype="float32")
    for name in ("first", "after"):
        again, _ = soundfile.read(tmp_path / f"{name}.wav", dtype="float32")
        assert len(again) == len(reference), name
        # Measured: identical on the first render, within 3e-4 (-71 dB) after others; 6.5e-3 before.
        assert float(np.abs(again - reference).max()) < 1e-3, name


def test_held_a4_sounds_at_440_hz_for_its_duration(renderer: Renderer, tmp_path: Path) -> None:
    out = tmp_path / "a4.wav"
    flute = held_a4(2.0, instrument="flute")  # near-sinusoidal, sustains at full level until released
    result = renderer.render(score_to_midi(flute), out, "wav", 44100, "fluidr3_gm", 2.0)
    samples, rate = soundfile.read(out)
    mono = samples.mean(axis=1)
    assert rate == 44100 and samples.shape[1] == 2
    assert dominant_frequency_hz(mono, rate, 0.2, 1.5) == pytest.approx(440, rel=0.02)
    # The note lasts 2 s; the release tail adds a little, never seconds of silence.
    assert 2.0 <= result.duration_seconds <= 2.0 + 3.0
    assert 1.95 <= sounding_seconds(mono, rate) <= result.duration_seconds


@pytest.mark.parametrize(("fmt", "rate"), [("flac", 48000), ("ogg", 22050), ("wav", 22050)])
def test_formats_and_rates(renderer: Renderer, tmp_path: Path, fmt: str, rate: int) -> None:
    out = tmp_path / f"a4.{fmt}"
    renderer.render(score_to_midi(held_a4(1.0)), out, fmt, rate, "timgm6mb", 1.0)  # type: ignore[arg-type]
    info = soundfile.info(str(out))
    assert info.samplerate == rate and info.channels == 2
    assert info.format == {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}[fmt]
    mono = soundfile.read(out)[0].mean(axis=1)
    assert dominant_frequency_hz(mono, rate, 0.1, 0.7) == pytest.approx(440, rel=0.02)


def test_progress_rises_to_99_before_the_end(renderer: Renderer, tmp_path: Path) -> None:
    seen: list[float] = []
    renderer.render(
        score_to_midi(held_a4(10.0)), tmp_path / "p.wav", "wav", 44100, "timgm6mb", 10.0, seen.append
    )
    assert len(seen) > 10 and seen == sorted(seen) and seen[-1] == 99.0


def test_output_matches_the_fluidsynth_command_line(
    renderer: Renderer, tmp_path: Path, soundfont_dir: Path, fluidsynth_cli: str
) -> None:
    """Same SoundFont, same player rules: the same length and the same sound as the CLI renderer."""
    midi_path = tmp_path / "piece.mid"
    score = decode_music(b"""{"tempo_bpm": 100, "tracks": [{"instrument": 0, "notes": [
        {"pitch": "C4", "start_beats": 0, "duration_beats": 1},
        {"pitch": "E4", "start_beats": 1, "duration_beats": 1},
        {"pitch": "G4", "start_beats": 2, "duration_beats": 2}]}]}""")
    midi_path.write_bytes(score_to_midi(score))
    cli_out = tmp_path / "cli.wav"
    subprocess.run(
        [
            fluidsynth_cli,
            "-ni",
            "-q",
            "-F",
            str(cli_out),
            "-r",
            "44100",
            str(soundfont_dir / "FluidR3_GM.sf2"),
            str(midi_path),
        ],
        check=True,
        env={"SDL_AUDIODRIVER": "dummy", "PATH": "/usr/bin:/bin"},
    )
    ours = renderer.render(
        midi_path.read_bytes(), tmp_path / "ours.wav", "wav", 44100, "fluidr3_gm", score.duration_seconds
    )
    cli_audio, _ = soundfile.read(cli_out)
    our_audio, _ = soundfile.read(tmp_path / "ours.wav")
    # The CLI plays the tail down to FluidSynth's own voice threshold (about -100 dB); ours stops
    # once it has stayed 60 dB under the peak for half a second: what it leaves off is inaudible.
    assert score.duration_seconds <= ours.duration_seconds <= len(cli_audio) / 44100 + 4096 / 44100
    n = min(len(our_audio), len(cli_audio))
    assert np.abs(cli_audio[n:]).max(initial=0.0) < 1e-3 * np.abs(cli_audio).max()
    correlation = np.corrcoef(our_audio[:n, 0], cli_audio[:n, 0])[0, 1]
    assert correlation > 0.99


def test_memory_stays_flat_for_long_pieces(renderer: Renderer, tmp_path: Path) -> None:
    """Streaming blocks to disk: the Python heap does not grow with the length of the piece."""
    peaks = []
    for seconds in (20.0, 200.0):
        midi = score_to_midi(held_a4(seconds, tempo_bpm=240))
        tracemalloc.start()
        renderer.render(midi, tmp_path / "long.wav", "wav", 22050, "timgm6mb", seconds)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 2 * peaks[0] + 1_000_000


@pytest.mark.parametrize("data", [b"", b"garbage", b"MThd\x00\x00\x00\x06\x00\x01\x00\x01", b"\x00" * 64])
def test_corrupt_midi_is_rejected_with_a_message(data: bytes) -> None:
    with pytest.raises(MidiError, match="MIDI"):
        inspect_midi(data, 600)


def test_truncated_midi_says_so() -> None:
    whole = score_to_midi(held_a4(4.0))
    with pytest.raises(MidiError, match="truncated"):
        inspect_midi(whole[: len(whole) - 6], 600)


def test_smpte_timed_midi_is_refused_for_what_it_is() -> None:
    smpte = bytearray(score_to_midi(held_a4(2.0)))
    smpte[12:14] = bytes([0xE7, 0x28])  # division: -25 frames per second, 40 ticks per frame
    with pytest.raises(MidiError, match="SMPTE"):
        inspect_midi(bytes(smpte), 600)


def test_overlong_midi_is_rejected() -> None:
    with pytest.raises(MidiError, match="at most 60 s"):
        inspect_midi(score_to_midi(held_a4(61.0)), 60)
    # Just over: the message shows by how much (not "lasts 60.0 s: at most 60 s").
    with pytest.raises(MidiError, match=r"lasts 60\.03 s: at most 60 s"):
        inspect_midi(score_to_midi(held_a4(60.03)), 60)


def test_a_midi_file_of_too_many_notes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneforge.contracts import midi as midi_module

    notes = Score(tracks=[Track(notes=[Note(60 + i % 12, i * 0.25, 0.25) for i in range(50)])])
    monkeypatch.setattr(midi_module, "MAX_MIDI_NOTES", 49)
    with pytest.raises(MidiError, match="has 50 notes: at most 49 are allowed"):
        inspect_midi(score_to_midi(notes), 600)
    monkeypatch.setattr(midi_module, "MAX_MIDI_NOTES", 50)
    assert inspect_midi(score_to_midi(notes), 600) > 0


def test_midi_without_notes_is_refused() -> None:
    """Tempo, a marker and the end of the track two seconds later (or notes of velocity 0, which
    are note-offs): nothing to play, refused rather than rendered as silence."""
    silent = smf(b"\x00\xff\x51\x03\x07\xa1\x20" + b"\x87\x40\x90\x45\x00" + b"\x87\x40\xff\x2f\x00")
    with pytest.raises(MidiError, match="no notes"):
        inspect_midi(silent, 600)
    with pytest.raises(MidiError, match="no notes"):
        renderable_midi(parse_midi(silent), 600)
    assert inspect_midi(smf(A4_SECOND), 600) == pytest.approx(1.0)


def smf(events: bytes, declared_tracks: int = 1, file_type: int = 0) -> bytes:
    """A Standard MIDI File, 480 ticks per beat, of one track of raw `events`."""
    header = b"MThd" + struct.pack(">IHHH", 6, file_type, declared_tracks, 480)
    return header + b"MTrk" + struct.pack(">I", len(events)) + events


# A4 held for one second at 120 bpm (960 ticks = 0x87 0x40), then the end of the track.
A4_SECOND = b"\x00\x90\x45\x60" + b"\x87\x40\x80\x45\x00" + b"\x00\xff\x2f\x00"


def rmid(data: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 12 + len(data)) + b"RMIDdata" + struct.pack("<I", len(data)) + data


@pytest.mark.parametrize(
    "data",
    [
        smf(b"\x00\xff\x59\x02\x09\x00" + A4_SECOND),  # a key signature of 9 sharps
        smf(A4_SECOND.replace(b"\x90\x45\x60", b"\x90\x45\xe0")),  # velocity byte over 127
        smf(A4_SECOND, declared_tracks=3, file_type=1),  # the header promises tracks that are not there
        rmid(smf(A4_SECOND)),  # Windows .rmi: the file in a RIFF wrapper
        # A chunk of another kind before the track: the standard says readers skip it.
        smf(A4_SECOND)[:14] + b"XFIH" + struct.pack(">I", 5) + b"hello" + smf(A4_SECOND)[14:],
        # The last track's declared length runs past the end of the file; its events are whole.
        smf(A4_SECOND)[:18] + struct.pack(">I", len(A4_SECOND) + 50) + A4_SECOND,
    ],
    ids=[
        "impossible key signature",
        "data byte over 127",
        "missing tracks",
        "RMID",
        "other chunk",
        "overlong track",
    ],
)
def test_midi_files_as_found_in_the_wild_are_read_and_played(
    data: bytes, renderer: Renderer, tmp_path: Path
) -> None:
    assert inspect_midi(data, 600) == pytest.approx(1.0)
    playable = playable_midi(data)
    assert playable[:4] == b"MThd"
    renderer.render(playable, tmp_path / "wild.wav", "wav", 22050, "fluidr3_gm", 1.0)
    stereo, rate = soundfile.read(tmp_path / "wild.wav")
    mono = stereo.mean(axis=1)
    assert np.abs(mono).max() > 0.005 and sounding_seconds(mono, rate) >= 0.9
    assert dominant_frequency_hz(mono, rate) == pytest.approx(440, rel=0.03)


def test_notes_left_on_at_the_end_are_released_not_left_ringing(renderer: Renderer, tmp_path: Path) -> None:
    # Church organ (program 19) sustains for as long as a key is held: here one note never gets its
    # note-off and the sustain pedal is never lifted; the file ends 2 s in.
    held = (
        b"\x00\xc0\x13"  # program change: church organ
        + b"\x00\xb0\x40\x7f"  # sustain pedal down
        + b"\x00\x90\x45\x60"  # A4 on, never off
        + b"\x8f\x00\xff\x2f\x00"  # 1920 ticks (2 s at 120 bpm) later: end of track
    )
    data = smf(held)
    seconds = inspect_midi(data, 600)
    assert seconds == pytest.approx(2.0)
    renderer.render(data, tmp_path / "held.wav", "wav", 22050, "fluidr3_gm", seconds)
    stereo, rate = soundfile.read(tmp_path / "held.wav")
    mono = stereo.mean(axis=1)
    assert np.abs(mono[: int(seconds * rate)]).max() > 0.005  # the note sounds while the music lasts
    assert len(mono) / rate < seconds + 5.0  # its release, not the 15-s safety cap
    assert sounding_seconds(mono, rate) < seconds + 1.5


def test_an_inaudible_tail_is_cut_and_a_lost_render_is_an_error(renderer: Renderer, tmp_path: Path) -> None:
    # Strings (program 48) with a long release, 1 s of music: FluidSynth keeps the dying voices
    # going far below hearing; the file ends half a second after the tail is 60 dB down.
    strings = b"\x00\xc0\x30" + A4_SECOND
    renderer.render(smf(strings), tmp_path / "tail.wav", "wav", 22050, "fluidr3_gm", 1.0)
    stereo, rate = soundfile.read(tmp_path / "tail.wav")
    level = np.abs(stereo).max(axis=1)
    audible_until = (np.flatnonzero(level > 1e-3 * level.max())[-1] + 1) / rate
    assert audible_until > 1.0
    assert len(level) / rate <= audible_until + 0.5 + 4096 / rate
    # A render that stops long before the music's end is an error, never a short file called done.
    with pytest.raises(RenderError, match="stopped after"):
        renderer.render(
            smf(RUNNING_STATUS_AFTER_META), tmp_path / "lost.wav", "wav", 22050, "fluidr3_gm", 2.5
        )


# Running status carried across a meta event: FluidSynth's reader takes the data bytes for a meta
# event of 96 bytes and gives up 0.5 s in; players (and mido) read it as C5 on, and play 2.5 s.
RUNNING_STATUS_AFTER_META = (
    b"\x00\xc0\x13"  # church organ: it sounds for as long as a key is held
    + b"\x00\x90\x45\x60"  # A4 on
    + b"\x83\x60\xff\x01\x00"  # 0.5 s later: an empty text event
    + b"\x00\x48\x60"  # C5 on, by running status
    + b"\x8f\x00\x80\x48\x40\x00\x80\x45\x40"  # 2 s later: both off
    + b"\x00\xff\x2f\x00"
)


def test_midi_that_fluidsynth_cannot_read_is_written_out_again_and_played(
    renderer: Renderer, tmp_path: Path
) -> None:
    data = smf(RUNNING_STATUS_AFTER_META)
    assert inspect_midi(data, 600) == pytest.approx(2.5)
    midi, seconds = renderable_midi(parse_midi(data), 600)
    assert seconds == pytest.approx(2.5)
    result = renderer.render(midi, tmp_path / "rs.wav", "wav", 22050, "fluidr3_gm", seconds)
    assert result.duration_seconds >= 2.5
    stereo, rate = soundfile.read(tmp_path / "rs.wav")
    late = stereo[int(1.5 * rate) : int(2.4 * rate)].mean(axis=1)  # the held A4 and C5
    assert np.abs(late).max() > 0.005


@pytest.mark.parametrize("name", ["Bass’s part", "ピアノ", "Violin — I", "🎻", "Sopran ü"])
def test_track_names_in_any_language_are_written_as_utf8(name: str) -> None:
    score = Score(tracks=[Track(notes=[Note(pitch=60, start_beats=0, duration_beats=1)], name=name)])
    midi = mido.MidiFile(file=io.BytesIO(score_to_midi(score)))
    written = next(m.name for m in midi.tracks[-1] if m.type == "track_name")
    assert written.encode("latin-1").decode("utf-8") == name  # mido reads bytes as Latin-1


def test_an_overlong_track_name_is_refused() -> None:
    body = {"tracks": [{"name": "x" * 201, "notes": [{"pitch": 60, "start_beats": 0, "duration_beats": 1}]}]}
    with pytest.raises(MusicError, match="200"):
        decode_music(json.dumps(body).encode())


# (program, the last key FluidR3_GM sounds for it): the exporter reads these from the SoundFont.
FLUIDR3_TOP_KEYS = [(43, 57), (58, 72), (0, 108), (40, 101)]  # contrabass, tuba, piano, violin


@pytest.mark.parametrize(("program", "top_key"), FLUIDR3_TOP_KEYS)
def test_notes_the_soundfont_cannot_sound_are_the_ones_reported(
    renderer: Renderer, tmp_path: Path, soundfont_dir: Path, program: int, top_key: int
) -> None:
    """Each key is rendered alone: the one the SoundFont's zones say is the last playable sounds, the one
    above is silent, and the report names exactly the silent one."""
    presets = soundfont_presets(soundfont_dir / "FluidR3_GM.sf2")
    peaks = {}
    for key in (top_key, top_key + 1):
        score = Score(
            tracks=[Track(notes=[Note(pitch=key, start_beats=0, duration_beats=1)], instrument=program)]
        )
        midi = score_to_midi(score)
        renderer.render(midi, tmp_path / "k.wav", "wav", 44100, "fluidr3_gm", 0.5)
        peaks[key] = float(np.abs(soundfile.read(tmp_path / "k.wav")[0]).max())
        reported = silent_notes(mido.MidiFile(file=io.BytesIO(midi)), presets, "FluidR3_GM")
        if key == top_key:
            assert reported == []
        else:
            (part,) = reported
            assert (part.program, part.drums, part.count, part.lowest_pitch, part.highest_pitch) == (
                program,
                False,
                1,
                key,
                key,
            )
            assert part.playable_high_pitch == top_key
            assert part.instrument in part.message and "no sound" in part.message
    assert 20 * np.log10(peaks[top_key]) > -50  # heard
    assert peaks[top_key + 1] < 10 ** (-80 / 20)  # dither-level at most: nothing to hear


def test_silent_notes_follow_program_changes_banks_and_the_drum_channel(soundfont_dir: Path) -> None:
    presets = soundfont_presets(soundfont_dir / "FluidR3_GM.sf2")
    track = mido.MidiTrack()

    def note(channel: int, key: int) -> None:
        track.append(mido.Message("note_on", channel=channel, note=key, velocity=80))
        track.append(mido.Message("note_off", channel=channel, note=key, time=120))

    note(0, 70)  # piano (no program change yet): sounds
    track.append(mido.Message("program_change", channel=0, program=43))  # contrabass
    note(0, 70)  # silent
    note(0, 50)  # sounds
    track.append(mido.Message("control_change", channel=1, control=0, value=99))  # no such bank:
    track.append(mido.Message("program_change", channel=1, program=58))  # falls back to bank 0 tuba
    note(1, 80)  # silent
    note(9, 20)  # below the drum kit's keys: silent
    note(9, 36)  # bass drum: sounds
    midi = mido.MidiFile()
    midi.tracks.append(track)
    reported = {(part.drums, part.program): part for part in silent_notes(midi, presets, "FluidR3_GM")}
    assert sorted(reported) == [(False, 43), (False, 58), (True, 0)]
    assert [(p.count, p.lowest_pitch) for p in reported.values()] == [(1, 70), (1, 80), (1, 20)]
    assert reported[(True, 0)].instrument == "drums" and reported[(True, 0)].playable_low_pitch == 27
    assert "A3" in reported[(False, 43)].message  # contrabass: up to A3 (MIDI 57)


def test_a_file_that_is_not_a_soundfont_is_refused_with_words(tmp_path: Path) -> None:
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(SoundFontError, match="not a SoundFont"):
        soundfont_presets(fake)
