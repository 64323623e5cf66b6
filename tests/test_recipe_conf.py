"""The shipped Kaldi-style conf/ files are the recipe's built-in front end, option for option."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from xvjax.features.options import RECIPE_VAD, SRE16_MFCC, VOXCELEB_MFCC, MfccOptions, VadOptions

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.mark.parametrize(
    "name,builtin", [("mfcc_16k.conf", VOXCELEB_MFCC), ("mfcc_8k.conf", SRE16_MFCC)]
)
def test_mfcc_conf_is_the_builtin_front_end(name, builtin):
    assert MfccOptions.from_config_file(str(CONF / name)) == builtin


def test_vad_conf_is_the_builtin_vad():
    assert VadOptions.from_config_file(str(CONF / "vad.conf")) == RECIPE_VAD
    # and it matters: Kaldi's compute-vad defaults are another VAD
    assert dataclasses.asdict(VadOptions()) != dataclasses.asdict(RECIPE_VAD)
