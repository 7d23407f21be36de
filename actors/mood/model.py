"""The committed mood model, run with onnxruntime: feature vector → quadrant probabilities.

`model.json` (next to the `.onnx` files) names the features each model reads, their
normalisation (mean and scale of the training set), the label order and the metrics.
Two models share that contract: `audio` (any audio) and `audio_midi` (audio rendered from a
known MIDI file). Each is handed every feature `features.py` computes and reads the ones it
names, in its own order, so a model may use a subset of them.

Valence and arousal are read off the quadrant probabilities:
valence = P(Q1) + P(Q4) − P(Q2) − P(Q3), arousal = P(Q1) + P(Q2) − P(Q3) − P(Q4), both in [−1, 1],
and the label is the quadrant of that (valence, arousal) point, so the three always agree.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime

from tuneforge.actors.mood.features import AUDIO_FEATURE_NAMES, MIDI_FEATURE_NAMES

MODEL_DIR = Path(__file__).resolve().parent
LABELS = ("happy", "tense", "sad", "calm")
QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
VALENCE_SIGN = np.array([1.0, -1.0, -1.0, 1.0])
AROUSAL_SIGN = np.array([1.0, 1.0, -1.0, -1.0])


# What each head is handed: the audio features, then (audio_midi) the MIDI features.
HEAD_INPUTS = {"audio": AUDIO_FEATURE_NAMES, "audio_midi": (*AUDIO_FEATURE_NAMES, *MIDI_FEATURE_NAMES)}


class ModelMissing(RuntimeError):
    """No trained model next to this module: run `python -m tuneforge.actors.mood.train`."""


@dataclass(frozen=True)
class Prediction:
    probabilities: np.ndarray  # P(Q1..Q4), sums to 1
    quadrant_index: int
    # 1 for features like the training data's; less the further outside it they lie, where the
    # probabilities are an extrapolation (a test tone, noise, music unlike EMOPIA's piano).
    typicality: float = 1.0

    @property
    def valence(self) -> float:
        return float(np.clip(self.probabilities @ VALENCE_SIGN, -1.0, 1.0))

    @property
    def arousal(self) -> float:
        return float(np.clip(self.probabilities @ AROUSAL_SIGN, -1.0, 1.0))

    @property
    def label(self) -> str:
        return LABELS[self.quadrant_index]

    @property
    def quadrant(self) -> str:
        return QUADRANTS[self.quadrant_index]


def evened(probabilities: np.ndarray, quadrant_shares: np.ndarray | None) -> np.ndarray:
    """Quadrant probabilities (rows of Q1–Q4) as if the four quadrants were equally common: divided by
    each quadrant's share of the training clips, renormalised (a prior shift; `None`: as they are).

    EMOPIA's `train` has more calm clips than any other quadrant (240 of 767: 31 %), its `val` fewer
    (22 %); a classifier takes the training mix as its prior, and leaned calm on sad clips, the most
    common confusion on `val`.
    """
    if quadrant_shares is None:
        return probabilities
    weighted = np.asarray(probabilities, dtype=np.float64) / np.asarray(quadrant_shares, dtype=np.float64)
    return weighted / np.maximum(weighted.sum(axis=-1, keepdims=True), 1e-12)


def quadrant_indices(probabilities: np.ndarray) -> np.ndarray:
    """The quadrant (0–3 for Q1–Q4) of each row's (valence, arousal) point: the label's rule, shared
    by the actor and by training. Valence 0 counts as positive, arousal 0 as not aroused, so the
    origin (no mood) is calm."""
    valence, arousal = probabilities @ VALENCE_SIGN, probabilities @ AROUSAL_SIGN
    return np.where(arousal > 0, np.where(valence >= 0, 0, 1), np.where(valence >= 0, 3, 2))


class _Head:
    def __init__(self, directory: Path, spec: dict, computed: tuple[str, ...]) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # a tiny model: threads only cost here
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(directory / spec["file"]), options, providers=["CPUExecutionProvider"]
        )
        self.features: list[str] = list(spec["features"])
        unknown = sorted(set(self.features) - set(computed))
        if unknown:
            raise ModelMissing(f"{spec['file']} reads features that this code does not compute: {unknown}")
        self.columns = np.array([computed.index(name) for name in self.features], dtype=np.intp)
        self.mean = np.asarray(spec["mean"], dtype=np.float32)
        self.scale = np.asarray(spec["scale"], dtype=np.float32)
        self.input_name = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = spec.get("probability_output", outputs[-1])
        # Classes as the classifier saw them (indices into QUADRANTS).
        self.class_order: list[int] = list(spec.get("class_order", range(4)))
        if spec.get("decision") != "marginals":
            raise ModelMissing(
                f"{spec['file']} decides by {spec.get('decision')!r}: this code labels by the quadrant "
                "of (valence, arousal) ('marginals'); retrain with python -m tuneforge.actors.mood.train"
            )
        # Whether it reads audio normalised in level and band (features.audio_frames `normalise`).
        self.normalised: bool = bool(spec.get("normalised", False))
        self.typical_rms_z: float | None = spec.get("typical_rms_z")
        # The range (in z) each feature is read within, as in training; outside it the model has
        # seen nothing. Models before feature version 6 (the first winsorised fit) have none: no bound.
        self.z_low = np.asarray(spec.get("z_low", np.full(len(self.features), -np.inf)), dtype=np.float32)
        self.z_high = np.asarray(spec.get("z_high", np.full(len(self.features), np.inf)), dtype=np.float32)
        self.typical_outside_fraction: float | None = spec.get("typical_outside_fraction")
        # Each quadrant's share of the training clips (Q1–Q4), which its probabilities are evened by;
        # models trained before the shares were recorded have none (read as they come).
        shares = spec.get("quadrant_shares")
        self.quadrant_shares = np.asarray(shares, dtype=np.float64) if shares is not None else None

    def __call__(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Quadrant probabilities and typicality for rows of every computed feature (the head picks
        its own). Typicality, at most 1: the training data's 99th-percentile RMS z-score over the
        row's, and the training data's 99th-percentile fraction of features outside their range over
        the row's, whichever is smaller."""
        picked = np.asarray(rows, dtype=np.float32)[:, self.columns]
        z = ((picked - self.mean) / self.scale).astype(np.float32)
        x = np.clip(z, self.z_low, self.z_high)
        (raw,) = self.session.run([self.output_name], {self.input_name: x})
        probabilities = np.zeros((len(x), 4))
        probabilities[:, self.class_order] = np.asarray(raw, dtype=np.float64)
        probabilities = np.clip(probabilities, 0.0, None)
        probabilities /= np.maximum(probabilities.sum(axis=1, keepdims=True), 1e-12)
        probabilities = evened(probabilities, self.quadrant_shares)
        typicality = np.ones(len(x))
        if self.typical_rms_z:
            rms_z = np.sqrt(np.mean(np.square(z, dtype=np.float64), axis=1))
            typicality = np.minimum(typicality, self.typical_rms_z / np.maximum(rms_z, 1e-9))
        if self.typical_outside_fraction:
            outside = np.mean((z < self.z_low) | (z > self.z_high), axis=1)
            typicality = np.minimum(typicality, self.typical_outside_fraction / np.maximum(outside, 1e-9))
        return probabilities, typicality


class MoodModel:
    """The `audio` and `audio_midi` ONNX models described by `model.json`."""

    def __init__(self, directory: Path = MODEL_DIR) -> None:
        meta_path = directory / "model.json"
        if not meta_path.is_file():
            raise ModelMissing(f"no mood model at {meta_path}: run python -m tuneforge.actors.mood.train")
        self.meta = json.loads(meta_path.read_text())
        self.version: str = self.meta.get("version", "")
        self.heads = {
            name: _Head(directory, spec, HEAD_INPUTS[name]) for name, spec in self.meta["models"].items()
        }

    def _head_name(self, with_midi: bool) -> str:
        return "audio_midi" if with_midi and "audio_midi" in self.heads else "audio"

    def normalised(self, with_midi: bool) -> bool:
        """Whether the head that will answer reads audio normalised in level and band."""
        return self.heads[self._head_name(with_midi)].normalised

    def predict(self, audio: np.ndarray, midi: np.ndarray | None = None) -> list[Prediction]:
        """Predictions for rows of audio features (and, when known, MIDI features)."""
        audio = np.atleast_2d(audio)
        name = self._head_name(midi is not None)
        head = self.heads[name]
        rows = np.hstack([audio, np.atleast_2d(midi)]) if name == "audio_midi" and midi is not None else audio
        probabilities, typicality = head(rows)
        return [
            Prediction(p, int(q), float(t))
            for p, q, t in zip(probabilities, quadrant_indices(probabilities), typicality, strict=True)
        ]

    def name(self, with_midi: bool) -> str:
        return f"{self._head_name(with_midi)}@{self.version}"


@functools.cache
def load_model(directory: Path = MODEL_DIR) -> MoodModel:
    """The model, loaded once per process."""
    return MoodModel(directory)
