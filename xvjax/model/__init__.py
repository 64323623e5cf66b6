"""Flax x-vector models (TDNN + statistics pooling) built from nnet3 graphs or configs."""
