"""The training script's export step: every candidate it may choose ships as a reproducible ONNX file."""

from __future__ import annotations

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
