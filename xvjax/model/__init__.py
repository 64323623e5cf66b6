"""Flax x-vector models (TDNN + statistics pooling) built from nnet3 graphs or configs.

- `spec.ModelSpec`, `spec.xvector_1a_spec(...)`: the network as a JSON-serialisable graph.
- `ops.OPS`: one entry per node type (`op`): its nnet3 import, variables, forward and export.
- `xvector.XVector`, `init_variables`, `resize_output`, `forward`: the model (contract in
  `xvector.py`'s docstring); `layers`: the numerics; `frames`: time bookkeeping of the forward.
- `nnet3_import.nnet3_to_flax(nnet)`, `nnet3_export.flax_to_nnet3(spec, variables, template)`.
- `checkpoint.save_model / load_model / load_any / template_for`.
- `xvector_compute.extract_xvectors(...)`, `xvector_compute.Extractor`:
  `nnet3-xvector-compute` semantics; `extraction_node` (which node it computes).
- `nnet3_compute.FrameComputer`: per-frame outputs with `nnet3-compute`'s chunking.
- `commands`: `xvjax nnet3-to-flax`, `flax-to-nnet3`, `nnet3-xvector-compute`, `nnet3-compute`.
"""
