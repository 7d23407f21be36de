"""Explicit limits on what TuneForge accepts; each is enforced at the edge."""

MAX_NOTES = 20_000
MAX_TRACKS = 16
MAX_MELODIC_CHANNELS = 15  # 16 MIDI channels, one reserved for drums (channel 10)
MAX_DURATION_SECONDS = 600.0
MAX_GRID_COLUMNS = 4_096
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # MIDI and audio uploads
MAX_MIDI_BYTES = 4 * 1024 * 1024
MIN_TEMPO_BPM = 20.0
MAX_TEMPO_BPM = 400.0
