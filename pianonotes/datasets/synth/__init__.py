"""Synthetic piano training data: MIDI sources, performance variation, FluidSynth rendering, augmentation."""
