"""Kaldi interoperability: tables (ark/scp), matrices, data dirs, audio, nnet3 models, egs, PLDA files."""
