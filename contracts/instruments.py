"""General MIDI program names (0-based program numbers) and note-name parsing."""

import math
import re

GM_PROGRAMS: tuple[str, ...] = (
    "acoustic_grand_piano",
    "bright_acoustic_piano",
    "electric_grand_piano",
    "honky_tonk_piano",
    "electric_piano_1",
    "electric_piano_2",
    "harpsichord",
    "clavinet",
    "celesta",
    "glockenspiel",
    "music_box",
    "vibraphone",
    "marimba",
    "xylophone",
    "tubular_bells",
    "dulcimer",
    "drawbar_organ",
    "percussive_organ",
    "rock_organ",
    "church_organ",
    "reed_organ",
    "accordion",
    "harmonica",
    "tango_accordion",
    "acoustic_guitar_nylon",
    "acoustic_guitar_steel",
    "electric_guitar_jazz",
    "electric_guitar_clean",
    "electric_guitar_muted",
    "overdriven_guitar",
    "distortion_guitar",
    "guitar_harmonics",
    "acoustic_bass",
    "electric_bass_finger",
    "electric_bass_pick",
    "fretless_bass",
    "slap_bass_1",
    "slap_bass_2",
    "synth_bass_1",
    "synth_bass_2",
    "violin",
    "viola",
    "cello",
    "contrabass",
    "tremolo_strings",
    "pizzicato_strings",
    "orchestral_harp",
    "timpani",
    "string_ensemble_1",
    "string_ensemble_2",
    "synth_strings_1",
    "synth_strings_2",
    "choir_aahs",
    "voice_oohs",
    "synth_voice",
    "orchestra_hit",
    "trumpet",
    "trombone",
    "tuba",
    "muted_trumpet",
    "french_horn",
    "brass_section",
    "synth_brass_1",
    "synth_brass_2",
    "soprano_sax",
    "alto_sax",
    "tenor_sax",
    "baritone_sax",
    "oboe",
    "english_horn",
    "bassoon",
    "clarinet",
    "piccolo",
    "flute",
    "recorder",
    "pan_flute",
    "blown_bottle",
    "shakuhachi",
    "whistle",
    "ocarina",
    "lead_1_square",
    "lead_2_sawtooth",
    "lead_3_calliope",
    "lead_4_chiff",
    "lead_5_charang",
    "lead_6_voice",
    "lead_7_fifths",
    "lead_8_bass_lead",
    "pad_1_new_age",
    "pad_2_warm",
    "pad_3_polysynth",
    "pad_4_choir",
    "pad_5_bowed",
    "pad_6_metallic",
    "pad_7_halo",
    "pad_8_sweep",
    "fx_1_rain",
    "fx_2_soundtrack",
    "fx_3_crystal",
    "fx_4_atmosphere",
    "fx_5_brightness",
    "fx_6_goblins",
    "fx_7_echoes",
    "fx_8_sci_fi",
    "sitar",
    "banjo",
    "shamisen",
    "koto",
    "kalimba",
    "bagpipe",
    "fiddle",
    "shanai",
    "tinkle_bell",
    "agogo",
    "steel_drums",
    "woodblock",
    "taiko_drum",
    "melodic_tom",
    "synth_drum",
    "reverse_cymbal",
    "guitar_fret_noise",
    "breath_noise",
    "seashore",
    "bird_tweet",
    "telephone_ring",
    "helicopter",
    "applause",
    "gunshot",
)
_PROGRAM_BY_NAME = {name: number for number, name in enumerate(GM_PROGRAMS)}
# Common spellings people type: "piano", "Acoustic Grand Piano", "honky-tonk piano".
_PROGRAM_BY_NAME.update({"piano": 0, "grand_piano": 0, "guitar": 24, "bass": 32, "strings": 48})

# One kind of accidental per name, single or double, in ASCII or as the signs themselves ("x" is
# the printed double sharp); "C#b4" means nothing and is refused.
_ACCIDENTALS = {
    "": 0,
    "♮": 0,
    "#": 1,
    "♯": 1,
    "##": 2,
    "♯♯": 2,
    "x": 2,
    "𝄪": 2,
    "b": -1,
    "♭": -1,
    "bb": -2,
    "♭♭": -2,
    "𝄫": -2,
}
_NOTE_NAME = re.compile(
    r"^([A-Ga-g])("
    + "|".join(re.escape(a) for a in sorted(_ACCIDENTALS, key=len, reverse=True))
    + r")(-?\d+)$"
)
_SEMITONE = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


def program_number(instrument: int | str) -> int:
    """General MIDI program (0-127) for a number or a name such as "acoustic_grand_piano"."""
    if isinstance(instrument, int):
        if not 0 <= instrument <= 127:
            raise ValueError(f"instrument {instrument} is outside General MIDI programs 0-127")
        return instrument
    key = re.sub(r"[\s\-()]+", "_", instrument.strip().lower()).strip("_")
    if key not in _PROGRAM_BY_NAME:
        raise ValueError(
            f"unknown instrument name {instrument!r}; use a General MIDI program number 0-127 "
            "or a name such as 'acoustic_grand_piano' (GET /instruments lists them)"
        )
    return _PROGRAM_BY_NAME[key]


def midi_number(pitch: int | str) -> int:
    """MIDI note number for a number (0-127) or a scientific name ("C4" = 60, "A4" = 69, "Eb3")."""
    if isinstance(pitch, int):
        number = pitch
    else:
        match = _NOTE_NAME.match(pitch.strip())
        if not match:
            raise ValueError(
                f"pitch {pitch!r} is not a MIDI number or a note name like 'C#4', 'Eb3' or 'F##4'"
            )
        letter, accidental, octave = match.groups()
        number = 12 * (int(octave) + 1) + _SEMITONE[letter.lower()] + _ACCIDENTALS[accidental]
    if not 0 <= number <= 127:
        raise ValueError(f"pitch {pitch!r} is outside the MIDI range 0-127")
    return number


def frequency_to_midi(frequency_hz: float) -> int:
    """Nearest MIDI note to a frequency (A4 = 440 Hz = 69)."""
    if not frequency_hz > 0 or math.isinf(frequency_hz):
        raise ValueError(f"frequency {frequency_hz} Hz must be a positive number")
    number = round(69 + 12 * math.log2(frequency_hz / 440.0))
    if not 0 <= number <= 127:
        raise ValueError(
            f"frequency {frequency_hz} Hz is outside the MIDI note range: it must round to a note from"
            " 0 (8.18 Hz) to 127 (12544 Hz), so lie between 7.944 and 12911 Hz"
        )
    return number


PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def pitch_name(number: int) -> str:
    """Scientific name of a MIDI note number, sharps for black keys (60 = "C4", 0 = "C-1")."""
    return f"{PITCH_CLASSES[number % 12]}{number // 12 - 1}"
