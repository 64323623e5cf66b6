"""Data-dir jobs as library calls: make_features (with the prepared _no_sil copy and resampling),
import_features, and the options of augment_data_dir."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from xvjax.errors import XvjaxError
from xvjax.features.datadir_jobs import import_features, make_features
from xvjax.features.frontend_numpy import prepare_feats_numpy
from xvjax.features.options import (
    RECIPE_CMN,
    AugmentDataDirOptions,
    MfccOptions,
    VadOptions,
    frontend_record,
    read_frontend_conf,
)
from xvjax.features.vad import compute_vad_numpy
from xvjax.kaldi import tables


@pytest.fixture
def data_dir(kaldi_fixtures, tmp_path):
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    audio = kaldi_fixtures / "audio"
    (data / "wav.scp").write_text(
        f"a-u2 {audio}/u2_16k.wav\na-u5 {audio}/u5_16k.wav\nb-u3 {audio}/u3_8k.wav\n"
        f"b-u6 {audio}/u6_16k_silence.wav\n"
    )
    (data / "utt2spk").write_text("a-u2 a\na-u5 a\nb-u3 b\nb-u6 b\n")
    (data / "spk2utt").write_text("a a-u2 a-u5\nb b-u3 b-u6\n")
    (data / "spk2gender").write_text("a f\nb m\n")
    conf = kaldi_fixtures / "features"
    mfcc = MfccOptions.from_config_file(str(conf / "mfcc16k.conf"))
    vad = VadOptions.from_config_file(str(conf / "vad.conf"))
    return str(data), mfcc, vad


def test_make_features_writes_the_prepared_copy_in_one_pass(data_dir, kaldi_fixtures, tmp_path):
    data, mfcc, vad = data_dir
    no_sil = data + "_no_sil"
    report = make_features(
        data, mfcc, vad, archive_dir=str(tmp_path / "mfcc"), compression_method=None,
        no_sil_dir=no_sil, resample_to=16000,
    )  # fmt: skip
    assert (report.num_utts, report.failed, report.unvoiced, report.resampled) == (4, [], 1, 1)
    feats = tables.read_dict(f"scp:{data}/feats.scp")
    decisions = tables.read_dict(f"scp:{data}/vad.scp")
    prepared = tables.read_dict(f"scp:{no_sil}/feats.scp")
    assert sorted(feats) == sorted(decisions) == ["a-u2", "a-u5", "b-u3", "b-u6"]
    assert sorted(prepared) == ["a-u2", "a-u5", "b-u3"]  # b-u6 has no voiced frame
    for utt, x in prepared.items():
        np.testing.assert_array_equal(decisions[utt], compute_vad_numpy(feats[utt], vad))
        np.testing.assert_array_equal(x, prepare_feats_numpy(feats[utt], decisions[utt]))
    assert report.voiced_frames == sum(len(x) for x in prepared.values())
    counts = tables.read_text_table(os.path.join(no_sil, "utt2num_frames"))
    assert {u: int(n) for u, n in counts.items()} == {u: len(x) for u, x in prepared.items()}
    assert tables.read_text_table(os.path.join(no_sil, "spk2gender")) == {"a": "f", "b": "m"}
    # Kaldi's apply-cmvn-sliding | select-voiced-frames on its own MFCCs of the same audio
    kaldi = tables.read_dict(f"ark,t:{kaldi_fixtures}/features/prepared16k.txt")
    for ours, theirs in (("a-u2", "u2_16k"), ("a-u5", "u5_16k")):
        assert prepared[ours].shape == kaldi[theirs].shape
        np.testing.assert_allclose(prepared[ours], kaldi[theirs], atol=1e-2)
    # what the features were made with is kept beside them (conf/), as models record it
    assert read_frontend_conf(data) == frontend_record(mfcc, vad)
    assert read_frontend_conf(no_sil) == frontend_record(mfcc, vad, RECIPE_CMN)
    assert "--num-ceps=" in open(os.path.join(data, "conf", "mfcc.conf")).read()
    # a data dir with features but no audio gives the same prepared copy
    given = tmp_path / "data" / "given"
    shutil.copytree(data, given)
    os.unlink(given / "wav.scp")
    imported = import_features(str(given), str(given) + "_no_sil", archive_dir=str(tmp_path / "m2"))
    assert (imported.num_utts, imported.unvoiced) == (4, 1)
    again = tables.read_dict(f"scp:{given}_no_sil/feats.scp")
    assert sorted(again) == sorted(prepared)
    for utt, x in prepared.items():
        np.testing.assert_array_equal(again[utt], x)


def test_make_features_errors(data_dir, tmp_path):
    data, mfcc, vad = data_dir
    with pytest.raises(XvjaxError, match="needs VAD options"):
        make_features(data, mfcc, None, no_sil_dir=data + "_no_sil")
    no_audio = str(tmp_path / "no_audio")
    shutil.copytree(data, no_audio)
    os.unlink(os.path.join(no_audio, "wav.scp"))
    with pytest.raises(XvjaxError, match="no wav.scp"):
        make_features(no_audio, mfcc, vad)
    report = make_features(data, mfcc, None, archive_dir=str(tmp_path / "a"))
    assert report.failed == ["b-u3"]  # 8 kHz audio without resample_to
    assert not os.path.exists(os.path.join(data, "vad.scp"))


def test_augment_data_dir_options():
    opts = AugmentDataDirOptions(bg_noise_dir="musan/music", utt_suffix="music")
    opts.check()
    assert opts.new_id("u1") == "u1-music"
    prefixed = AugmentDataDirOptions(fg_noise_dir="n", utt_prefix="noise", fg_snrs=(5.0,))
    assert prefixed.new_id("u1") == "noise-u1"
    for bad, why in (
        (AugmentDataDirOptions(utt_suffix="x"), "exactly one of"),
        (AugmentDataDirOptions(rir_lists=("r",), fg_noise_dir="n", utt_suffix="x"), "exactly one"),
        (AugmentDataDirOptions(rir_lists=("r",)), "utt-suffix"),
        (AugmentDataDirOptions(rir_lists=("r",), utt_suffix="x", bg_snrs=()), "bg-snrs"),
    ):
        with pytest.raises(XvjaxError, match=why):
            bad.check()
