"""Training data: chunk allocation as Kaldi's egs (`chunks`), utterance stores (`stores`: feats.scp,
`audio_source`: wav.scp with features made per batch, `tfds_source`: a TFDS dataset) and minibatch
loaders with resumable positions (`loaders`: chunks cut from a store, or Kaldi's egs archives)."""
