"""Kaldi interoperability: tables (ark/scp), matrices, data dirs, audio, nnet3 models, egs, PLDA files.

Besides the tables (`tables`, `specifiers`, `streams`, `holders`, ...): `audio` (wav.scp entries,
Kaldi's WaveData read/write and wave tables), `htk` (HTK feature files), `egs` (NnetExample I/O),
`egs_streams` (merging, frame selection, shuffling, subsets, ranges: the egs binaries), `nnet3/`
(models; `info` for nnet3-info's text, `collapse` for --prepare-for-test), `shims` (the Kaldi
binary names xvjax implements, for `xvjax kaldi-shims`).
"""
