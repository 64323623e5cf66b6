"""xvjax: Kaldi-compatible x-vector speaker recognition in JAX/Flax, built for domain transfer."""

__version__ = "0.1.0"
