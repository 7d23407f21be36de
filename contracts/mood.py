"""The mood of a piece of music: quadrant of the valence–arousal plane, the features behind it.

Quadrants follow Russell's circumplex as labelled in EMOPIA:
Q1 happy (valence +, arousal +), Q2 tense (−, +), Q3 sad (−, −), Q4 calm (+, −).
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

# A module import, not `from … import BlobRef`: contracts.jobs imports this module too (JobResult.mood).
from tuneforge.contracts import jobs as _jobs

MoodLabel = Literal["happy", "tense", "sad", "calm"]
Quadrant = Literal["Q1", "Q2", "Q3", "Q4"]
Mode = Literal["major", "minor"]

MOOD_LABELS: tuple[MoodLabel, ...] = ("happy", "tense", "sad", "calm")
QUADRANTS: tuple[Quadrant, ...] = ("Q1", "Q2", "Q3", "Q4")
QUADRANT_OF_LABEL: dict[str, Quadrant] = dict(zip(MOOD_LABELS, QUADRANTS, strict=True))

# tuneforge-mood advertises the version of its model in its `$SRV.INFO` metadata under this key,
# so that moods cached elsewhere can be keyed by the model that computed them.
MOOD_MODEL_METADATA_KEY = "model"

Unit = Annotated[float, Meta(ge=-1.0, le=1.0)]
Probability = Annotated[float, Meta(ge=0.0, le=1.0)]


class MoodRequest(Struct, frozen=True, forbid_unknown_fields=True):
    """`tuneforge.mood` request: an audio blob, and the MIDI it was rendered from when known."""

    audio: _jobs.BlobRef
    midi: _jobs.BlobRef | None = None


class MoodFeatures(Struct, frozen=True):
    """The musical features the mood is inferred from (for the whole piece or one window).

    `loudness_db` is the mean RMS level in dBFS; `brightness_hz` the mean spectral centroid;
    `note_density_per_s` counts MIDI note-ons per second (null when no MIDI is known), while
    `onset_rate_per_s` counts onsets detected in the audio. `tempo_bpm` is 0 where no pulse is
    heard (silence, a held tone), and `key_confidence` 0 where no key is (silence: `key` then
    reads "C" major and means nothing).
    """

    tempo_bpm: float
    key: str  # tonic pitch class, e.g. "C", "F#"
    mode: Mode
    key_confidence: float
    loudness_db: float
    dynamic_range_db: float
    brightness_hz: float
    onset_rate_per_s: float
    note_density_per_s: float | None = None
    tempo_source: Literal["audio", "midi"] = "audio"


class MoodWindow(Struct, frozen=True):
    """The mood of one stretch of the piece (the timeline of pieces longer than one window)."""

    start_seconds: float
    end_seconds: float
    label: MoodLabel
    quadrant: Quadrant
    valence: Unit
    arousal: Unit
    confidence: Probability
    probabilities: dict[str, float]
    features: MoodFeatures


class Mood(Struct, frozen=True):
    """What the mood actor answers: label, quadrant, valence and arousal in [-1, 1], and why."""

    label: MoodLabel
    quadrant: Quadrant
    valence: Unit
    arousal: Unit
    confidence: Probability
    probabilities: dict[str, float]
    features: MoodFeatures
    duration_seconds: float
    timeline: list[MoodWindow] = []
    sample_rate_hz: int = 0
    channels: int = 0
    model: str = ""
    analysis_seconds: float = 0.0
