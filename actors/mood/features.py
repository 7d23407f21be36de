"""Musical features for mood: from audio (librosa, streamed in blocks) and from MIDI (mido).

Audio is never loaded whole: `AudioAnalyzer` reads the file in blocks with soundfile,
downmixes to mono, resamples to 22.05 kHz with a streaming resampler (soxr) and computes one
STFT per frame block, from which every frame-level feature is derived (mel, MFCC, onset
flux, RMS, spectral shape, chroma). What it keeps is a small float32 matrix of frame
features (about 40 numbers per 23 ms), so memory stays flat in the length of the piece:
a 10-minute piece keeps ~4 MB of frame features however large its file.

Audio of unknown origin is first brought to one level: its loud parts (the 95th percentile of
100-ms RMS, measured in a first, cheap pass over the file) are set to `REFERENCE_LEVEL_DB`. A
mastered recording is 30 dB louder than the exporter's renders the model learnt from; without
this, level alone would read as arousal. Dynamics within the piece are kept, and the reported
loudness is the file's own. Audio the exporter rendered from known MIDI keeps its level: there
it follows the notes' velocities (FluidSynth at a fixed gain), a real cue for arousal.

Audio of unknown origin is also heard in one band: its features read only the spectrum below
`BAND_HZ` (3.5 kHz), which an 8 kHz recording still has, so the same music uploaded at 8, 16 or
44.1 kHz, or as a low-bitrate MP3, gives the same features. With the full band, the missing highs
of a low-rate file read as a different timbre (brightness, MFCC) and flipped the mood. The
exporter's renders (22.05 kHz and up) keep the full band, whose highs help the model.

`span_features` then summarises any span of frames (the whole piece, or one timeline
window) into the fixed vector the model reads; `midi_span_features` does the same from
the notes of a Standard MIDI File when it is known.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import librosa
import mido
import numpy as np
import scipy.signal
import soundfile
import soxr

from tuneforge.contracts.instruments import PITCH_CLASSES
from tuneforge.contracts.midi import MidiError, parse_midi

FEATURE_VERSION = 6
SR = 22050
N_FFT = 2048
HOP = 512
FRAME_RATE = SR / HOP  # frames per second
# Audio of unknown origin is read only below this: an 8 kHz file (Nyquist 4 kHz, less the
# resampler's transition band) has all of it, so every sample rate from 8 kHz up reads the same.
BAND_HZ = 3500.0
BAND_BINS = int(BAND_HZ * N_FFT / SR) + 1
CONTRAST_FMIN_HZ = 100.0
# Octaves from 100 Hz: 100-200-…-3200 Hz, then 3200 Hz to the band's edge (or to 11 kHz). librosa's extra band
# below 100 Hz is dropped: its valley is the file's noise floor (it moved by 2 dB when the same
# audio was resampled), not the music.
CONTRAST_BANDS = 5
N_MELS = 64
N_MFCC = 13
BLOCK_SECONDS = 20.0  # audio read and transformed per block
SILENCE_DB = -60.0  # frames below it are left out of the features (20 dB under normalised loud parts)
# Frames above this count as music for the confidence: a pianissimo passage 20–40 dB under the
# piece's loud parts is soft, not silent (it still has a mood); below it is the noise floor. A piece
# with no frame above it is silence. (Not SILENCE_DB: the exporter renders a piece played
# pianissimo, velocity 30, at -65 to -45 dBFS, and with its MIDI known it is read at that level.)
AUDIBLE_DB = -80.0
# The level of a piece's loud parts after normalisation: about the median of the exporter's piano
# renders (FluidSynth gain 0.2), where the silence gate and the onset flux's soft floor were tuned.
REFERENCE_LEVEL_DB = -40.0
LEVEL_FRAME_SECONDS = 0.1
# A first-order high-pass at 5 Hz takes out a DC offset (a cheap converter's, or an editor's), which
# no one hears but which read as level and as low-frequency energy: +0.01 of DC on a soft piano
# piece raised its loudness by 17 dB and turned it from sad to tense. A0, the piano's lowest note
# (27.5 Hz), loses 0.14 dB.
DC_CUTOFF_HZ = 5.0
# A downmix this far (20 dB) under its channels' own level is channels in opposite polarity
# cancelling: that is read from the loudest channel instead.
CANCELLED_DOWNMIX_RATIO = 0.01

# Krumhansl–Kessler key profiles (C major, C minor), the usual template for key finding.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _triad_templates() -> np.ndarray:
    """24 unit-norm chord templates: 12 major triads, then 12 minor triads."""
    templates = np.zeros((24, 12))
    for root in range(12):
        for offset in (0, 4, 7):
            templates[root, (root + offset) % 12] = 1.0
        for offset in (0, 3, 7):
            templates[12 + root, (root + offset) % 12] = 1.0
    return templates / np.linalg.norm(templates, axis=1, keepdims=True)


_TRIADS = _triad_templates()

# Column layout of the frame-feature matrix.
F_RMS = 0
F_CENTROID = 1
F_BANDWIDTH = 2
F_ROLLOFF = 3
F_FLATNESS = 4
F_ONSET = 5
F_CONTRAST = slice(6, 6 + CONTRAST_BANDS)
F_MFCC = slice(F_CONTRAST.stop, F_CONTRAST.stop + N_MFCC)
F_CHROMA = slice(F_MFCC.stop, F_MFCC.stop + 12)
N_FRAME_FEATURES = F_CHROMA.stop


class AudioError(ValueError):
    """The file is not audio soundfile can decode (or is empty/corrupt)."""


@dataclass(frozen=True)
class AudioInfo:
    sample_rate_hz: int
    channels: int
    duration_seconds: float
    format: str


@dataclass
class FrameFeatures:
    """Frame-level features of a whole piece at `FRAME_RATE` frames per second."""

    frames: np.ndarray  # (n_frames, N_FRAME_FEATURES) float32, of the (normalised) signal
    info: AudioInfo
    gain_db: float  # applied before the features (REFERENCE_LEVEL_DB − the piece's loud level, or 0)

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])


def _reason(error: Exception) -> str:
    """libsndfile's own words, without the file's path (a scratch file the caller never named)."""
    return getattr(error, "error_string", None) or str(error)


def probe(path: Path) -> AudioInfo:
    """Open the file as audio (WAV, FLAC, OGG, MP3, …) or raise `AudioError`."""
    try:
        with soundfile.SoundFile(str(path)) as f:
            return AudioInfo(
                f.samplerate, f.channels, f.frames / f.samplerate if f.samplerate else 0.0, f.format
            )
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioError(f"not a readable audio file: {_reason(error)}") from None


def iter_mono_blocks(
    path: Path, block_seconds: float = BLOCK_SECONDS, resample: bool = True
) -> Iterator[np.ndarray]:
    """The file as float32 mono at `SR` (or at its own rate), block by block (streaming read)."""
    try:
        f = soundfile.SoundFile(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioError(f"not a readable audio file: {_reason(error)}") from None
    with f:
        if f.samplerate <= 0 or f.channels <= 0:
            raise AudioError("the audio file has no samples")
        resampler = (
            None
            if f.samplerate == SR or not resample
            else soxr.ResampleStream(f.samplerate, SR, 1, dtype="float32")
        )
        block_frames = max(1024, int(block_seconds * f.samplerate))
        dc_blocker = DcBlocker(f.samplerate)
        while True:
            try:
                block = f.read(block_frames, dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as error:
                raise AudioError(f"the audio data is corrupt: {_reason(error)}") from None
            last = len(block) < block_frames
            mono = dc_blocker(_downmix(np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)))
            if resampler is not None:
                mono = resampler.resample_chunk(np.ascontiguousarray(mono), last=last)
            if len(mono):
                yield np.asarray(mono, dtype=np.float32)
            if last:
                return


class DcBlocker:
    """The `DC_CUTOFF_HZ` high-pass, applied block after block of one signal."""

    def __init__(self, sample_rate_hz: float) -> None:
        pole = math.exp(-2 * math.pi * DC_CUTOFF_HZ / sample_rate_hz)
        # In float32 throughout, like the samples: 4 ms per 20-s block at 44.1 kHz, against 7 ms in
        # scipy's float64 default (the outputs differ by 4e-6).
        self.numerator = np.array([1.0, -1.0], dtype=np.float32)
        self.denominator = np.array([1.0, -pole], dtype=np.float32)
        self.state = np.zeros(1, dtype=np.float32)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        if not len(samples):
            return samples
        filtered, self.state = scipy.signal.lfilter(
            self.numerator, self.denominator, samples.astype(np.float32, copy=False), zi=self.state
        )
        return np.asarray(filtered, dtype=np.float32)


def _downmix(block: np.ndarray) -> np.ndarray:
    """One channel of (frames, channels) samples: their mean, unless they cancel in it."""
    if block.shape[1] == 1 or not len(block):
        return block[:, 0]
    mono = block.mean(axis=1, dtype=np.float32)
    channel_power = np.mean(np.square(block, dtype=np.float64), axis=0)
    if np.mean(np.square(mono, dtype=np.float64)) < CANCELLED_DOWNMIX_RATIO * channel_power.mean():
        return block[:, int(channel_power.argmax())]
    return mono


def loud_level_db(blocks: Iterator[np.ndarray], sample_rate_hz: float) -> float:
    """The level of the loud parts of a mono signal: 95th percentile of its 100-ms RMS, in dBFS."""
    frame = max(1, round(LEVEL_FRAME_SECONDS * sample_rate_hz))
    powers, carry = [], np.zeros(0, dtype=np.float32)
    for block in blocks:
        samples = np.concatenate([carry, block])
        n = len(samples) // frame
        if n:
            powers.append(
                np.mean(np.square(samples[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
            )
        carry = samples[n * frame :]
    if len(carry):  # the trailing partial frame counts too (it is all a very short clip has)
        powers.append(np.array([np.mean(np.square(carry, dtype=np.float64))]))
    if not powers:
        return -200.0
    return float(np.percentile(10 * np.log10(np.maximum(np.concatenate(powers), 1e-20)), 95))


def normalising_gain_db(level_db: float) -> float:
    """The gain that brings a piece's loud parts to `REFERENCE_LEVEL_DB`; none for silence."""
    return REFERENCE_LEVEL_DB - level_db if level_db > AUDIBLE_DB else 0.0


class _FrameComputer:
    """One STFT per block of audio → frame features; blocks join seamlessly (no `center` padding)."""

    def __init__(self, band_limited: bool) -> None:
        # The STFT bins the features read: those below BAND_HZ, or all of them.
        self.bins = BAND_BINS if band_limited else N_FFT // 2 + 1
        self.freqs = librosa.fft_frequencies(sr=SR, n_fft=N_FFT)[: self.bins]
        self.mel_basis = librosa.filters.mel(
            sr=SR, n_fft=N_FFT, n_mels=N_MELS, fmax=BAND_HZ if band_limited else None
        ).astype(np.float32)
        self.window = librosa.filters.get_window("hann", N_FFT, fftbins=True).astype(np.float32)
        self.prev_mel: np.ndarray | None = None
        # Leading half-window of silence, as librosa's `center=True` would pad.
        self.buffer = np.zeros(N_FFT // 2, dtype=np.float32)
        self.out: list[np.ndarray] = []

    def push(self, samples: np.ndarray, final: bool = False) -> None:
        buffer = np.concatenate([self.buffer, samples]) if len(samples) else self.buffer
        if final:
            # Trailing half-window of silence: 1 + len(y) // HOP frames in all, like `center=True`.
            pad = max(N_FFT // 2, N_FFT - len(buffer))
            buffer = np.concatenate([buffer, np.zeros(pad, dtype=np.float32)])
        if len(buffer) < N_FFT:
            self.buffer = buffer
            return
        n_frames = 1 + (len(buffer) - N_FFT) // HOP
        used = (n_frames - 1) * HOP + N_FFT
        self.out.append(self._features(buffer[:used]))
        self.buffer = buffer[n_frames * HOP :].copy()

    def _features(self, y: np.ndarray) -> np.ndarray:
        spectrum = librosa.stft(y, n_fft=N_FFT, hop_length=HOP, window=self.window, center=False)
        magnitude = np.abs(spectrum).astype(np.float32)
        magnitude[self.bins :] = 0.0  # outside the band read (see BAND_HZ)
        power = magnitude**2
        n = magnitude.shape[1]
        out = np.empty((n, N_FRAME_FEATURES), dtype=np.float32)
        out[:, F_RMS] = librosa.feature.rms(S=magnitude, frame_length=N_FFT)[0]
        out[:, F_CENTROID] = librosa.feature.spectral_centroid(S=magnitude, sr=SR)[0]
        out[:, F_BANDWIDTH] = librosa.feature.spectral_bandwidth(S=magnitude, sr=SR)[0]
        out[:, F_ROLLOFF] = librosa.feature.spectral_rolloff(S=magnitude, sr=SR)[0]
        out[:, F_FLATNESS] = librosa.feature.spectral_flatness(S=magnitude[: self.bins])[0]
        out[:, F_CONTRAST] = librosa.feature.spectral_contrast(
            S=magnitude[: self.bins], freq=self.freqs, fmin=CONTRAST_FMIN_HZ, n_bands=CONTRAST_BANDS
        )[1:].T
        mel = self.mel_basis @ power
        logmel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
        out[:, F_MFCC] = librosa.feature.mfcc(S=logmel, n_mfcc=N_MFCC).T
        # Spectral flux on log-compressed mel energy (soft floor, so silence → sound is no spike).
        compressed = np.log1p(1e4 * mel)
        previous = self.prev_mel if self.prev_mel is not None else compressed[:, :1]
        flux = np.diff(np.concatenate([previous, compressed], axis=1), axis=1)
        out[:, F_ONSET] = np.maximum(flux, 0.0).mean(axis=0)
        self.prev_mel = compressed[:, -1:]
        out[:, F_CHROMA] = librosa.feature.chroma_stft(S=power, sr=SR, tuning=0.0, norm=None).T
        np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return out

    def result(self) -> np.ndarray:
        if not self.out:
            return np.zeros((0, N_FRAME_FEATURES), dtype=np.float32)
        return np.concatenate(self.out)


def audio_frames(
    path: Path, on_progress: Callable[[float], None] | None = None, normalise: bool = True
) -> FrameFeatures:
    """Frame features of an audio file, streamed block by block.

    `normalise` for audio of unknown origin: its level is measured in a first pass and brought to
    `REFERENCE_LEVEL_DB`, and only the band below `BAND_HZ` is read. The exporter's own renders
    are read as they are.
    """
    info = probe(path)
    gain_db = (
        normalising_gain_db(loud_level_db(iter_mono_blocks(path, resample=False), info.sample_rate_hz))
        if normalise
        else 0.0
    )
    gain = np.float32(10 ** (gain_db / 20))
    computer = _FrameComputer(band_limited=normalise)
    done_seconds = 0.0
    for block in iter_mono_blocks(path):
        computer.push(block * gain)
        done_seconds += len(block) / SR
        if on_progress is not None and info.duration_seconds > 0:
            on_progress(min(99.0, 100.0 * done_seconds / info.duration_seconds))
    computer.push(np.zeros(0, dtype=np.float32), final=True)
    frames = computer.result()
    # The true length (MP3 headers can only estimate it).
    duration = done_seconds if done_seconds > 0 else info.duration_seconds
    return FrameFeatures(
        frames, AudioInfo(info.sample_rate_hz, info.channels, duration, info.format), gain_db
    )


def signal_frames(y: np.ndarray, normalise: bool = True) -> FrameFeatures:
    """Frame features of a mono signal already at `SR` (tests, warm-up, benchmarks)."""
    y = DcBlocker(SR)(np.asarray(y, dtype=np.float32))
    gain_db = normalising_gain_db(loud_level_db(iter([y]), SR)) if normalise else 0.0
    computer = _FrameComputer(band_limited=normalise)
    computer.push(y * np.float32(10 ** (gain_db / 20)), final=True)
    return FrameFeatures(computer.result(), AudioInfo(SR, 1, len(y) / SR, "signal"), gain_db)


# --- summaries of a span of frames ----------------------------------------------------------------


def key_of(profile: np.ndarray) -> tuple[int, str, float, float, float]:
    """(tonic, mode, best correlation, best major corr, best minor corr) of a pitch-class profile."""
    if not np.any(profile > 0) or np.allclose(profile, profile[0]):
        return 0, "major", 0.0, 0.0, 0.0
    major = np.array([np.corrcoef(profile, np.roll(_MAJOR_PROFILE, k))[0, 1] for k in range(12)])
    minor = np.array([np.corrcoef(profile, np.roll(_MINOR_PROFILE, k))[0, 1] for k in range(12)])
    major = np.nan_to_num(major)
    minor = np.nan_to_num(minor)
    if major.max() >= minor.max():
        return int(major.argmax()), "major", float(major.max()), float(major.max()), float(minor.max())
    return int(minor.argmax()), "minor", float(minor.max()), float(major.max()), float(minor.max())


def _tempo(envelope: np.ndarray, rate: float) -> tuple[float, float]:
    """Tempo (bpm) and pulse clarity from an onset envelope, by autocorrelation with a tempo prior."""
    if len(envelope) < 8 or not np.any(envelope > 0):
        return 0.0, 0.0
    x = envelope - envelope.mean()
    max_lag = min(len(x) - 1, int(rate * 60 / 30))  # down to 30 bpm
    min_lag = max(1, int(rate * 60 / 300))  # up to 300 bpm
    if max_lag <= min_lag:
        return 0.0, 0.0
    ac = librosa.autocorrelate(x, max_size=max_lag + 1)
    if ac[0] <= 0:
        return 0.0, 0.0
    ac = ac / ac[0]
    lags = np.arange(min_lag, max_lag + 1)
    bpm = 60.0 * rate / lags
    # librosa's prior: log-normal around 120 bpm, one octave wide.
    prior = np.exp(-0.5 * ((np.log2(bpm) - np.log2(120.0)) / 1.0) ** 2)
    scores = np.maximum(ac[lags], 0) * prior
    best = int(scores.argmax())
    return float(bpm[best]), float(max(0.0, ac[lags].max()))


def onset_frames(envelope: np.ndarray) -> np.ndarray:
    """The frames of the onsets in an onset envelope: peaks of the envelope scaled to [0, 1] over its
    own span (so a span's onsets are relative to that span's loudest attack)."""
    if len(envelope) < 3 or not np.any(envelope > 0):
        return np.zeros(0, dtype=np.intp)
    return np.asarray(
        librosa.onset.onset_detect(
            onset_envelope=envelope.astype(np.float64), sr=SR, hop_length=HOP, units="frames", normalize=True
        ),
        dtype=np.intp,
    )


AUDIO_FEATURE_NAMES: tuple[str, ...] = (
    "loudness_db",
    "dynamic_range_db",
    "rms_db_std",
    "silence_fraction",
    "log2_brightness_hz",
    "brightness_cv",
    "log2_bandwidth_hz",
    "log2_rolloff_hz",
    "flatness_log10",
    *(f"contrast_{i}" for i in range(CONTRAST_BANDS)),
    *(f"mfcc_mean_{i}" for i in range(N_MFCC)),
    *(f"mfcc_std_{i}" for i in range(N_MFCC)),
    "onset_mean",
    "onset_std",
    "onset_rate_per_s",
    "log2_tempo_bpm",
    "pulse_clarity",
    *(f"chroma_rel_{i}" for i in range(12)),
    "key_clarity",
    "mode_score",
    "major_corr",
    "minor_corr",
    "major_triad_fraction",
    "minor_triad_fraction",
    "triad_clarity",
    "chroma_entropy",
    "chroma_flux",
)


@dataclass(frozen=True)
class SpanSummary:
    """The model's feature vector for a span, plus the human-readable facts behind it."""

    vector: np.ndarray  # aligned with AUDIO_FEATURE_NAMES
    tempo_bpm: float
    key: str
    mode: str
    key_confidence: float
    loudness_db: float
    dynamic_range_db: float
    brightness_hz: float
    onset_rate_per_s: float
    sounding_fraction: float  # frames above SILENCE_DB
    audible_fraction: float  # frames above AUDIBLE_DB
    onset_frames: np.ndarray  # the onsets counted in `onset_rate_per_s`, as frames of the span


def span_features(frames: np.ndarray, gain_db: float = 0.0) -> SpanSummary:
    """Summarise frame features (`frames[a:b]` of one span) into the model's feature vector.

    `gain_db` is the normalising gain the frames were computed with: the reported loudness is the
    file's own (the vector keeps the normalised one, as the model was trained).
    """
    n = len(frames)
    seconds = max(n / FRAME_RATE, 1e-3)
    if n == 0:
        frames = np.zeros((1, N_FRAME_FEATURES), dtype=np.float32)
    rms = frames[:, F_RMS].astype(np.float64)
    rms_db = 20 * np.log10(np.maximum(rms, 1e-6))
    active = rms_db > SILENCE_DB
    sounding = float(active.mean())
    audible = float((rms_db > AUDIBLE_DB).mean())
    if not active.any():
        active = np.ones_like(active)
    loudness_db = float(10 * np.log10(max(float(np.mean(rms**2)), 1e-12)))
    act_db = rms_db[active]
    dynamic_range = float(np.percentile(act_db, 95) - np.percentile(act_db, 10))
    weights = rms[active] ** 2
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(weights), 1 / len(weights))

    def wmean(column: int | slice) -> np.ndarray:
        return np.asarray(weights @ frames[active][:, column].astype(np.float64))

    centroid = float(wmean(F_CENTROID))
    centroid_cv = float(np.std(frames[active, F_CENTROID]) / max(np.mean(frames[active, F_CENTROID]), 1.0))
    bandwidth = float(wmean(F_BANDWIDTH))
    rolloff = float(wmean(F_ROLLOFF))
    flatness = float(np.mean(frames[active, F_FLATNESS]))
    contrast = frames[active][:, F_CONTRAST].mean(axis=0)
    mfcc = frames[active][:, F_MFCC]
    envelope = frames[:, F_ONSET].astype(np.float64)
    tempo, clarity = _tempo(envelope, FRAME_RATE)
    onsets = onset_frames(envelope) if sounding > 0 else np.zeros(0, dtype=np.intp)
    onset_rate = len(onsets) / seconds

    chroma = frames[active][:, F_CHROMA].astype(np.float64)
    profile = chroma.sum(axis=0)
    if profile.sum() > 0:
        profile = profile / profile.sum()
    tonic, mode, key_clarity, major_corr, minor_corr = key_of(profile)
    relative = np.roll(profile, -tonic)

    # Chords: chroma smoothed over ~0.5 s, matched against major and minor triads.
    norm_chroma = chroma / np.maximum(chroma.sum(axis=1, keepdims=True), 1e-12)
    k = max(1, round(0.5 * FRAME_RATE))
    if len(norm_chroma) >= k:
        kernel = np.ones(k) / k
        smooth = np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, norm_chroma)
    else:
        smooth = norm_chroma.mean(axis=0, keepdims=True)
    unit = smooth / np.maximum(np.linalg.norm(smooth, axis=1, keepdims=True), 1e-12)
    scores = unit @ _TRIADS.T
    best = scores.argmax(axis=1)
    major_fraction = float(np.mean(best < 12))
    minor_fraction = 1.0 - major_fraction
    triad_clarity = float(scores.max(axis=1).mean())
    entropy = float(np.mean(-(norm_chroma * np.log2(np.maximum(norm_chroma, 1e-12))).sum(axis=1)))
    flux = float(np.mean(np.abs(np.diff(smooth, axis=0)).sum(axis=1))) if len(smooth) > 1 else 0.0
    if sounding == 0:
        major_fraction = minor_fraction = triad_clarity = entropy = flux = 0.0

    vector = np.concatenate(
        [
            [
                loudness_db,
                dynamic_range,
                float(np.std(act_db)),
                1.0 - sounding,
                math.log2(max(centroid, 20.0)),
                centroid_cv,
                math.log2(max(bandwidth, 20.0)),
                math.log2(max(rolloff, 20.0)),
                math.log10(max(flatness, 1e-8)),
            ],
            contrast,
            mfcc.mean(axis=0),
            mfcc.std(axis=0),
            [
                float(envelope.mean()),
                float(envelope.std()),
                onset_rate,
                math.log2(max(tempo, 30.0)),
                clarity,
            ],
            relative,
            [
                key_clarity,
                major_corr - minor_corr,
                major_corr,
                minor_corr,
                major_fraction,
                minor_fraction,
                triad_clarity,
                entropy,
                flux,
            ],
        ]
    ).astype(np.float32)
    assert len(vector) == len(AUDIO_FEATURE_NAMES)
    # What is reported, not what the model reads (that stays as it was trained): a span with no
    # audible frame has neither tempo nor key (the noise floor of a 16-bit file read as 199 bpm in
    # F minor), and one whose onset envelope never repeats (a held tone) has no tempo.
    heard = audible > 0
    if not heard:
        tonic, mode, key_clarity = 0, "major", 0.0
    return SpanSummary(
        vector=np.nan_to_num(vector),
        tempo_bpm=tempo if heard and clarity > 0 else 0.0,
        key=PITCH_CLASSES[tonic],
        mode=mode,
        key_confidence=max(0.0, key_clarity),
        loudness_db=loudness_db - gain_db,
        dynamic_range_db=dynamic_range,
        brightness_hz=centroid,
        onset_rate_per_s=onset_rate,
        sounding_fraction=sounding,
        audible_fraction=audible,
        onset_frames=onsets,
    )


# --- MIDI -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MidiNotes:
    """The notes of a Standard MIDI File in seconds (drums on channel 10 kept apart)."""

    start: np.ndarray
    end: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    drum_onsets: np.ndarray
    tempo_bpm: float | None  # time-weighted declared tempo, None when the file declares none
    duration_seconds: float


def read_midi_notes(data: bytes) -> MidiNotes:
    try:
        midi = parse_midi(data)
        now = 0.0
        open_notes: dict[tuple[int, int], list[tuple[float, int]]] = {}
        notes: list[tuple[float, float, int, int]] = []
        drums: list[float] = []
        tempo_changes: list[tuple[float, float]] = []
        for msg in midi:  # merged tracks, `time` in seconds
            now += msg.time
            if msg.type == "set_tempo":
                tempo_changes.append((now, mido.tempo2bpm(msg.tempo)))
            elif msg.type == "note_on" and msg.velocity > 0:
                if msg.channel == 9:
                    drums.append(now)
                else:
                    open_notes.setdefault((msg.channel, msg.note), []).append((now, msg.velocity))
            elif msg.type in ("note_off", "note_on"):
                stack = open_notes.get((msg.channel, msg.note))
                if stack:
                    start, velocity = stack.pop(0)
                    notes.append((start, now, msg.note, velocity))
        for (_, pitch), stack in open_notes.items():
            for start, velocity in stack:
                notes.append((start, now, pitch, velocity))
    except MidiError:
        raise  # already says what is wrong
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as error:
        raise ValueError(f"not a valid Standard MIDI File: {error}") from None
    notes.sort()
    arr = np.array(notes, dtype=np.float64).reshape(-1, 4)
    tempo: float | None = None
    if tempo_changes:
        times = [t for t, _ in tempo_changes] + [max(now, tempo_changes[-1][0])]
        spans = np.diff(times)
        bpms = np.array([b for _, b in tempo_changes])
        tempo = float(bpms @ spans / spans.sum()) if spans.sum() > 0 else float(bpms[0])
    return MidiNotes(
        start=arr[:, 0],
        end=arr[:, 1],
        pitch=arr[:, 2],
        velocity=arr[:, 3],
        drum_onsets=np.array(drums),
        tempo_bpm=tempo,
        duration_seconds=now,
    )


MIDI_FEATURE_NAMES: tuple[str, ...] = (
    "midi_log2_note_density",
    "midi_polyphony",
    "midi_pitch_mean",
    "midi_pitch_std",
    "midi_pitch_range",
    "midi_low_fraction",
    "midi_high_fraction",
    "midi_velocity_mean",
    "midi_velocity_std",
    "midi_log2_duration",
    "midi_log2_ioi",
    "midi_log2_tempo_bpm",
    "midi_pulse_clarity",
    *(f"midi_pc_rel_{i}" for i in range(12)),
    "midi_key_clarity",
    "midi_mode_score",
    "midi_major_triad_fraction",
    "midi_triad_clarity",
    "midi_dissonance",
    "midi_drum_density",
)


@dataclass(frozen=True)
class MidiSummary:
    vector: np.ndarray  # aligned with MIDI_FEATURE_NAMES
    note_density_per_s: float
    key: str
    mode: str
    key_confidence: float


# Per-second MIDI features of a whole piece are counted over at least a second: one 10-ms note is
# not 96 notes a second. (EMOPIA's clips are all longer, so training is unchanged.)
MIN_MIDI_PIECE_SECONDS = 1.0


def midi_piece_features(notes: MidiNotes) -> MidiSummary:
    """The MIDI feature vector of a whole piece, over the MIDI's own length (not the audio's, whose
    release tail would dilute every per-second feature)."""
    return midi_span_features(notes, 0.0, max(notes.duration_seconds, MIN_MIDI_PIECE_SECONDS))


def midi_span_features(notes: MidiNotes, start_s: float, end_s: float) -> MidiSummary:
    """The MIDI feature vector of the notes sounding in [start_s, end_s)."""
    seconds = max(end_s - start_s, 1e-3)
    onset_in = (notes.start >= start_s) & (notes.start < end_s)
    sounding = (notes.end > start_s) & (notes.start < end_s)
    pitch = notes.pitch[onset_in]
    velocity = notes.velocity[onset_in]
    starts = notes.start[onset_in]
    durations = (notes.end - notes.start)[onset_in]
    density = len(pitch) / seconds
    clipped = np.minimum(notes.end[sounding], end_s) - np.maximum(notes.start[sounding], start_s)
    polyphony = float(clipped.sum() / seconds)
    drums = notes.drum_onsets
    drum_density = float(((drums >= start_s) & (drums < end_s)).sum() / seconds) if len(drums) else 0.0

    # Pitch classes weighted by how long and how loud they sound.
    profile = np.zeros(12)
    weight = np.maximum(clipped, 0) * notes.velocity[sounding] / 127.0
    np.add.at(profile, notes.pitch[sounding].astype(int) % 12, weight)
    if profile.sum() > 0:
        profile /= profile.sum()
    tonic, mode, key_clarity, major_corr, minor_corr = key_of(profile)

    # Onset envelope at 50 Hz: tempo and pulse clarity like the audio path, from the notes.
    rate = 50.0
    envelope = np.zeros(int(seconds * rate) + 1)
    if len(starts):
        np.add.at(envelope, ((starts - start_s) * rate).astype(int), velocity / 127.0)
        envelope = np.convolve(envelope, np.hanning(5), mode="same")
    tempo, clarity = _tempo(envelope, rate)

    # Chords and dissonance on a 0.25 s grid.
    step = 0.25
    n_steps = max(1, math.ceil(seconds / step))
    grid = np.zeros((n_steps, 12))
    s_start = notes.start[sounding]
    s_end = notes.end[sounding]
    s_pc = notes.pitch[sounding].astype(int) % 12
    for i in range(n_steps):
        t0 = start_s + i * step
        on = (s_start < t0 + step) & (s_end > t0)
        if on.any():
            grid[i, np.unique(s_pc[on])] = 1.0
    active = grid.sum(axis=1) > 0
    if active.any():
        chords = grid[active] / np.linalg.norm(grid[active], axis=1, keepdims=True)
        scores = chords @ _TRIADS.T
        major_fraction = float(np.mean(scores.argmax(axis=1) < 12))
        triad_clarity = float(scores.max(axis=1).mean())
        rolled = [np.roll(grid[active], -k, axis=1) for k in (1, 6)]  # minor seconds, tritones
        clashes = sum(float((grid[active] * r).sum()) for r in rolled)
        dissonance = clashes / max(float(grid[active].sum()), 1.0)
    else:
        major_fraction = triad_clarity = dissonance = 0.0

    if len(pitch):
        # Inter-onset interval; 0 where every note starts at once (one chord), as it always read.
        ioi = np.diff(np.unique(starts))
        stats = [
            float(pitch.mean()),
            float(pitch.std()),
            float(np.percentile(pitch, 95) - np.percentile(pitch, 5)),
            float(np.mean(pitch < 48)),
            float(np.mean(pitch >= 72)),
            float(velocity.mean()),
            float(velocity.std()),
            math.log2(max(float(np.median(durations)), 0.01)),
            math.log2(max(float(np.median(ioi)), 0.01)) if len(starts) > 2 and len(ioi) else 0.0,
        ]
    else:
        stats = [60.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, math.log2(0.01), 0.0]
    vector = np.concatenate(
        [
            [math.log2(density + 0.1), polyphony],
            stats,
            [math.log2(max(tempo, 30.0)), clarity],
            np.roll(profile, -tonic),
            [key_clarity, major_corr - minor_corr, major_fraction, triad_clarity, dissonance, drum_density],
        ]
    ).astype(np.float32)
    assert len(vector) == len(MIDI_FEATURE_NAMES)
    return MidiSummary(
        vector=np.nan_to_num(vector),
        note_density_per_s=density,
        key=PITCH_CLASSES[tonic],
        mode=mode,
        key_confidence=max(0.0, key_clarity),
    )
