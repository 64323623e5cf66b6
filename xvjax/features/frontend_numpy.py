"""The x-vector input preparation of one utterance on the host, from its MFCC and VAD decisions.

The numpy twin of `xvjax.features.frontend.prepare_feats` for features that are already computed
(feats.scp + vad.scp, or MFCC just extracted), where a device round trip would cost more than the
work: sliding CMN in float64 (Kaldi's precision) and the voiced frames, as
`apply-cmvn-sliding | select-voiced-frames` in `prepare_feats_for_egs.sh`. No JAX import.
"""

from __future__ import annotations

import numpy as np

from xvjax.features.cmvn import sliding_cmn_numpy
from xvjax.features.options import RECIPE_CMN, CmnOptions


def prepare_feats_numpy(
    mfcc: np.ndarray, voiced: np.ndarray, cmn_opts: CmnOptions = RECIPE_CMN
) -> np.ndarray:
    """(frames, dim) MFCC and (frames,) VAD decisions (> 0.5 is voiced) -> (voiced, dim) float32."""
    return sliding_cmn_numpy(mfcc, cmn_opts)[np.asarray(voiced) > 0.5]
