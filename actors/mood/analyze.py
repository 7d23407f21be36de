"""Audio file (+ the MIDI it came from, when known) → `Mood`. Pure work: no NATS, no storage.

The file is streamed once into frame features (see `features.py`); the whole piece and each
timeline window are summarised from those frames and run through the ONNX model. Windows
are `WINDOW_SECONDS` long and each is judged on its own window plus `CONTEXT_SECONDS` either
side, since a mood needs a few bars to show. Confidence is the probability of the label's
quadrant, scaled down for clips shorter than `FULL_CONFIDENCE_SECONDS`, for audio that is
mostly silence, and for features far outside the training data's (the model's `typicality`).
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuneforge.actors.mood import features as F
from tuneforge.actors.mood.model import LABELS, MoodModel, Prediction, load_model
from tuneforge.contracts.limits import MAX_AUDIO_SECONDS, sample_rate_problem
from tuneforge.contracts.mood import Mood, MoodFeatures, MoodWindow

log = logging.getLogger("tuneforge.mood")

WINDOW_SECONDS = 5.0
CONTEXT_SECONDS = 5.0
FULL_CONFIDENCE_SECONDS = 10.0
REST_AUDIBLE_FRACTION = 0.05  # a window sounding less than this (a quarter second in 5 s) is a rest
AudioError = F.AudioError


def _num(value: float, digits: int) -> float:
    """A plain Python float (numpy scalars do not serialise), rounded."""
    return round(float(value), digits)


# Silence has no mood: even odds, valence and arousal 0, confidence 0 (the label: calm, the quietest).
NO_MOOD = Prediction(np.full(4, 0.25), LABELS.index("calm"))


def _confidence(prediction: Prediction, seconds: float, audible_fraction: float) -> float:
    """The probability of the label's quadrant, scaled down for short and for mostly silent audio
    and for audio whose features lie outside the training data's."""
    if prediction is NO_MOOD:
        return 0.0
    length_factor = min(1.0, math.sqrt(max(seconds, 0.0) / FULL_CONFIDENCE_SECONDS))
    sound_factor = min(1.0, audible_fraction / 0.25)
    winning = float(prediction.probabilities[prediction.quadrant_index])
    return _num(winning * length_factor * sound_factor * prediction.typicality, 4)


def _coordinates(prediction: Prediction) -> tuple[float, float]:
    """Valence and arousal, rounded without crossing an axis: they stay in the label's quadrant
    (valence ≥ 0 positive, arousal > 0 aroused)."""
    valence, arousal = round(prediction.valence, 4), round(prediction.arousal, 4)
    if prediction.label in ("tense", "sad") and valence >= 0:
        valence = -0.0001
    if prediction.label in ("happy", "tense") and arousal <= 0:
        arousal = 0.0001
    return valence, arousal


def _features(
    audio: F.SpanSummary,
    midi: F.MidiSummary | None,
    notes: F.MidiNotes | None,
    onset_rate_per_s: float | None = None,
) -> MoodFeatures:
    """The features reported for a span; `onset_rate_per_s` replaces the span's own count."""
    midi_tempo = notes.tempo_bpm if notes is not None else None
    use_midi_key = midi is not None and midi.key_confidence > 0
    return MoodFeatures(
        tempo_bpm=_num(midi_tempo if midi_tempo else audio.tempo_bpm, 2),
        key=midi.key if use_midi_key and midi is not None else audio.key,
        mode=(midi.mode if use_midi_key and midi is not None else audio.mode),  # type: ignore[arg-type]
        key_confidence=_num(
            midi.key_confidence if use_midi_key and midi is not None else audio.key_confidence, 3
        ),
        loudness_db=_num(max(audio.loudness_db, -120.0), 2),
        dynamic_range_db=_num(audio.dynamic_range_db, 2),
        brightness_hz=_num(audio.brightness_hz, 1),
        onset_rate_per_s=_num(audio.onset_rate_per_s if onset_rate_per_s is None else onset_rate_per_s, 3),
        note_density_per_s=_num(midi.note_density_per_s, 3) if midi is not None else None,
        tempo_source="midi" if midi_tempo else "audio",
    )


def _probabilities(prediction: Prediction) -> dict[str, float]:
    return {label: round(float(p), 4) for label, p in zip(LABELS, prediction.probabilities, strict=True)}


@dataclass(frozen=True)
class Window:
    """One timeline window: judged on itself plus context either side, reported on itself."""

    start: float
    end: float
    judged_seconds: float
    judged: F.SpanSummary
    judged_midi: F.MidiSummary | None
    own: F.SpanSummary
    own_midi: F.MidiSummary | None


def analyze(
    audio_path: Path,
    midi: bytes | None = None,
    model: MoodModel | None = None,
    on_progress: Callable[[float], None] | None = None,
    window_seconds: float = WINDOW_SECONDS,
) -> Mood:
    """The mood of an audio file; `AudioError` if it is not decodable audio, `ValueError` for bad MIDI."""
    started = time.perf_counter()
    compile_features()  # under the lock, once per process: no analysis compiles numba code outside it
    model = model or load_model()
    notes = F.read_midi_notes(midi) if midi is not None else None

    def frames_progress(percent: float) -> None:
        if on_progress is not None:
            on_progress(percent * 0.9)

    announced = F.probe(audio_path)
    rate_problem = sample_rate_problem(announced.sample_rate_hz)
    if rate_problem:
        raise AudioError(rate_problem)
    announced_seconds = announced.duration_seconds
    if announced_seconds > MAX_AUDIO_SECONDS:
        raise AudioError(
            f"the audio lasts {announced_seconds:.0f} s: at most {MAX_AUDIO_SECONDS:.0f} s is analysed"
        )
    piece = F.audio_frames(audio_path, frames_progress, model.normalised(notes is not None))
    duration = piece.info.duration_seconds
    if duration <= 0 or piece.n_frames == 0:
        raise AudioError("the audio file contains no samples")
    frames = piece.frames

    whole = F.span_features(frames, piece.gain_db)
    whole_midi = F.midi_piece_features(notes) if notes is not None else None  # as in training

    # Timeline windows, each judged with some context on both sides; what a window reports (its
    # features, how much of it sounds) is of the window alone.
    def frames_of(lo: float, hi: float) -> np.ndarray:
        first = int(lo * F.FRAME_RATE)
        return frames[first : max(int(hi * F.FRAME_RATE), first + 1)]

    starts = np.arange(0.0, duration, window_seconds) if duration > window_seconds else np.zeros(0)
    windows: list[Window] = []
    for start in starts:
        end = min(duration, start + window_seconds)
        lo, hi = max(0.0, start - CONTEXT_SECONDS), min(duration, end + CONTEXT_SECONDS)
        windows.append(
            Window(
                start=float(start),
                end=float(end),
                judged_seconds=hi - lo,
                judged=F.span_features(frames_of(lo, hi), piece.gain_db),
                judged_midi=F.midi_span_features(notes, lo, hi) if notes is not None else None,
                own=F.span_features(frames_of(start, end), piece.gain_db),
                own_midi=F.midi_span_features(notes, start, end) if notes is not None else None,
            )
        )

    audio_rows = np.vstack([whole.vector, *(w.judged.vector for w in windows)])
    midi_rows = None
    if whole_midi is not None:
        midi_rows = np.vstack([whole_midi.vector, *(w.judged_midi.vector for w in windows if w.judged_midi)])
    predictions = model.predict(audio_rows, midi_rows)
    if whole.audible_fraction == 0:
        # Not a frame of sound in the whole file (its loud parts at or below AUDIBLE_DB, so no gain
        # either): whatever the model makes of a blank feature vector, far out of its training, is
        # not a mood. A quiet passage of a piece with sound keeps its own reading.
        predictions = [NO_MOOD] * len(predictions)
    overall = predictions[0]
    # A window with no sound of its own (a rest, the silence after the music) has no mood either,
    # whatever its neighbours sound like; its edges may catch a frame or two of theirs.
    window_predictions = [
        NO_MOOD if w.own.audible_fraction < REST_AUDIBLE_FRACTION else prediction
        for w, prediction in zip(windows, predictions[1:], strict=True)
    ]

    # A window reports the onsets found over the whole piece that fall in it. Detection scales its
    # envelope to the span it is given, and a window of held chords alone had the ripples of its
    # sustain counted as 7-10 onsets a second (the model still reads each span as it was trained).
    onset_s = whole.onset_frames / F.FRAME_RATE

    def onset_rate(w: Window) -> float:
        return float(np.count_nonzero((onset_s >= w.start) & (onset_s < w.end)) / max(w.end - w.start, 1e-3))

    timeline = []
    for w, prediction in zip(windows, window_predictions, strict=True):
        valence, arousal = _coordinates(prediction)
        timeline.append(
            MoodWindow(
                start_seconds=_num(w.start, 3),
                end_seconds=_num(w.end, 3),
                label=prediction.label,  # type: ignore[arg-type]
                quadrant=prediction.quadrant,  # type: ignore[arg-type]
                valence=valence,
                arousal=arousal,
                confidence=_confidence(prediction, w.judged_seconds, w.own.audible_fraction),
                probabilities=_probabilities(prediction),
                features=_features(w.own, w.own_midi, notes, onset_rate(w)),
            )
        )
    overall_valence, overall_arousal = _coordinates(overall)
    if on_progress is not None:
        on_progress(100.0)
    return Mood(
        label=overall.label,  # type: ignore[arg-type]
        quadrant=overall.quadrant,  # type: ignore[arg-type]
        valence=overall_valence,
        arousal=overall_arousal,
        confidence=_confidence(overall, duration, whole.audible_fraction),
        probabilities=_probabilities(overall),
        features=_features(whole, whole_midi, notes),
        duration_seconds=_num(duration, 3),
        timeline=timeline,
        sample_rate_hz=int(piece.info.sample_rate_hz),
        channels=int(piece.info.channels),
        model=model.name(notes is not None),
        analysis_seconds=round(time.perf_counter() - started, 4),
    )


@contextmanager
def jit_cache_lock() -> Iterator[None]:
    """Hold the lock, kept beside numba's disk cache, under which librosa's numba code is compiled.

    numba's on-disk cache is not safe for processes compiling the same gufuncs at once (numba issue
    #10128): two mood replicas warming up together on an empty `NUMBA_CACHE_DIR` can leave a cache
    that makes every later process segfault on load (seen here in 2 of 3 trials). Whoever compiles
    takes this lock; the others wait, then load the finished cache.
    """
    folder = Path(os.environ.get("NUMBA_CACHE_DIR") or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".tuneforge-jit.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def warm_up(model: MoodModel | None = None) -> None:
    """Compile librosa's numba code and load the model once, ahead of the first request."""
    (model or load_model()).predict(compile_features())


_compiled: np.ndarray | None = None  # this process's compile_features() result, once it has run


def compile_features() -> np.ndarray:
    """Compile (or load from numba's disk cache) every numba function `analyze` calls, under
    `jit_cache_lock`, after making sure the disk cache does not crash whoever loads it; the
    features of a test tone. Once per process: `analyze` calls it too, so no analysis compiles
    outside the lock.
    """
    global _compiled
    if _compiled is None:
        with jit_cache_lock():
            _discard_a_cache_that_crashes()
            _compiled = exercise_features()
    return _compiled


def exercise_features() -> np.ndarray:
    """Run the feature code once on a test tone; the features of it.

    This calls every numba function `analyze` calls (checked: analysing WAV, FLAC, MIDI-backed
    and 8 kHz audio afterwards adds nothing to the cache), so only this step writes the cache.
    """
    rng = np.random.default_rng(0)
    y = (
        0.1 * np.sin(2 * np.pi * 440 * np.arange(F.SR * 2) / F.SR) + 0.01 * rng.standard_normal(F.SR * 2)
    ).astype(np.float32)
    F.signal_frames(y, normalise=False)  # the renders' full-band path
    return F.span_features(F.signal_frames(y).frames).vector


# The probe: another process loads (or compiles) the cache through the same code first.
_PROBE = "from tuneforge.actors.mood.analyze import exercise_features; exercise_features()"
PROBE_TIMEOUT_S = 600.0


def _discard_a_cache_that_crashes() -> None:
    """Load the numba cache in a child process first; if that dies of a signal, delete the cache.

    A cache whose files come from processes that compiled in different orders (numba #10128: a
    replica killed mid-compile, or an analysis that compiled outside the lock) crashes every process
    that loads it, at its first onset detection: a mood worker would segfault at every restart and
    its jobs would wait forever. Called under `jit_cache_lock`; costs a process start (~3 s).
    """
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, timeout=PROBE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        log.warning("numba cache probe: no answer in %.0f s; compiling in this process", PROBE_TIMEOUT_S)
        return
    if probe.returncode >= 0:
        return  # loaded (or failed in Python: the same code in this process will raise it clearly)
    folder = os.environ.get("NUMBA_CACHE_DIR")
    if not folder:
        log.error(
            "numba's cache crashes the process that loads it (signal %d); set NUMBA_CACHE_DIR to a folder "
            "of its own",
            -probe.returncode,
        )
        return
    stale = [p for p in Path(folder).rglob("*") if p.suffix in (".nbi", ".nbc")]
    for path in stale:
        path.unlink(missing_ok=True)
    log.warning(
        "numba cache in %s crashed a process loading it (signal %d): deleted its %d files; compiling afresh",
        folder,
        -probe.returncode,
        len(stale),
    )
