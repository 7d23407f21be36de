"""The converter actor: Score or Grid → Standard MIDI File."""
