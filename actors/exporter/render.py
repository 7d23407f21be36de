"""MIDI → audio with libfluidsynth, offline: pure work, testable without NATS.

The SoundFont is loaded once per synth and synths are reused between jobs (a warm synth
renders in about half the command-line renderer's time). libfluidsynth's own MIDI player
drives the synth with `player.timing-source=sample`, so it advances only as samples are
pulled and stops, like the `fluidsynth` CLI, once the last released voices have died away.
Audio is pulled in blocks and streamed to the output file, so memory stays flat however
long the piece.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import fluidsynth
import numpy as np
import soundfile

from tuneforge.contracts.jobs import AudioFormat

SOUNDFONT_FILES = {"fluidr3_gm": "FluidR3_GM.sf2", "timgm6mb": "TimGM6mb.sf2"}
BLOCK_FRAMES = 4096
MAX_TAIL_SECONDS = 15.0  # after the music's end, a tail never runs longer than this
# After the music's end the tail stops once it has stayed this far under the render's peak (and
# under -60 dBFS) for TAIL_QUIET_SECONDS: FluidSynth keeps dying voices alive down to about
# -100 dB, which padded files with seconds of inaudible reverb.
TAIL_QUIET_DB = -60.0
TAIL_QUIET_SECONDS = 0.5
# A render that stops before this fraction of the music's length lost the music (the MIDI reader
# gave up part-way): an error, not a short file.
MIN_RENDERED_FRACTION = 0.5
FLUID_PLAYER_PLAYING = 1
FLUID_OK = 0

_SOUNDFILE_FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
}

# pyfluidsynth leaves these unbound; declare them on its loaded library with exact signatures.
_lib = fluidsynth._fl
_lib.new_fluid_player.argtypes = [ctypes.c_void_p]
_lib.new_fluid_player.restype = ctypes.c_void_p
_lib.delete_fluid_player.argtypes = [ctypes.c_void_p]
_lib.delete_fluid_player.restype = None
_lib.fluid_player_add_mem.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
_lib.fluid_player_add_mem.restype = ctypes.c_int
_lib.fluid_player_play.argtypes = [ctypes.c_void_p]
_lib.fluid_player_play.restype = ctypes.c_int
_lib.fluid_player_stop.argtypes = [ctypes.c_void_p]
_lib.fluid_player_stop.restype = ctypes.c_int
_lib.fluid_player_get_status.argtypes = [ctypes.c_void_p]
_lib.fluid_player_get_status.restype = ctypes.c_int
_lib.fluid_synth_write_float.argtypes = [
    ctypes.c_void_p,
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_int,
    ctypes.c_int,
]
_lib.fluid_synth_write_float.restype = ctypes.c_int
_lib.fluid_synth_system_reset.argtypes = [ctypes.c_void_p]
_lib.fluid_synth_system_reset.restype = ctypes.c_int
_lib.fluid_synth_set_sample_rate.argtypes = [ctypes.c_void_p, ctypes.c_float]
_lib.fluid_synth_set_sample_rate.restype = None
_lib.fluid_synth_cc.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
_lib.fluid_synth_cc.restype = ctypes.c_int
_lib.fluid_synth_all_notes_off.argtypes = [ctypes.c_void_p, ctypes.c_int]
_lib.fluid_synth_all_notes_off.restype = ctypes.c_int
_lib.fluid_synth_count_midi_channels.argtypes = [ctypes.c_void_p]
_lib.fluid_synth_count_midi_channels.restype = ctypes.c_int
SUSTAIN_CC, SOSTENUTO_CC = 64, 66


def _release_everything(synth_ptr: int) -> None:
    """The end of the music: lift the pedals and release every note still held, so what sounds
    dies away with its own release instead of ringing on (a note whose note-off never came, two
    parts' unisons on one channel, a pedal never lifted)."""
    for channel in range(_lib.fluid_synth_count_midi_channels(synth_ptr)):
        _lib.fluid_synth_cc(synth_ptr, channel, SUSTAIN_CC, 0)
        _lib.fluid_synth_cc(synth_ptr, channel, SOSTENUTO_CC, 0)
        _lib.fluid_synth_all_notes_off(synth_ptr, channel)


class RenderError(RuntimeError):
    """The synthesizer could not render this MIDI (bad data or a broken SoundFont)."""


class RenderResult:
    __slots__ = ("duration_seconds", "frames", "render_seconds")

    def __init__(self, frames: int, sample_rate_hz: int, render_seconds: float) -> None:
        self.frames = frames
        self.duration_seconds = frames / sample_rate_hz
        self.render_seconds = render_seconds


class _WarmSynth:
    """One libfluidsynth synth with its SoundFont loaded; used by one render at a time."""

    def __init__(self, soundfont: Path, sample_rate_hz: int) -> None:
        self.synth = fluidsynth.Synth(
            gain=0.2,  # the CLI's default, so levels match the baseline
            samplerate=float(sample_rate_hz),
            channels=16,
            **{"synth.dynamic-sample-loading": 1},
        )
        if self.synth.sfload(str(soundfont), 1) == -1:
            self.synth.delete()
            raise RenderError(f"could not load SoundFont {soundfont}")
        self.sample_rate_hz = sample_rate_hz

    def delete(self) -> None:
        self.synth.delete()


class Renderer:
    """Renders MIDI bytes to an audio file, keeping warm synths per (SoundFont, sample rate)."""

    def __init__(self, soundfont_dir: Path) -> None:
        self.soundfont_dir = soundfont_dir
        self._idle: dict[tuple[str, int], list[_WarmSynth]] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()  # renders still running stop at their next block

    def soundfont_path(self, name: str) -> Path:
        path = self.soundfont_dir / SOUNDFONT_FILES[name]
        if not path.is_file():
            raise RenderError(f"SoundFont {name!r} is not installed at {path}")
        return path

    def warm_up(self, soundfont: str = "fluidr3_gm", sample_rate_hz: int = 44100) -> None:
        """Load a SoundFont ahead of the first job (start-up cost, not request cost)."""
        with self._synth(soundfont, sample_rate_hz):
            pass

    @contextmanager
    def _synth(self, soundfont: str, sample_rate_hz: int) -> Iterator[_WarmSynth]:
        key = (soundfont, sample_rate_hz)
        with self._lock:
            idle = self._idle.setdefault(key, [])
            warm = idle.pop() if idle else None
        if warm is None:
            warm = _WarmSynth(self.soundfont_path(soundfont), sample_rate_hz)
        try:
            yield warm
        except BaseException:
            warm.delete()  # a synth in an unknown state is not put back
            raise
        with self._lock:
            self._idle[key].append(warm)

    def close(self) -> None:
        """Free the synths; a render still running (its job given back) stops at its next block."""
        self._closing.set()
        with self._lock:
            for synths in self._idle.values():
                for warm in synths:
                    warm.delete()
            self._idle.clear()

    def render(
        self,
        midi: bytes,
        out_path: Path,
        audio_format: AudioFormat,
        sample_rate_hz: int,
        soundfont: str,
        expected_seconds: float,
        on_progress: Callable[[float], None] | None = None,
    ) -> RenderResult:
        """Render `midi` into `out_path`; `on_progress(percent)` is called from this thread."""
        started = time.perf_counter()
        container, subtype = _SOUNDFILE_FORMATS[audio_format]
        max_frames = int((expected_seconds + MAX_TAIL_SECONDS) * sample_rate_hz)
        expected_frames = max(1, int(expected_seconds * sample_rate_hz))
        with self._synth(soundfont, sample_rate_hz) as warm:
            synth_ptr = warm.synth.synth
            _lib.fluid_synth_system_reset(synth_ptr)
            # A warm synth's reverb still rang with the previous render (its tail, cut at -60 dB,
            # opened the next job's audio; the same MIDI came out 15.70 s once and 15.79 s the next
            # time): setting the rate rebuilds reverb and chorus from silence. (Deprecated in
            # FluidSynth 2.1 only for use while audio runs; between renders nothing runs.)
            _lib.fluid_synth_set_sample_rate(synth_ptr, float(sample_rate_hz))
            player = _lib.new_fluid_player(synth_ptr)
            if not player:
                raise RenderError("libfluidsynth could not create a MIDI player")
            try:
                midi_buffer = ctypes.create_string_buffer(midi, len(midi))
                if _lib.fluid_player_add_mem(player, midi_buffer, len(midi)) != FLUID_OK:
                    raise RenderError("the synthesizer rejected the MIDI data")
                if _lib.fluid_player_play(player) != FLUID_OK:
                    raise RenderError("the synthesizer could not start playing the MIDI data")
                block = np.empty(BLOCK_FRAMES * 2, dtype=np.float32)
                block_ptr = block.ctypes.data
                frames = 0
                last_percent = -1.0
                with soundfile.SoundFile(
                    out_path, "w", samplerate=sample_rate_hz, channels=2, format=container, subtype=subtype
                ) as out:
                    released = False
                    peak = 0.0
                    quiet_frames = 0
                    tail_quiet_frames = int(TAIL_QUIET_SECONDS * sample_rate_hz)
                    while _lib.fluid_player_get_status(player) == FLUID_PLAYER_PLAYING:
                        if frames >= max_frames or quiet_frames >= tail_quiet_frames:
                            break
                        if self._closing.is_set():
                            raise RenderError("the renderer was closed: the exporter is stopping")
                        if not released and frames >= expected_frames:
                            _release_everything(synth_ptr)
                            released = True
                        # Interleaved stereo into one buffer: left at even, right at odd offsets.
                        if (
                            _lib.fluid_synth_write_float(
                                synth_ptr, BLOCK_FRAMES, block_ptr, 0, 2, block_ptr, 1, 2
                            )
                            != FLUID_OK
                        ):
                            raise RenderError("libfluidsynth failed while rendering")
                        np.clip(block, -1.0, 1.0, out=block)
                        out.write(block.reshape(-1, 2))
                        frames += BLOCK_FRAMES
                        block_peak = float(np.abs(block).max())
                        if not released:
                            peak = max(peak, block_peak)
                        elif block_peak < min(peak, 1.0) * 10 ** (TAIL_QUIET_DB / 20):
                            quiet_frames += BLOCK_FRAMES
                        else:
                            quiet_frames = 0
                        if on_progress is not None:
                            percent = min(99.0, 100.0 * frames / expected_frames)
                            if percent - last_percent >= 1.0:
                                last_percent = percent
                                on_progress(percent)
            finally:
                _lib.fluid_player_stop(player)
                _lib.delete_fluid_player(player)  # the player goes before its synth is reused
                _lib.fluid_synth_system_reset(synth_ptr)
        if expected_seconds >= 1.0 and frames < MIN_RENDERED_FRACTION * expected_frames:
            raise RenderError(
                f"the synthesizer stopped after {frames / sample_rate_hz:.2f} s of a "
                f"{expected_seconds:.1f}-s piece: it could not read the whole MIDI file"
            )
        return RenderResult(frames, sample_rate_hz, time.perf_counter() - started)
