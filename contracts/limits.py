"""Explicit limits on what TuneForge accepts; each is enforced at the edge."""

MAX_NOTES = 20_000
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
MIN_TEMPO_BPM = 20.0
MAX_TEMPO_BPM = 400.0
