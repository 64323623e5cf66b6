"""Kaldi-compatible front end: MFCC/fbank, energy VAD, sliding CMN, augmentation, data-dir jobs.

Batched over padded arrays with per-utterance lengths, jit-able (jnp):
- `options`: `MfccOptions`, `FbankOptions`, `VadOptions`, `CmnOptions` (Kaldi option names,
  `.from_config_file("conf/mfcc.conf")`), recipe presets `VOXCELEB_MFCC`, `SRE16_MFCC`,
  `RECIPE_VAD`, `RECIPE_CMN`, and `AugmentDataDirOptions`.
- `mfcc.compute_mfcc(waveforms, lengths, opts, key=None, fft_impl="kaldi") -> (feats, num_frames)`,
  `mfcc.compute_fbank(...)`, `mfcc.num_frames(num_samples, opts)`.
- `frontend`: `sliding_cmn`, `compute_vad`, `select_voiced_frames` and their composition
  `prepare_feats(waveforms, lengths, mfcc_opts, vad_opts=RECIPE_VAD, cmn_opts=RECIPE_CMN, key=None,
  fft_impl="kaldi") -> (feats, lengths)`: MFCC -> sliding CMN -> voiced frames compacted to the
  front (what extract_xvectors.sh / prepare_feats_for_egs.sh do).
- `augment.augment_batch(key, waveforms, lengths, sources, config) -> (waveforms, kinds)` with
  `noise_banks.load_sources(rirs=..., noise=..., music=..., speech=...)` and `augment.AugmentConfig`.
- `stream.extract_features(utterances, opts, ...)`: MFCC/fbank of a stream of utterances, their
  frames packed in fixed-size chunks for `mfcc.features_of_frames` (one compiled shape).

One utterance on the host (numpy, no JAX import): `cmvn.sliding_cmn_numpy`,
`vad.compute_vad_numpy`, `frontend_numpy.prepare_feats_numpy(mfcc, voiced)`; `reference`: a float64
MFCC reference; `cmvn_stats` (compute-cmvn-stats, apply-cmvn); `reverberate` (wav-reverberate, and
the formulas `augment` shares); `resample.kaldi_resample` (--allow-downsample/upsample).

Whole data dirs (`datadir_jobs`): `make_features` (make_mfcc.sh + compute_vad_decision.sh, optionally
the prepared `_no_sil` copy), `import_features`, `augment_data_dir`. `commands` holds the CLI.
"""
