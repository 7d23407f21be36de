"""The exporter actor: MIDI → audio with FluidSynth and a General MIDI SoundFont."""
