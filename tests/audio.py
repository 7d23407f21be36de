"""Measurements on rendered audio used by the tests: duration and dominant pitch."""

from __future__ import annotations

import io

import numpy as np
import soundfile


def read_audio(data: bytes) -> tuple[np.ndarray, int]:
    samples, rate = soundfile.read(io.BytesIO(data), always_2d=True)
    return samples.mean(axis=1), rate


def dominant_frequency_hz(mono: np.ndarray, rate: int, start_s: float = 0.1, length_s: float = 1.0) -> float:
    """Frequency of the strongest spectral peak in a window (0.5 Hz resolution for 2 s)."""
    window = mono[int(start_s * rate) : int((start_s + length_s) * rate)]
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window)), n=4 * len(window)))
    freqs = np.fft.rfftfreq(4 * len(window), 1 / rate)
    spectrum[freqs < 30] = 0
    return float(freqs[int(spectrum.argmax())])


def sounding_seconds(mono: np.ndarray, rate: int, relative_threshold: float = 0.05) -> float:
    """Time until the last sample above `relative_threshold` of the peak (ignores the quiet tail)."""
    level = np.abs(mono)
    loud = np.flatnonzero(level > relative_threshold * level.max())
    return float(loud[-1] + 1) / rate if len(loud) else 0.0
