"""Flax x-vector models (TDNN + statistics pooling) built from nnet3 graphs or configs.

- `spec.ModelSpec`, `spec.xvector_1a_spec(...)`: the network as a JSON-serialisable graph.
- `xvector.XVector`, `init_variables`, `resize_output`, `forward`: the model (contract in
  `xvector.py`'s docstring).
- `convert.nnet3_to_flax(nnet)`, `convert.flax_to_nnet3(spec, variables, template)`.
- `checkpoint.save_model / load_model / load_any / template_for`.
- `extract.extract_xvectors(...)`, `extract.Extractor`: `nnet3-xvector-compute` semantics.
"""
