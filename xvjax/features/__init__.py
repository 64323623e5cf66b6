"""Kaldi-compatible front end in jnp: MFCC/fbank, energy VAD, sliding CMN, augmentation."""
