"""Mood benchmark: accuracy on EMOPIA `val` against baselines, then throughput and peak memory.

    .venv/bin/python bench/mood_eval.py [--emopia ../shared/data/emopia] [--cache data/mood-train]
                                        [--skip-accuracy] [--skip-throughput]

Accuracy — every `val` clip is rendered now through the project's exporter (`Renderer`, piano,
FluidR3, 44.1 kHz WAV: what a job renders by default) and analysed by the actor's own code
(`analyze`: streamed features → ONNX model), once from the audio alone and once with the
MIDI it was rendered from. Side by side, in the same run:
  - majority class of `train`;
  - logistic regression on the same features, fitted on the canonical (piano, FluidR3) renders of
    `train` from the training feature cache (`python -m tuneforge.actors.mood.train` writes it);
  - the committed model.
Tasks: 4 quadrants, arousal (high/low), valence (positive/negative); plus the model's confusion matrix
and how far its numbers can be trusted: the share of right labels at each level of `confidence`
(with the expected calibration error) and of right valence signs at each size of |valence|.
The audio head is also scored on copies of the same clips as other recordings would carry them:
peak-normalised to -1 dBFS (a mastered level) and resampled to 8 kHz (a narrow-band file); both
heads on the clips rendered as OGG Vorbis (what a job asking for OGG analyses).

Throughput — a 1-minute and a 10-minute piano piece (EMOPIA clips strung together) rendered to
44.1 kHz stereo WAV, analysed in a fresh child process each (after the librosa/model warm-up):
seconds of audio per wall second, and the child's peak resident memory (ru_maxrss) before and
after the analysis. Side by side: the same features computed after reading the whole file at
once (float64 stereo, as `soundfile.read` / `librosa.load` would), to show what streaming saves.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mido
import numpy as np

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = {"quadrant": 0.684, "arousal": 0.887, "valence": 0.833}
SOUNDFONT_DIR = Path(os.environ.get("TUNEFORGE_SOUNDFONT_DIR", "/usr/share/sounds/sf2"))
QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
NAMES = ("Q1 happy", "Q2 tense", "Q3 sad", "Q4 calm")


def task_scores(predicted: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {
        "quadrant": float(np.mean(predicted == y)),
        "arousal": float(np.mean(np.isin(predicted, (0, 1)) == np.isin(y, (0, 1)))),
        "valence": float(np.mean(np.isin(predicted, (0, 3)) == np.isin(y, (0, 3)))),
    }


def confusion_table(predicted: np.ndarray, y: np.ndarray) -> str:
    matrix = np.zeros((4, 4), dtype=int)
    np.add.at(matrix, (y, predicted), 1)
    lines = ["  true \\ predicted   " + "".join(f"{n:>10}" for n in NAMES)]
    for i, name in enumerate(NAMES):
        lines.append(f"  {name:<19}" + "".join(f"{v:>10}" for v in matrix[i]))
    return "\n".join(lines)


def accuracy(emopia: Path, cache: Path) -> None:
    import soundfile
    import soxr
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from tuneforge.actors.exporter.render import Renderer
    from tuneforge.actors.mood import features as F
    from tuneforge.actors.mood.analyze import analyze
    from tuneforge.actors.mood.model import load_model

    with (emopia / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    val = [r for r in rows if r["split"] == "val"]
    train_labels = np.array([QUADRANTS.index(r["quadrant"]) for r in rows if r["split"] == "train"])
    features_file = cache / f"features-v{F.FEATURE_VERSION}.npz"
    if not features_file.exists():
        raise SystemExit(f"{features_file} is missing: run python -m tuneforge.actors.mood.train first")
    cached = np.load(features_file)
    fit_rows = (cached["split"] == "train") & (cached["variant"] == "piano")
    y_fit = np.searchsorted(np.array(QUADRANTS), cached["quadrant"][fit_rows])

    model = load_model()
    renderer = Renderer(SOUNDFONT_DIR)
    y_val, midi_rows = [], []
    # Audio feature rows for the baselines: normalised (level and band), and as they were rendered
    # (`loud`: the same clip peak-normalised to -1 dBFS, as a mastered recording would be).
    rows: dict[str, list[np.ndarray]] = {
        "normalised": [],
        "rendered": [],
        "loud_normalised": [],
        "loud_raw": [],
    }
    predicted: dict[str, list[int]] = {
        "audio": [],
        "audio_midi": [],
        "audio_loud": [],
        "audio_8k": [],
        "audio_ogg": [],
        "audio_midi_ogg": [],
    }
    # What each head reports with its label: (confidence, valence), for how far they can be trusted.
    reported: dict[str, list[tuple[float, float]]] = {"audio": [], "audio_midi": []}
    render_s = analyze_s = audio_s = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i, row in enumerate(val):
            midi = (emopia / row["file"]).read_bytes()
            path = Path(tmp) / "clip.wav"
            started = time.perf_counter()
            result = renderer.render(midi, path, "wav", 44100, "fluidr3_gm", float(row["seconds"]) + 5)
            render_s += time.perf_counter() - started
            audio_s += result.duration_seconds
            started = time.perf_counter()
            for head, midi_bytes in (("audio", None), ("audio_midi", midi)):
                mood = analyze(path, midi_bytes, model)
                predicted[head].append(QUADRANTS.index(mood.quadrant))
                reported[head].append((mood.confidence, mood.valence))
            analyze_s += time.perf_counter() - started
            loud = Path(tmp) / "loud.wav"
            samples, rate = soundfile.read(path, dtype="float32")
            soundfile.write(loud, samples * (10 ** (-1 / 20) / max(float(np.abs(samples).max()), 1e-9)), rate)
            predicted["audio_loud"].append(QUADRANTS.index(analyze(loud, None, model).quadrant))
            narrow = Path(tmp) / "8k.wav"  # the same clip as an 8 kHz recording would carry it
            soundfile.write(narrow, soxr.resample(samples, rate, 8000), 8000)
            predicted["audio_8k"].append(QUADRANTS.index(analyze(narrow, None, model).quadrant))
            ogg = Path(tmp) / "clip.ogg"  # what a job rendering OGG Vorbis analyses, and a common upload
            renderer.render(midi, ogg, "ogg", 44100, "fluidr3_gm", float(row["seconds"]) + 5)
            predicted["audio_ogg"].append(QUADRANTS.index(analyze(ogg, None, model).quadrant))
            predicted["audio_midi_ogg"].append(QUADRANTS.index(analyze(ogg, midi, model).quadrant))
            # The same feature vectors, for the logistic-regression baselines.
            for key, source, normalise in (
                ("normalised", path, True),
                ("rendered", path, False),
                ("loud_normalised", loud, True),
                ("loud_raw", loud, False),
            ):
                piece = F.audio_frames(source, normalise=normalise)
                rows[key].append(F.span_features(piece.frames, piece.gain_db).vector)
            notes = F.read_midi_notes(midi)
            midi_rows.append(F.midi_piece_features(notes).vector)
            y_val.append(QUADRANTS.index(row["quadrant"]))
            if (i + 1) % 50 == 0:
                print(f"  … {i + 1}/{len(val)} val clips rendered and analysed", file=sys.stderr)
    renderer.close()
    y = np.array(y_val)
    majority = int(np.bincount(train_labels).argmax())

    def logreg(x_fit: np.ndarray, x_val: np.ndarray) -> np.ndarray:
        scaler = StandardScaler().fit(x_fit)
        clf = LogisticRegression(C=0.1, max_iter=5000).fit(scaler.transform(x_fit), y_fit)
        return np.asarray(clf.predict(scaler.transform(x_val)))

    x_audio_fit = cached["audio"][fit_rows]  # normalised in level and band, as the audio head reads them
    x_rendered_fit = cached["audio_rendered"][fit_rows]  # at the render's level
    x_both_fit = np.hstack([x_rendered_fit, cached["midi"][fit_rows]])
    x_both_val = np.hstack([np.array(rows["rendered"]), np.array(midi_rows)])
    columns = {
        "majority": task_scores(np.full(len(y), majority), y),
        "logreg audio": task_scores(logreg(x_audio_fit, np.array(rows["normalised"])), y),
        "model audio": task_scores(np.array(predicted["audio"]), y),
        "logreg audio+MIDI": task_scores(logreg(x_both_fit, x_both_val), y),
        "model audio+MIDI": task_scores(np.array(predicted["audio_midi"]), y),
        "published (test)": PUBLISHED,
    }
    # The same clips at a mastered recording's level: what level normalisation buys.
    loud_columns = {
        "logreg audio, level as is": task_scores(logreg(x_rendered_fit, np.array(rows["loud_raw"])), y),
        "logreg audio, normalised": task_scores(logreg(x_audio_fit, np.array(rows["loud_normalised"])), y),
        "model audio": task_scores(np.array(predicted["audio_loud"]), y),
    }
    # The same clips resampled to 8 kHz: what a narrow-band recording loses.
    narrow_columns = {
        "model audio, 44.1 kHz": columns["model audio"],
        "model audio, 8 kHz copy": task_scores(np.array(predicted["audio_8k"]), y),
    }
    # The same clips rendered as OGG Vorbis (a lossy codec fills spectral valleys).
    ogg_columns = {
        "model audio, WAV": columns["model audio"],
        "model audio, OGG": task_scores(np.array(predicted["audio_ogg"]), y),
        "model audio+MIDI, WAV": columns["model audio+MIDI"],
        "model audio+MIDI, OGG": task_scores(np.array(predicted["audio_midi_ogg"]), y),
    }
    agreement = {
        head: float(np.mean(np.array(predicted[head]) == np.array(predicted[f"{head}_ogg"])))
        for head in ("audio", "audio_midi")
    }
    print(f"\nEMOPIA val: {len(y)} clips, rendered piano/FluidR3/44.1 kHz through the exporter")
    print(f"  render {render_s:.1f} s, analysis (both heads) {analyze_s:.1f} s for {audio_s:.0f} s of audio")
    print(f"  majority class of train: {NAMES[majority]}")
    print("\n  accuracy            " + "".join(f"{c:>19}" for c in columns))
    for task in ("quadrant", "arousal", "valence"):
        label = {"quadrant": "4 quadrants", "arousal": "arousal", "valence": "valence"}[task]
        print(f"  {label:<18}" + "".join(f"{columns[c][task]:>19.3f}" for c in columns))
    print(
        "\n  the same clips peak-normalised to -1 dBFS (a mastered recording's level; renders peak near -23)"
    )
    print("  accuracy            " + "".join(f"{c:>28}" for c in loud_columns))
    for task in ("quadrant", "arousal", "valence"):
        label = {"quadrant": "4 quadrants", "arousal": "arousal", "valence": "valence"}[task]
        print(f"  {label:<18}" + "".join(f"{loud_columns[c][task]:>28.3f}" for c in loud_columns))
    print("\n  the same clips resampled to 8 kHz (a narrow-band recording)")
    print("  accuracy            " + "".join(f"{c:>28}" for c in narrow_columns))
    for task in ("quadrant", "arousal", "valence"):
        label = {"quadrant": "4 quadrants", "arousal": "arousal", "valence": "valence"}[task]
        print(f"  {label:<18}" + "".join(f"{narrow_columns[c][task]:>28.3f}" for c in narrow_columns))
    print("\n  the same clips rendered as OGG Vorbis by the exporter")
    print("  accuracy            " + "".join(f"{c:>24}" for c in ogg_columns))
    for task in ("quadrant", "arousal", "valence"):
        label = {"quadrant": "4 quadrants", "arousal": "arousal", "valence": "valence"}[task]
        print(f"  {label:<18}" + "".join(f"{ogg_columns[c][task]:>24.3f}" for c in ogg_columns))
    print(
        f"  same quadrant for the WAV and the OGG: audio {agreement['audio']:.3f},"
        f" audio+MIDI {agreement['audio_midi']:.3f}"
    )
    n = len(y)
    for head in ("audio", "audio_midi"):
        acc = columns["model audio" if head == "audio" else "model audio+MIDI"]["quadrant"]
        se = (acc * (1 - acc) / n) ** 0.5
        print(
            f"\n  model {head}: 4-quadrant accuracy {acc:.3f} ± {1.96 * se:.3f}"
            f" (95% binomial interval, n={n})"
        )
        print(confusion_table(np.array(predicted[head]), y))
        confidence, valence = np.array(reported[head]).T
        print(reliability_table(confidence, np.array(predicted[head]) == y, valence, y))


CONFIDENCE_BANDS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0001)
VALENCE_BANDS = (0.0, 0.2, 0.5, 1.0001)


def reliability_table(confidence: np.ndarray, correct: np.ndarray, valence: np.ndarray, y: np.ndarray) -> str:
    """How far the reported numbers can be trusted: the share of right labels at each level of
    `confidence` (and the expected calibration error: the gap, weighted by clips), and the share
    of right valence signs at each size of |valence|."""
    lines = ["  confidence   clips  mean confidence  right label"]
    gap = 0.0
    for low, high in itertools.pairwise(CONFIDENCE_BANDS):
        band = (confidence >= low) & (confidence < high)
        if band.any():
            gap += band.mean() * abs(confidence[band].mean() - correct[band].mean())
            lines.append(
                f"  {low:.1f}–{min(high, 1.0):.1f}  {band.sum():>9}  {confidence[band].mean():>15.3f}"
                f"  {correct[band].mean():>11.3f}"
            )
    lines.append(f"  expected calibration error {gap:.3f}")
    right_sign = (valence >= 0) == np.isin(y, (0, 3))
    lines.append("  |valence|    clips  right valence sign")
    for low, high in itertools.pairwise(VALENCE_BANDS):
        band = (np.abs(valence) >= low) & (np.abs(valence) < high)
        if band.any():
            lines.append(
                f"  {low:.1f}–{min(high, 1.0):.1f}  {band.sum():>9}  {right_sign[band].mean():>18.3f}"
            )
    return "\n".join(lines)


# --- throughput -----------------------------------------------------------------------------------


def long_piece(emopia: Path, seconds: float) -> bytes:
    """EMOPIA val clips strung one after another until `seconds` of music."""
    with (emopia / "labels.csv").open(newline="") as handle:
        files = [r["file"] for r in csv.DictReader(handle) if r["split"] == "val"]
    out = mido.MidiFile(ticks_per_beat=480)
    track = out.add_track()
    track.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
    events: list[tuple[float, mido.Message]] = []
    offset = 0.0
    for name in files:
        clip = mido.MidiFile(emopia / name)
        now = 0.0
        for msg in clip:
            now += msg.time
            if offset + now >= seconds:
                break
            if msg.type in ("note_on", "note_off", "control_change"):
                events.append((offset + now, msg.copy(time=0)))
        offset += clip.length
        if offset >= seconds:
            break
    last_tick = 0
    for at, msg in events:
        tick = round(at * 960)  # 480 ticks per beat at 120 bpm
        track.append(msg.copy(time=tick - last_tick))
        last_tick = tick
    buffer = io.BytesIO()
    out.save(file=buffer)
    return buffer.getvalue()


def child(mode: str, audio: Path, midi: Path | None) -> None:
    """Run in a fresh process: warm up, then analyse once; print JSON with time and peak memory."""
    from tuneforge.actors.mood import features as F
    from tuneforge.actors.mood.analyze import analyze, warm_up
    from tuneforge.actors.mood.model import load_model

    model = load_model()
    warm_up(model)
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    midi_bytes = midi.read_bytes() if midi else None
    if mode == "streamed":
        mood = analyze(audio, midi_bytes, model)
        seconds = mood.duration_seconds
    else:  # the whole file in memory first, float64 stereo as soundfile.read returns it
        import librosa
        import soundfile

        y, rate = soundfile.read(str(audio), dtype="float64", always_2d=True)
        mono = librosa.resample(y.mean(axis=1), orig_sr=rate, target_sr=F.SR)
        piece = F.signal_frames(mono.astype(np.float32))
        F.span_features(piece.frames, piece.gain_db)
        seconds = len(y) / rate
    wall = time.perf_counter() - started
    after_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "wall": wall, "before_kib": before_kib, "peak_kib": after_kib}))


def throughput(emopia: Path) -> None:
    from tuneforge.actors.exporter.render import Renderer

    renderer = Renderer(SOUNDFONT_DIR)
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(REPO / ".venv" / "numba-cache")),
    }
    print("\nThroughput and peak memory (fresh process per run, after warm-up; 44.1 kHz stereo 16-bit WAV)")
    print(
        f"  {'piece':<8}{'mode':<34}{'audio s':>9}{'wall s':>9}{'audio s / wall s':>18}"
        f"{'RSS before':>12}{'peak RSS':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in (1, 10):
            midi = long_piece(emopia, minutes * 60.0)
            midi_path = Path(tmp) / f"{minutes}min.mid"
            midi_path.write_bytes(midi)
            wav = Path(tmp) / f"{minutes}min.wav"
            renderer.render(midi, wav, "wav", 44100, "fluidr3_gm", minutes * 60.0 + 5)
            for mode, label, with_midi in (
                ("streamed", "streamed (actor), audio only", False),
                ("streamed", "streamed (actor), audio + MIDI", True),
                ("whole", "whole file read first (baseline)", False),
            ):
                argv = [sys.executable, __file__, "--child", mode, str(wav)]
                if with_midi:
                    argv.append(str(midi_path))
                output = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
                r = json.loads(output.strip().splitlines()[-1])
                print(
                    f"  {minutes:>2} min   {label:<34}{r['seconds']:>9.1f}{r['wall']:>9.2f}"
                    f"{r['seconds'] / r['wall']:>17.0f}×"
                    f"{r['before_kib'] / 1024:>9.0f} MiB{r['peak_kib'] / 1024:>6.0f} MiB"
                )
    renderer.close()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]) if len(sys.argv) > 4 else None)
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--emopia", type=Path, default=REPO.parent / "shared" / "data" / "emopia")
    parser.add_argument("--cache", type=Path, default=REPO / "data" / "mood-train")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    if not args.skip_accuracy:
        accuracy(args.emopia, args.cache)
    if not args.skip_throughput:
        throughput(args.emopia)
    return 0


if __name__ == "__main__":
    sys.exit(main())
