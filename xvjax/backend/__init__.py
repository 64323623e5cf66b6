"""Backend in jnp/numpy: means, LDA, PLDA, adaptation, scoring, score normalisation, calibration."""
