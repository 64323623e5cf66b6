"""The shipped Kaldi-style conf/ files are the recipe's built-in front end, option for option."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from xvjax.features.options import (
    RECIPE_CMN,
    RECIPE_VAD,
    SRE16_MFCC,
    VOXCELEB_MFCC,
    MfccOptions,
    VadOptions,
    frontend_record,
    read_frontend_conf,
    write_frontend_conf,
)

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


def test_models_record_their_front_end_and_extraction_checks_it(tmp_path, caplog):
    """A training data dir's conf/ goes into the model (ModelSpec.frontend, model.json), and
    features made with other options than the model's are reported at extraction."""
    import ml_collections

    from xvjax.model.spec import ModelSpec, xvector_1a_spec
    from xvjax.model.xvector_compute import check_frontend
    from xvjax.train.state import with_frontend

    train = tmp_path / "train_no_sil"
    write_frontend_conf(str(train), frontend_record(VOXCELEB_MFCC, RECIPE_VAD, RECIPE_CMN))
    config = ml_collections.ConfigDict({"data": {"train_dir": str(train)}, "init_from": ""})
    spec = with_frontend(
        xvector_1a_spec(30, 5, frame_dims=(8, 8, 8, 8, 16), embedding_dims=(8, 8)), config
    )
    assert spec.frontend == read_frontend_conf(str(train))
    assert ModelSpec.from_json(spec.to_json()).frontend == spec.frontend  # kept in model.json
    same = tmp_path / "test_no_sil"
    write_frontend_conf(str(same), frontend_record(VOXCELEB_MFCC, RECIPE_VAD, RECIPE_CMN))
    assert check_frontend(spec, str(same)) == []
    # a user's two-line vad.conf: Kaldi's defaults for the rest, which differ from the recipe's
    other = tmp_path / "user_no_sil"
    (other / "conf").mkdir(parents=True)
    (other / "conf" / "vad.conf").write_text(
        "--vad-energy-threshold=5.5\n--vad-energy-mean-scale=0.5\n"
    )
    with caplog.at_level("WARNING", logger="xvjax"):
        changed = check_frontend(spec, str(other))
    assert "vad --vad-proportion-threshold: 0.12 vs 0.6" in changed
    assert "other options than the model was trained on" in caplog.text
    assert check_frontend(dataclasses.replace(spec, frontend=None), str(other)) == []


def test_default_sample_rate_follows_the_mfcc_config_or_the_target_band(tmp_path):
    """--sample-rate: the MFCC config's when one is given, else 8 kHz on the built-in corpus'
    telephone target (--corpus-options target_rate follows), else 16 kHz for user data."""
    from xvjax.recipe.config import RecipeConfig

    conf16 = tmp_path / "mfcc.conf"
    conf16.write_text("--sample-frequency=16000\n--num-ceps=30\n")
    rate = lambda **kw: RecipeConfig(workdir=str(tmp_path), **kw).resolved().sample_rate  # noqa: E731
    assert rate() == 8000
    assert rate(corpus_options="target_rate=16000") == 16000
    assert rate(mfcc_config=str(conf16)) == 16000
    assert rate(tgt_enroll="data/enroll", tgt_test="data/test", trials="t") == 16000
    assert rate(sample_rate=16000) == 16000
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text(
        json.dumps({"frontend": {"mfcc": {"sample-frequency": "8000"}}})
    )
    user = dict(tgt_enroll="data/enroll", tgt_test="data/test", trials="t")
    assert rate(pretrained=str(model), **user) == 8000  # the rate the model was trained at
