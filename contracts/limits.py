"""Explicit limits on what TuneForge accepts; each is enforced at the edge."""

MAX_NOTES = 20_000  # in a Score or Grid
# In an uploaded MIDI file: notes cost the synthesizer a note-on each; a 4 MiB file could hold a
# million. Real pieces stay far below (the 31 OpenTTD tunes: at most 4,700; a ten-minute piano piece
# at a virtuoso 30 notes a second: 18,000; a dense orchestral arrangement: some 50,000).
MAX_MIDI_NOTES = 100_000
MAX_TRACKS = 16
MAX_MELODIC_CHANNELS = 15  # 16 MIDI channels, one reserved for drums (channel 10)
MAX_DURATION_SECONDS = 600.0
MAX_GRID_COLUMNS = 4_096
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # request bodies: Grid and Score JSON, MIDI uploads
MAX_MIDI_BYTES = 4 * 1024 * 1024
# Audio for mood analysis: ten minutes of 48 kHz 24-bit stereo WAV is 173 MB; the body is streamed
# to disk, never held in memory whole (a multipart form is parsed in memory by Litestar).
MAX_AUDIO_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_AUDIO_SECONDS = 3600.0  # analysis streams the audio, so length costs time, not memory
# Mood analysis reads the band up to 3.5 kHz, which a file needs 8 kHz of sample rate to carry; at
# 4 kHz a calm piece read as tense. 384 kHz is the highest rate audio interfaces record at.
MIN_AUDIO_SAMPLE_RATE_HZ = 8_000
MAX_AUDIO_SAMPLE_RATE_HZ = 384_000
MIN_TEMPO_BPM = 20.0
MAX_TEMPO_BPM = 400.0


def seconds_over(seconds: float, limit_seconds: float) -> str:
    """A length over a limit, with the decimals it takes to show it is over (600.04, not 600.0)."""
    for decimals in range(1, 7):
        text = f"{seconds:.{decimals}f}"
        if float(text) > limit_seconds:
            return text
    return repr(seconds)


def sample_rate_problem(sample_rate_hz: int) -> str | None:
    """Why audio at this rate cannot be analysed for its mood, or None if it can."""
    if sample_rate_hz < MIN_AUDIO_SAMPLE_RATE_HZ:
        return (
            f"the audio's sample rate is {sample_rate_hz} Hz: mood analysis needs at least "
            f"{MIN_AUDIO_SAMPLE_RATE_HZ} Hz (it reads the band up to 3.5 kHz)"
        )
    if sample_rate_hz > MAX_AUDIO_SAMPLE_RATE_HZ:
        return f"the audio's sample rate is {sample_rate_hz} Hz: at most {MAX_AUDIO_SAMPLE_RATE_HZ} Hz"
    return None
