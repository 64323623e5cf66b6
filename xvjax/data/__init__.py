"""Training data: chunk sampling as Kaldi's egs, egs archives, TFDS source, the synthetic corpus."""
