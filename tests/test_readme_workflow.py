"""The README's "Moving your Kaldi system to a new domain" step-by-step lines, run as shell commands.

The commands are read from README.md itself (the ```sh block after "Or step by step"), so a README
edit that breaks a line breaks this test. They run with `bash -c` in a temp dir laid out as the
README assumes (conf/, data/<dir>/, exp/xvector_nnet_1a/final.raw, configs/), on the tiny demo
corpus: target domain generated at 16 kHz (`make-demo-corpus --target-rate=16000`) so that the
16 kHz nnet3 fixture `nnet3/small/final.raw` (30 MFCCs, Kaldi-trained) is the "pretrained Kaldi
model". The parts the README leaves to the reader (features and x-vectors of the other data dirs, the
out-of-domain backend `plda` + `transform.mat`, test.ark and cohort.ark) are the same README lines
with the data dir swapped, or the Kaldi recipe's lines written out below. Training is cut to a few
steps by appending --num-steps/--batch-size to the README's train line.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # .venv/bin: xvjax is installed next to the test's python

# The README's step-by-step block, in order (first word after `xvjax`, or the shell tool).
EXPECTED_STEPS = [
    "make-features",
    "nnet3-to-flax",
    "train",
    "flax-to-nnet3",
    "nnet3-xvector-compute",
    "ivector-adapt-plda",
    "ivector-mean",  # in-domain mean
    "ivector-mean",  # enroll.ark + num_utts.ark
    "score-norm",
    "awk",  # ... | xvjax compute-eer -
    "compute-min-dcf",
]
TINY_TRAIN = " --num-steps=4 --batch-size=8"
# README data dir -> demo corpus dir; src_train is the out-of-domain data of the "Kaldi backend".
DATA_DIRS = {
    "tgt_train": "target_train",
    "adapt": "target_adapt",
    "enroll": "target_enroll",
    "test": "target_test",
    "src_train": "source_train",
}
POSTPROCESS = (
    "xvjax ivector-subtract-global-mean mean_adapt.vec {rspec} ark:- | "
    "xvjax transform-vec transform.mat ark:- ark:- | xvjax ivector-normalize-length ark:- {wspec}"
)


def readme_steps() -> list[str]:
    """Logical command lines of the README's step-by-step block (continuations joined, comments cut)."""
    text = (REPO / "README.md").read_text()
    start = text.index("```sh\n", text.index("Or step by step")) + len("```sh\n")
    block = text[start : text.index("```", start)]
    steps, cur = [], ""
    for line in block.splitlines():
        line = re.sub(r"\s+#\s[^'\"]*$", "", line)  # trailing comment (comments hold no quotes)
        if line.endswith("\\"):
            cur += line[:-1]
            continue
        steps.append(cur + line)
        cur = ""
    return [s for s in steps if s.strip()]


def step_name(cmd: str) -> str:
    words = cmd.split()
    return words[1] if words[0] == "xvjax" else words[0]


def sh(cmd: str, cwd: Path) -> str:
    """Runs `cmd` with bash (pipes, process substitution) and .venv/bin first on PATH; its stdout."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(
        ["bash", "-c", f"set -eo pipefail; {cmd}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"command failed ({proc.returncode}): {cmd}\n{proc.stderr[-3000:]}"
    return proc.stdout


def num_lines(path: Path) -> int:
    return len(path.read_text().splitlines())


@pytest.mark.slow
def test_readme_step_by_step_workflow(kaldi_fixtures, tmp_path, monkeypatch):
    from xvjax.kaldi import tables

    if shutil.which("xvjax", path=str(BIN)) is None:
        pytest.skip(f"xvjax is not installed in {BIN}")
    steps = readme_steps()
    assert [step_name(s) for s in steps] == EXPECTED_STEPS, steps
    (make_feats, to_flax, train, to_nnet3, extract, adapt, adapt_mean, enroll, snorm, eer, dcf) = (
        steps
    )

    # The layout the README assumes: conf/, data/, a Kaldi model, configs/.
    w = tmp_path
    monkeypatch.chdir(w)  # the scp files hold paths relative to the working dir, as in Kaldi
    sh("xvjax make-demo-corpus --preset=tiny --target-rate=16000 --num-jobs=2 corpus", w)
    (w / "conf").mkdir()
    shutil.copy(kaldi_fixtures / "features" / "mfcc16k.conf", w / "conf" / "mfcc.conf")
    shutil.copy(kaldi_fixtures / "features" / "vad.conf", w / "conf" / "vad.conf")
    (w / "exp" / "xvector_nnet_1a").mkdir(parents=True)
    shutil.copy(kaldi_fixtures / "nnet3" / "small" / "final.raw", w / "exp" / "xvector_nnet_1a")
    (w / "configs").symlink_to(REPO / "configs")
    for name, corpus_dir in DATA_DIRS.items():
        shutil.copytree(w / "corpus" / "data" / corpus_dir, w / "data" / name)
    shutil.copy(w / "data" / "test" / "trials", w / "trials")
    num_utts = {name: num_lines(w / "data" / name / "utt2spk") for name in DATA_DIRS}
    num_tgt_spk = num_lines(w / "data" / "tgt_train" / "spk2utt")

    # Features of every data dir.
    assert "data/tgt_train" in make_feats
    sh(make_feats, w)
    for name in DATA_DIRS:
        if name != "tgt_train":
            sh(make_feats.replace("data/tgt_train", f"data/{name}") + " --progress=false", w)
        for f in ("feats.scp", "vad.scp"):
            assert num_lines(w / "data" / name / f) == num_utts[name], (name, f)

    # Kaldi model -> Flax; fine-tune; back to Kaldi.
    sh(to_flax, w)
    assert (w / "checkpoints" / "kaldi_1a" / "model.json").is_file()
    sh(train + TINY_TRAIN, w)
    assert (w / "checkpoints" / "ft" / "final").is_dir()
    sh(to_nnet3, w)
    info = sh("xvjax nnet3-info exp/xvector_ft/final.raw", w)
    assert "input-node name=input dim=30" in info
    assert re.search(r"num-parameters: \d+", info)
    out_affine = re.search(r"component name=output\.affine .*output-dim=(\d+)", info)
    assert out_affine and int(out_affine.group(1)) == num_tgt_spk  # resized to in-domain speakers

    # x-vectors through the CMN | voiced-frames pipe: README line for data/test, same for the others.
    assert "data/test/" in extract and "xv_test" in extract
    sh(extract, w)
    for name in ("enroll", "adapt", "src_train"):
        sh(extract.replace("data/test/", f"data/{name}/").replace("xv_test", f"xv_{name}"), w)
    # The exported final.raw, read through Kaldi's extraction idiom (its node `output` is the
    # log-softmax, so extract.config points `output` at the x-vector layer), gives the same
    # x-vectors as the model dir it came from.
    (w / "extract.config").write_text("output-node name=output input=tdnn6.affine\n")
    raw_model = '"xvjax nnet3-copy --nnet-config=extract.config exp/xvector_ft/final.raw - |"'
    sh(extract.replace("checkpoints/ft/final", raw_model).replace("xv_test", "xv_raw"), w)
    xv_test = tables.read_dict("scp:xv_test.scp")
    xv_raw = tables.read_dict("scp:xv_raw.scp")
    assert len(xv_test) == num_utts["test"] and xv_raw.keys() == xv_test.keys()
    for key, vec in xv_test.items():
        assert vec.shape == (48,) and np.all(np.isfinite(vec))
        np.testing.assert_allclose(xv_raw[key], vec, rtol=1e-5, atol=1e-5, err_msg=key)
    # A bare final.raw gives its node `output`, the log-softmax over the in-domain speakers, as Kaldi.
    bare = extract.replace("checkpoints/ft/final", "exp/xvector_ft/final.raw")
    sh(bare.replace("data/test/", "data/enroll/").replace("xv_test", "logsm_enroll"), w)
    for vec in tables.read_dict("scp:logsm_enroll.scp").values():
        assert vec.shape == (num_tgt_spk,) and np.exp(vec).sum() == pytest.approx(1.0, abs=1e-4)

    # The "Kaldi backend" (mean.vec, transform.mat, plda) from out-of-domain x-vectors, as in
    # Kaldi's sre16 recipe; then the README's adaptation, enrolment and scoring lines.
    sh("xvjax ivector-mean scp:xv_src_train.scp mean.vec", w)
    centred = "xvjax ivector-subtract-global-mean scp:xv_src_train.scp ark:-"
    sh(
        f'xvjax ivector-compute-lda --dim=10 "ark:{centred} |" ark:data/src_train/utt2spk transform.mat',
        w,
    )
    lda_norm = (
        "xvjax transform-vec transform.mat ark:- ark:- | xvjax ivector-normalize-length ark:- ark:-"
    )
    sh(
        f'xvjax ivector-compute-plda ark:data/src_train/spk2utt "ark:{centred} | {lda_norm} |" plda',
        w,
    )
    sh(adapt, w)
    assert (w / "plda_adapt").stat().st_size > 0
    sh(adapt_mean, w)
    sh(enroll, w)
    sh(POSTPROCESS.format(rspec="scp:xv_test.scp", wspec="ark:test.ark"), w)
    sh(POSTPROCESS.format(rspec="scp:xv_adapt.scp", wspec="ark:cohort.ark"), w)
    num_enroll_spk = num_lines(w / "data" / "enroll" / "spk2utt")
    assert len(tables.read_dict("ark:enroll.ark")) == num_enroll_spk
    assert num_lines(w / "num_utts.ark") == num_enroll_spk
    for name, n in (("test", num_utts["test"]), ("cohort", num_utts["adapt"])):
        vecs = tables.read_dict(f"ark:{name}.ark")
        assert len(vecs) == n and all(v.shape == (10,) for v in vecs.values())

    sh(snorm, w)
    trials = [line.split() for line in (w / "trials").read_text().splitlines()]
    scores = [line.split() for line in (w / "scores_asnorm").read_text().splitlines()]
    assert [s[:2] for s in scores] == [t[:2] for t in trials]  # trial order kept: paste is valid
    assert all(math.isfinite(float(s[2])) for s in scores)

    eer_pct = float(sh(eer, w))
    assert 0.0 <= eer_pct <= 100.0
    min_dcf = float(sh(dcf, w))
    assert 0.0 <= min_dcf <= 1.0
