"""Mood models side by side on music unlike EMOPIA's: General MIDI files with bands and drums.

    .venv/bin/python bench/mood_ood.py [--midi-dir DIR] [--model DIR ...]

Every `.mid` under `--midi-dir` (default: Debian's `openttd-openmsx`, 31 tunes of ragtime, jazz,
marches and country, with drums and many instruments; `apt-get install openttd-openmsx`) is
rendered through the project's exporter (FluidR3, 44.1 kHz WAV, its own instruments) and analysed
by the actor's own code (`analyze`) with each `--model` directory, from the audio alone and with
its MIDI. These files carry no mood labels: the figures show how each model's answers spread
over the four moods and whether its two heads agree on the same music — a model that calls
nearly everything one mood, or whose heads disagree on most pieces, is extrapolating.
The first `--model` is the baseline; default: the committed model only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import mido
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MIDI_DIR = Path("/usr/share/games/openttd/baseset/openmsx")
SOUNDFONT_DIR = Path(os.environ.get("TUNEFORGE_SOUNDFONT_DIR", "/usr/share/sounds/sf2"))
LABELS = ("happy", "tense", "sad", "calm")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--midi-dir", type=Path, default=DEFAULT_MIDI_DIR)
    parser.add_argument("--model", type=Path, action="append", help="a model directory (repeat to compare)")
    args = parser.parse_args()
    from tuneforge.actors.exporter.render import Renderer
    from tuneforge.actors.mood.analyze import analyze
    from tuneforge.actors.mood.model import MODEL_DIR, MoodModel

    files = sorted(args.midi_dir.rglob("*.mid"))
    if not files:
        print(f"no .mid files under {args.midi_dir} (apt-get install openttd-openmsx, or pass --midi-dir)")
        return 1
    model_dirs: list[Path] = args.model or [MODEL_DIR]
    models = [MoodModel(d) for d in model_dirs]
    names = [f"{d.name}:{m.meta['version'][-10:]}" for d, m in zip(model_dirs, models, strict=True)]
    renderer = Renderer(SOUNDFONT_DIR)
    # results[model][head] = [(valence, arousal, label)] per file
    results: list[dict[str, list[tuple[float, float, str]]]] = [
        {"audio": [], "audio_midi": []} for _ in models
    ]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'file':28s} {'s':>5s}  " + "  ".join(f"{n[:24]:>24s}" for n in names))
        for file in files:
            midi = file.read_bytes()
            seconds = mido.MidiFile(file).length
            wav = Path(tmp) / "piece.wav"
            renderer.render(midi, wav, "wav", 44100, "fluidr3_gm", seconds + 3)
            cells = []
            for model, result in zip(models, results, strict=True):
                audio_mood = analyze(wav, None, model)
                midi_mood = analyze(wav, midi, model)
                result["audio"].append((audio_mood.valence, audio_mood.arousal, audio_mood.label))
                result["audio_midi"].append((midi_mood.valence, midi_mood.arousal, midi_mood.label))
                cells.append(f"{audio_mood.label:>5s}/{midi_mood.label:<5s} v{midi_mood.valence:+.2f}")
            print(
                f"{file.stem[:28]:28s} {seconds:5.0f}  " + "  ".join(f"{c:>24s}" for c in cells), flush=True
            )
    renderer.close()
    print(
        f"\n{len(files)} files in {time.perf_counter() - started:.0f} s"
        " (label: audio head / audio+MIDI head)\n"
    )
    print(f"{'model':28s} {'head':10s} " + " ".join(f"{label:>6s}" for label in LABELS) + "  valence arousal")
    for name, result in zip(names, results, strict=True):
        for head, rows in result.items():
            counts = Counter(label for _, _, label in rows)
            valence = np.mean([v for v, _, _ in rows])
            arousal = np.mean([a for _, a, _ in rows])
            print(
                f"{name[:28]:28s} {head:10s} "
                + " ".join(f"{counts[label]:6d}" for label in LABELS)
                + f"  {valence:+7.3f} {arousal:+7.3f}"
            )
        agree = np.mean([a[2] == m[2] for a, m in zip(result["audio"], result["audio_midi"], strict=True)])
        largest = max(Counter(label for _, _, label in result["audio_midi"]).values()) / len(files)
        print(
            f"{'':28s} heads agree on {agree:.0%} of files; the commonest audio+MIDI label has {largest:.0%}"
        )
    if len(results) > 1:
        base, *others = results
        for name, other in zip(names[1:], others, strict=True):
            for head in ("audio", "audio_midi"):
                same = np.mean([b[2] == o[2] for b, o in zip(base[head], other[head], strict=True)])
                print(f"{name} vs {names[0]} ({head}): same label on {same:.0%} of files")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
