"""The training script's export step: every candidate it may choose ships as a reproducible ONNX file."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

pytest.importorskip("skl2onnx", reason="the `train` extra is not installed")

from tuneforge.actors.mood.train import candidates, to_onnx


@pytest.mark.parametrize("name", sorted(candidates(seed=1)))
def test_every_candidate_exports_and_matches_scikit_learn(name: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(160, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) * 2 + (x[:, 1] > 0).astype(int)  # four learnable classes
    model = candidates(seed=1)[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SVC(probability=True) is deprecated in scikit-learn 1.9
        model.fit(x, y)  # type: ignore[attr-defined]
    first, second = tmp_path / "1" / "model.onnx", tmp_path / "2" / "model.onnx"
    first.parent.mkdir()
    second.parent.mkdir()
    to_onnx(model, x.shape[1], first)
    to_onnx(model, x.shape[1], second)
    session = onnxruntime.InferenceSession(str(first), providers=["CPUExecutionProvider"])
    (onnx_probabilities,) = session.run(["probabilities"], {"features": x})
    assert np.abs(onnx_probabilities - model.predict_proba(x)).max() < 1e-4  # type: ignore[attr-defined]
    assert first.read_bytes() == second.read_bytes()  # same model, same bytes


def test_a_head_reads_only_the_features_it_names_in_its_own_order(tmp_path: Path) -> None:
    """A model trained on a subset of the computed features is handed every feature and picks its own."""
    from sklearn.linear_model import LogisticRegression

    from tuneforge.actors.mood import features as F
    from tuneforge.actors.mood.model import ModelMissing, MoodModel

    names = list(F.AUDIO_FEATURE_NAMES)
    picked = ["mode_score", "loudness_db", "onset_rate_per_s"]  # a subset, not in computed order
    columns = [names.index(n) for n in picked]
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(200, len(names))).astype(np.float32)
    y = (rows[:, columns[0]] > 0).astype(int) * 2 + (rows[:, columns[1]] > 0).astype(int)
    classifier = LogisticRegression(max_iter=1000).fit(rows[:, columns], y)
    to_onnx(classifier, len(picked), tmp_path / "model.onnx")
    spec = {
        "file": "model.onnx",
        "features": picked,
        "mean": [0.0] * 3,
        "scale": [1.0] * 3,
        "decision": "marginals",
    }
    (tmp_path / "model.json").write_text(json.dumps({"version": "t", "models": {"audio": spec}}))

    probabilities = np.array([p.probabilities for p in MoodModel(tmp_path).predict(rows[:5])])
    assert np.abs(probabilities - classifier.predict_proba(rows[:5, columns])).max() < 1e-5

    spec["features"] = [*picked[:2], "a_feature_nobody_computes"]
    (tmp_path / "model.json").write_text(json.dumps({"version": "t", "models": {"audio": spec}}))
    with pytest.raises(ModelMissing, match="a_feature_nobody_computes"):
        MoodModel(tmp_path)

    # A model whose label is not the quadrant of its (valence, arousal) point is not loaded.
    spec["features"], spec["decision"] = picked, "argmax"
    (tmp_path / "model.json").write_text(json.dumps({"version": "t", "models": {"audio": spec}}))
    with pytest.raises(ModelMissing, match="marginals"):
        MoodModel(tmp_path)
