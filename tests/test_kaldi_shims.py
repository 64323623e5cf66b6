"""`xvjax kaldi-shims`: Kaldi binary names on PATH run xvjax, so a Kaldi-style recipe script (our
own, in the style of make_mfcc.sh / compute_vad_decision.sh / extract_xvectors.sh, with run.pl-like
parallel jobs, Kaldi's option spellings and pipes) runs unmodified and gives Kaldi's numbers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from xvjax import cli
from xvjax.kaldi import tables
from xvjax.kaldi.shims import KALDI_BINARIES

SCRIPT = Path(__file__).parent / "kaldi_style" / "make_feats_and_xvectors.sh"


@pytest.fixture(scope="module")
def shims(tmp_path_factory):
    out = tmp_path_factory.mktemp("shims") / "bin"
    assert cli.run(["kaldi-shims", str(out)]) == 0
    return out


def _env(shims: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{shims}:{env['PATH']}"
    return env


def test_one_shim_per_kaldi_binary(shims):
    assert sorted(p.name for p in shims.iterdir()) == sorted(KALDI_BINARIES)
    assert set(KALDI_BINARIES) <= set(cli.COMMANDS)
    for path in shims.iterdir():
        assert os.access(path, os.X_OK)
    env = _env(shims)
    ok = subprocess.run(["ivector-mean", "--help"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "xvjax ivector-mean" in ok.stdout
    bad = subprocess.run(["copy-feats", "--nope=1", "ark:-", "ark:-"], env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 1 and "ERROR (xvjax copy-feats)" in bad.stderr


@pytest.mark.slow  # end to end: 16 processes, 4 of them compile JAX programs (~2 min on 2 cores)
def test_kaldi_style_recipe_runs_on_the_shims(shims, kaldi_fixtures, tmp_path):
    """Two parallel jobs (one speaker each): MFCC (compressed, with utt2dur and utt2num_frames),
    energy VAD, CMN + voiced frames + x-vectors through `nnet3-copy --nnet-config=extract.config
    final.raw - |`, speaker means. VAD decisions are Kaldi's exactly; the x-vectors are Kaldi's
    (xvectors_recipe.txt, same options) up to the MFCC compression make_mfcc.sh applies (Kaldi's
    fixture comes from uncompressed MFCC)."""
    utts = ("u2_16k", "u5_16k")
    data, conf, nnet = tmp_path / "data/train", tmp_path / "conf", tmp_path / "nnet"
    for d in (data, conf, nnet):
        d.mkdir(parents=True)
    audio = kaldi_fixtures / "audio"
    (data / "wav.scp").write_text("".join(f"{u} {audio / (u + '.wav')}\n" for u in utts))
    (data / "spk2utt").write_text("".join(f"{u} {u}\n" for u in utts))
    (conf / "mfcc.conf").write_bytes((kaldi_fixtures / "features/mfcc16k.conf").read_bytes())
    (conf / "vad.conf").write_bytes((kaldi_fixtures / "features/vad.conf").read_bytes())
    for f in ("final.raw", "extract.config"):
        (nnet / f).write_bytes((kaldi_fixtures / "nnet3/small" / f).read_bytes())
    exp = tmp_path / "exp"
    run = subprocess.run(["bash", str(SCRIPT), "2", str(conf), str(data), str(nnet), str(exp)],
                         env=_env(shims), capture_output=True, text=True)  # fmt: skip
    logs = "\n".join(p.read_text() for p in sorted((exp / "log").glob("*.log")))
    assert run.returncode == 0, run.stderr + logs
    assert "xvjax nnet3-xvector-compute" in (exp / "log/extract.1.log").read_text()
    assert (data / "utt2dur").read_text() == "u2_16k 3.522187 \nu5_16k 0.517875 \n"
    assert (data / "utt2num_frames").read_text() == "u2_16k 352 \nu5_16k 52 \n"
    vad = tables.read_dict(f"scp:{data / 'vad.scp'}")
    kaldi_vad = tables.read_dict(f"ark,t:{kaldi_fixtures / 'features/vad16k.txt'}")
    for u in utts:
        np.testing.assert_array_equal(vad[u], kaldi_vad[u])
    xv = tables.read_dict(f"scp:{exp / 'xvector.scp'}")
    kaldi_xv = tables.read_dict(f"ark,t:{kaldi_fixtures / 'nnet3/small/xvectors_recipe.txt'}")
    for u in utts:
        assert np.abs(xv[u] - kaldi_xv[u]).max() <= 2e-3 * np.linalg.norm(kaldi_xv[u]), u
    num_utts = tables.read_dict(f"ark,t:{exp / 'num_utts.ark'}", kind="int32")
    assert num_utts == {u: 1 for u in utts}
    mean = tables.read_vector(str(exp / "mean.vec"))
    np.testing.assert_allclose(mean, np.mean([xv[u] for u in utts], axis=0), rtol=1e-5, atol=1e-6)
