"""The contracts validate at the edge: names, ranges and limits, with messages that say what is wrong."""

import msgspec
import pytest

from tuneforge.contracts.instruments import frequency_to_midi, midi_number, pitch_name, program_number
from tuneforge.contracts.jobs import RenderOptions, input_key
from tuneforge.contracts.limits import MAX_NOTES
from tuneforge.contracts.music import MusicError, Score, decode_music


def score_json(notes: list[dict], **extra: object) -> bytes:
    return msgspec.json.encode({"tempo_bpm": 120, "tracks": [{"instrument": 0, "notes": notes}], **extra})


@pytest.mark.parametrize(
    ("name", "number"),
    [
        *[("C4", 60), ("A4", 69), ("C#4", 61), ("Eb3", 51), ("B#3", 60), ("C-1", 0), ("G9", 127), (64, 64)],
        # Double accidentals, the signs themselves, and "x", the printed double sharp.
        *[("F##4", 67), ("Fx4", 67), ("F𝄪4", 67), ("Bbb3", 57), ("B𝄫3", 57), ("C♯4", 61), ("B♭3", 58)],
        *[("C♮4", 60), ("bb3", 58), ("Cb4", 59), ("E#3", 53)],
    ],
)
def test_note_names_follow_scientific_pitch(name: str | int, number: int) -> None:
    assert midi_number(name) == number


@pytest.mark.parametrize("bad", ["H4", "C", "A#", "G#9", 128, -1, "4C", "C#b4", "Cb#4", "C###4", "x4"])
def test_bad_pitches_are_rejected(bad: str | int) -> None:
    with pytest.raises(ValueError):
        midi_number(bad)


def test_instrument_names_and_numbers() -> None:
    assert program_number("acoustic_grand_piano") == 0
    assert program_number("Acoustic Grand Piano") == 0
    assert program_number("violin") == 40
    assert program_number("gunshot") == 127
    with pytest.raises(ValueError, match="unknown instrument"):
        program_number("kazoo")


def test_frequency_maps_to_nearest_note() -> None:
    assert frequency_to_midi(440.0) == 69
    assert frequency_to_midi(261.63) == 60
    assert frequency_to_midi(452.0) == 69  # < a quarter tone sharp
    assert frequency_to_midi(454.0) == 70
    with pytest.raises(ValueError):
        frequency_to_midi(0)


def test_grid_converts_to_a_score_one_beat_per_column() -> None:
    score = decode_music(b'{"notes": [[261.63, 329.63], [], [440]], "speed": 1.5, "instrument": 1}')
    assert score.tempo_bpm == 180
    assert [(n.midi_pitch, n.start_beats, n.duration_beats) for n in score.tracks[0].notes] == [
        (60, 0, 1),
        (64, 0, 1),
        (69, 2, 1),
    ]
    assert score.tracks[0].program == 1


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "malformed JSON"),
        (b'{"notes": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"melody": []}', "expected a Score"),
        (score_json([{"pitch": 200, "start_beats": 0, "duration_beats": 1}]), "outside the MIDI range"),
        (score_json([{"pitch": "C4", "start_beats": 0, "duration_beats": -1}]), "duration_beats"),
        (score_json([{"pitch": "C4", "start_beats": -2, "duration_beats": 1}]), "start_beats"),
        (score_json([{"pitch": "C4", "start_beats": 0, "duration_beats": 1, "velocity": 0}]), "velocity"),
        (score_json([{"pitch": "C4", "start_beats": 0, "duration_beats": 1}], tempo_bpm=1000), "tempo_bpm"),
        (score_json([{"pitch": "C4", "start_beats": 1300, "duration_beats": 1}]), "at most 600 s"),
        (b'{"tracks": [{"instrument": "kazoo", "notes": []}]}', "unknown instrument"),
        (b'{"tracks": []}', "at least one track"),
        (b'{"tracks": [{"notes": []}, {"drums": true, "notes": []}]}', "the score has no notes"),
        (b'{"notes": [[-5]]}', "positive"),
        (b'{"notes": [[]]}', "no notes"),
        (b'{"notes": [[7.9]]}', "between 7.944 and 12911 Hz"),
        (
            b'{"notes": [[440]], "speed": 4}',
            "speed must be from 0.1667 to 3.333: the tempo is speed x 120 bpm",
        ),
        (
            msgspec.json.encode(
                {
                    "tracks": [
                        {"instrument": p, "notes": [{"pitch": 60, "start_beats": 0, "duration_beats": 1}]}
                        for p in range(16)
                    ]
                }
            ),
            "16 different melodic instruments: at most 15",
        ),
    ],
)
def test_bad_music_gets_a_clear_message(body: bytes, words: str) -> None:
    with pytest.raises(MusicError, match=words):
        decode_music(body)


def test_note_count_limit() -> None:
    notes = [{"pitch": 60, "start_beats": i * 0.01, "duration_beats": 0.01} for i in range(MAX_NOTES + 1)]
    with pytest.raises(MusicError, match=f"at most {MAX_NOTES}"):
        decode_music(score_json(notes))


def test_track_limit() -> None:
    tracks = [{"notes": [{"pitch": 60, "start_beats": 0, "duration_beats": 1}], "drums": True}] * 17
    with pytest.raises(MusicError, match="at most 16"):
        decode_music(msgspec.json.encode({"tracks": tracks}))


def test_same_music_same_key_whatever_the_spelling() -> None:
    grid = decode_music(b'{"notes": [[440]], "speed": 1.0, "instrument": 0}')
    score = decode_music(score_json([{"pitch": 69, "start_beats": 0, "duration_beats": 1}]))
    by_name = decode_music(
        b'{"tracks": [{"instrument": "Acoustic Grand Piano", "notes": [{"pitch": "A4", "start_beats": 0,'
        b' "duration_beats": 1.0}]}]}'
    )
    assert isinstance(score, Score)

    def key(music: Score, options: RenderOptions | None = None) -> str:
        return input_key("score", msgspec.json.encode(music.canonical()), options or RenderOptions())

    assert key(score) == key(by_name) == key(grid)
    assert key(score) != key(score, RenderOptions(format="flac"))
    other = decode_music(score_json([{"pitch": 70, "start_beats": 0, "duration_beats": 1}]))
    assert key(other) != key(score)
    assert grid.duration_seconds == score.duration_seconds == 0.5


def test_pitch_names_read_back_as_their_numbers() -> None:
    assert [pitch_name(n) for n in (0, 57, 60, 61, 108, 127)] == ["C-1", "A3", "C4", "C#4", "C8", "G9"]
    assert all(midi_number(pitch_name(n)) == n for n in range(128))
