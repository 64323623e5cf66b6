"""Kaldi-compatible front end in jnp: MFCC/fbank, energy VAD, sliding CMN, augmentation.

Public API (all batched over padded arrays with per-utterance lengths, jit-able):

- `options`: `MfccOptions`, `FbankOptions`, `VadOptions`, `CmnOptions` (Kaldi option names,
  `.from_config_file("conf/mfcc.conf")`), recipe presets `VOXCELEB_MFCC`, `SRE16_MFCC`,
  `RECIPE_VAD`, `RECIPE_CMN`.
- `mfcc.compute_mfcc(waveforms, lengths, opts, key=None, fft_impl="kaldi") -> (feats, num_frames)`,
  `mfcc.compute_fbank(...)`, `mfcc.num_frames(num_samples, opts)`.
- `vad.compute_vad(feats, num_frames, opts) -> (batch, frames) 0/1`.
- `cmvn.sliding_cmn(feats, num_frames, opts) -> feats`.
- `pipeline.prepare_feats(waveforms, lengths, mfcc_opts, vad_opts=RECIPE_VAD,
  cmn_opts=RECIPE_CMN, key=None, fft_impl="kaldi") -> (feats, lengths)`: MFCC -> sliding CMN ->
  voiced frames compacted to the front (what extract_xvectors.sh / prepare_feats_for_egs.sh do).
- `augment.augment_batch(key, waveforms, lengths, sources, config) -> (waveforms, kinds)` with
  `sources.load_sources(rirs=..., noise=..., music=..., speech=...)` and `augment.AugmentConfig`.
- `extract.extract_features(utterances, opts, ...)`: the batched engine of the CLI commands.
"""
