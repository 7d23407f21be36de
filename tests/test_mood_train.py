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


def exported_audio_head(
    tmp_path: Path, picked: list[str], seed: int, n_rows: int
) -> tuple[list[int], np.ndarray, object]:
    """A logistic regression on the `picked` audio features of random rows (its quadrant from the
    first two), exported to `tmp_path/model.onnx`: (the picked columns, the rows, the classifier)."""
    from sklearn.linear_model import LogisticRegression

    from tuneforge.actors.mood import features as F

    names = list(F.AUDIO_FEATURE_NAMES)
    columns = [names.index(n) for n in picked]
    rows = np.random.default_rng(seed).normal(size=(n_rows, len(names))).astype(np.float32)
    y = (rows[:, columns[0]] > 0).astype(int) * 2 + (rows[:, columns[1]] > 0).astype(int)
    classifier = LogisticRegression(max_iter=1000).fit(rows[:, columns], y)
    to_onnx(classifier, len(picked), tmp_path / "model.onnx")
    return columns, rows, classifier


def test_a_head_reads_only_the_features_it_names_in_its_own_order(tmp_path: Path) -> None:
    """A model trained on a subset of the computed features is handed every feature and picks its own."""
    from tuneforge.actors.mood.model import ModelMissing, MoodModel

    picked = ["mode_score", "loudness_db", "onset_rate_per_s"]  # a subset, not in computed order
    columns, rows, classifier = exported_audio_head(tmp_path, picked, seed=3, n_rows=200)
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


def test_a_head_evens_its_probabilities_by_the_quadrant_shares_it_was_trained_on(tmp_path: Path) -> None:
    """A head trained where calm was common reads calm's probability divided by that share (and every
    other quadrant's by its own), renormalised: the four moods as if equally common."""
    from tuneforge.actors.mood.model import MoodModel

    picked = ["mode_score", "loudness_db"]
    columns, rows, classifier = exported_audio_head(tmp_path, picked, seed=4, n_rows=200)
    spec = {"file": "model.onnx", "features": picked, "mean": [0.0] * 2, "scale": [1.0] * 2}
    spec["decision"] = "marginals"
    shares = np.array([0.2, 0.2, 0.2, 0.4])
    for recorded in (None, shares.tolist()):
        if recorded is not None:
            spec["quadrant_shares"] = recorded
        (tmp_path / "model.json").write_text(json.dumps({"version": "t", "models": {"audio": spec}}))
        read = np.array([p.probabilities for p in MoodModel(tmp_path).predict(rows[:20])])
        raw = classifier.predict_proba(rows[:20, columns])  # type: ignore[attr-defined]
        expected = raw if recorded is None else (raw / shares) / (raw / shares).sum(axis=1, keepdims=True)
        assert np.abs(read - expected).max() < 1e-5
    assert np.all(read[:, 3] < raw[:, 3] + 1e-9) and read.sum(axis=1) == pytest.approx(1.0)


def test_a_head_reads_each_feature_within_its_training_range_and_says_how_far_out_a_row_lies(
    tmp_path: Path,
) -> None:
    """Winsorised heads: a value beyond a feature's range is read at its edge, and a row with more
    features out there than the training data's 99th percentile is less typical."""
    from tuneforge.actors.mood import features as F
    from tuneforge.actors.mood.model import MoodModel

    names = list(F.AUDIO_FEATURE_NAMES)
    picked = ["mode_score", "loudness_db", "onset_rate_per_s", "pulse_clarity"]
    columns, _, _ = exported_audio_head(tmp_path, picked, seed=5, n_rows=300)
    spec = {
        "file": "model.onnx",
        "features": picked,
        "mean": [0.0] * 4,
        "scale": [1.0] * 4,
        "z_low": [-2.0] * 4,
        "z_high": [2.0] * 4,
        "typical_rms_z": 100.0,  # only the outside fraction speaks in this test
        "typical_outside_fraction": 0.25,
        "decision": "marginals",
    }
    (tmp_path / "model.json").write_text(json.dumps({"version": "t", "models": {"audio": spec}}))
    model = MoodModel(tmp_path)

    loudness = columns[1]
    values = {"inside": 1.5, "at_edge": 2.0, "one_out": 9.0, "far_out": 900.0}
    by_row = {}
    for name, value in values.items():
        row = np.zeros((1, len(names)), dtype=np.float32)
        row[0, loudness] = value
        by_row[name] = model.predict(row)[0]
    row = np.zeros((1, len(names)), dtype=np.float32)
    row[0, columns] = [-7.0, 7.0, 7.0, -7.0]
    by_row["all_out"] = model.predict(row)[0]
    assert by_row["one_out"].probabilities == pytest.approx(by_row["at_edge"].probabilities, abs=1e-6)
    assert by_row["far_out"].probabilities == pytest.approx(by_row["at_edge"].probabilities, abs=1e-6)
    assert by_row["inside"].probabilities != pytest.approx(by_row["at_edge"].probabilities, abs=1e-3)
    assert by_row["inside"].typicality == 1.0 and by_row["one_out"].typicality == 1.0  # 1 of 4 out: as train
    assert by_row["all_out"].typicality == pytest.approx(
        0.25
    )  # 4 of 4 out, train's 99th percentile is 1 in 4


def test_cached_feature_rows_come_back_in_clip_and_variant_order_whatever_their_order() -> None:
    """The feature cache is filled incrementally (missing rows only, by worker processes in any
    order): the table the fit reads must not depend on that, or a re-run would train another model."""
    from tuneforge.actors.mood.train import Clip, _feature_table, variants_for

    clips = [
        Clip(f"{q}_song{i}_0.mid", q, split, f"song{i}", 10.0)
        for i, (q, split) in enumerate([("Q1", "train"), ("Q3", "val"), ("Q2", "train")])
    ]
    keys = [(c.name, v.name) for c in clips for v in variants_for(c)]
    for clip in clips:  # the scored render first, and its OGG copy, for train and val alike
        names = [v.name for v in variants_for(clip)]
        assert names[0] == "piano" and "piano-ogg" in names
    rows = {
        key: (np.full(2, i, np.float32), np.full(3, i, np.float32), np.full(1, i, np.float32))
        for i, key in enumerate(keys)
    }
    shuffled = dict(reversed(list(rows.items())))
    missing = keys[3]
    del shuffled[missing]
    table = _feature_table(shuffled, clips)
    expected = [key for key in keys if key != missing]
    assert list(zip(table["clip"], table["variant"], strict=True)) == expected
    assert table["audio"][:, 0].tolist() == [keys.index(k) for k in expected]
    assert int(table["n_rows"]) == len(expected) and table["split"].tolist()[-1] == "train"


def test_every_variant_is_rendered_once_over_several_processes(soundfont_dir: Path, tmp_path: Path) -> None:
    """The render stage spreads batches over processes; each file is rendered whole, once: a
    re-run renders nothing, and no temporary file is left behind."""
    import soundfile

    from tuneforge.actors.mood import train
    from tuneforge.actors.mood.train import Clip, piece_midi, render_all, variants_for

    emopia, cache = tmp_path / "emopia", tmp_path / "cache"
    (emopia / "midi").mkdir(parents=True)
    clips = [
        Clip(f"midi/Q1_song{i}_0.mid", "Q1", split, f"song{i}", 2.0)
        for i, split in enumerate(["train", "val"])
    ]
    for clip in clips:
        (emopia / clip.file).write_bytes(piece_midi(120, 80, [[60, 64, 67, 72]], 2, 0.5, 2))  # 2 s
    expected = [v.path(cache, c) for c in clips for v in variants_for(c)]
    assert len(expected) == 10
    original_batch = train.RENDER_BATCH
    train.RENDER_BATCH = 3  # several batches for two processes
    try:
        render_all(clips, emopia, cache, soundfont_dir, jobs=2)
        first = {path: path.stat().st_mtime_ns for path in expected}
        for path in expected:
            assert soundfile.info(path).duration >= 2.0, path  # whole: the music and its release
        render_all(clips, emopia, cache, soundfont_dir, jobs=2)
    finally:
        train.RENDER_BATCH = original_batch
    assert {path: path.stat().st_mtime_ns for path in expected} == first
    assert sorted((cache / "audio").iterdir()) == sorted(expected)
