"""A ten-minute piece gets its whole timeline, with memory bounded by the window, not the length."""

from __future__ import annotations

import itertools
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tuneforge.actors.exporter.render import Renderer
from tuneforge.actors.mood.analyze import analyze
from tuneforge.actors.mood.model import MoodModel, load_model
from tuneforge.actors.mood.train import piece_midi

RATE = 44100
HALF_S = 300.0
# Five minutes of a slow, soft minor piece, then five of a fast, loud major one.
SAD = piece_midi(58, 38, [[45, 57, 60, 64], [41, 53, 57, 60], [40, 52, 55, 59], [45, 57, 60, 64]], 4, 2, 19)
HAPPY = piece_midi(
    168, 115, [[60, 64, 67, 72], [65, 69, 72, 77], [67, 71, 74, 79], [60, 64, 67, 72]], 2, 0.25, 106
)


@pytest.fixture(scope="module")
def model() -> MoodModel:
    return load_model()


def render_long_piece(renderer: Renderer, tmp_path: Path) -> Path:
    """Both halves rendered by the exporter, joined by streaming a second at a time into one file."""
    halves = []
    for name, midi in (("sad", SAD), ("happy", HAPPY)):
        halves.append(tmp_path / f"{name}.wav")
        renderer.render(midi, halves[-1], "wav", RATE, "fluidr3_gm", HALF_S)
    path = tmp_path / "long.flac"
    with soundfile.SoundFile(path, "w", samplerate=RATE, channels=2, format="FLAC") as out:
        for half in halves:
            with soundfile.SoundFile(half) as source:
                for block in source.blocks(blocksize=RATE, frames=int(HALF_S * RATE), dtype="float32"):
                    out.write(block)
    return path


def test_ten_minutes_get_a_full_timeline_in_bounded_memory(
    model: MoodModel, soundfont_dir: Path, tmp_path: Path
) -> None:
    renderer = Renderer(soundfont_dir)
    path = render_long_piece(renderer, tmp_path)
    renderer.close()
    seconds = soundfile.info(str(path)).duration
    assert seconds == pytest.approx(2 * HALF_S, abs=1.0)
    analyze(path, model=model)  # the first call pays one-time set-up (numba, caches): not measured
    tracemalloc.start()
    mood = analyze(path, model=model)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert mood.duration_seconds == pytest.approx(seconds, abs=0.1)
    windows = mood.timeline
    assert len(windows) >= seconds / 5 - 1  # every 5-second window of the piece
    assert windows[0].start_seconds == 0.0 and windows[-1].end_seconds == pytest.approx(seconds, abs=5.0)
    assert all(a.end_seconds == pytest.approx(b.start_seconds) for a, b in itertools.pairwise(windows))
    # The timeline follows the music: the fast, loud half is clearly more aroused. (Valence from
    # audio alone is the model's weak axis: it does not reliably separate these halves.)
    first = [w for w in windows if w.end_seconds <= HALF_S]
    second = [w for w in windows if w.start_seconds >= HALF_S]
    assert np.mean([w.arousal for w in second]) > np.mean([w.arousal for w in first]) + 0.3
    # The whole file as float64 stereo would be 423 MB; streamed windows stay far below that.
    whole_file_bytes = seconds * RATE * 2 * 8
    assert peak < whole_file_bytes / 4, f"peak traced memory {peak / 1e6:.0f} MB"
