"""Transfer recipe: stage skipping/resume/--stage semantics, options checks, backend rows on
synthetic vectors (fast, no network)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from xvjax.backend.system import PldaBackend, XvectorSet
from xvjax.backend.trials import Trials
from xvjax.errors import XvjaxError
from xvjax.recipe import config, rows, transfer
from xvjax.recipe.routes import BackendRecipe, Backends


def _cfg(tmp_path, **kw) -> config.RecipeConfig:
    return config.RecipeConfig(workdir=str(tmp_path), preset="tiny", **kw).resolved()


def _stages(calls: list, fail_at: int | None = None):
    def make(i):
        def func(cfg, ctx):
            if i == fail_at:
                raise RuntimeError(f"stage {i} failed")
            calls.append(i)
            return {f"out{i}": i, "seen": sorted(k for k in ctx if k.startswith("out"))}

        return func

    return [make(i) for i in range(len(config.STAGES))]


def _run_all(cfg, funcs) -> transfer.StageRunner:
    runner = transfer.StageRunner(cfg)
    for i, f in enumerate(funcs):
        runner.run(i, f)
    return runner


def test_resume_skips_done_stages_and_restores_outputs(tmp_path):
    calls: list = []
    cfg = _cfg(tmp_path)
    with pytest.raises(RuntimeError):
        _run_all(cfg, _stages(calls, fail_at=3))
    assert calls == [0, 1, 2]
    assert not os.path.exists(os.path.join(tmp_path, "stages", "3.embeddings.json"))
    calls.clear()
    runner = _run_all(cfg, _stages(calls))
    assert calls == [3, 4, 5, 6]  # 0-2 were done
    assert runner.skipped == ["data", "features", "source_model"]
    # Outputs of skipped stages are back in the context, visible to later stages.
    assert runner.ctx["out0"] == 0 and runner.ctx["seen"] == [f"out{i}" for i in range(6)]
    calls.clear()
    _run_all(cfg, _stages(calls))
    assert calls == []
    marker = json.loads(open(os.path.join(tmp_path, "stages", "4.backends.json")).read())
    assert marker["outputs"]["out4"] == 4 and marker["fingerprint"] == config.fingerprint(cfg, 4)


def test_explicit_stage_reruns_from_there(tmp_path):
    calls: list = []
    cfg = _cfg(tmp_path)
    _run_all(cfg, _stages(calls))
    calls.clear()
    cfg.stage = 4
    _run_all(cfg, _stages(calls))
    assert calls == [4, 5, 6]


def test_explicit_stage_needs_earlier_stages(tmp_path):
    calls: list = []
    cfg = _cfg(tmp_path, stage=2)
    with pytest.raises(XvjaxError, match="stage 0 .data. has not run"):
        _run_all(cfg, _stages(calls))
    assert calls == []


def test_changed_option_reruns_its_stage_and_later_ones(tmp_path):
    calls: list = []
    cfg = _cfg(tmp_path)
    _run_all(cfg, _stages(calls))
    calls.clear()
    cfg.ft_steps = cfg.ft_steps + 1  # a fine-tuning option: stages 5 and 6 only
    _run_all(cfg, _stages(calls))
    assert calls == [5, 6]
    calls.clear()
    cfg.src_steps = cfg.src_steps + 1  # a source-model option: stages 2..6
    _run_all(cfg, _stages(calls))
    assert calls == [2, 3, 4, 5, 6]


def test_rerun_stage_invalidates_later_markers(tmp_path):
    calls: list = []
    cfg = _cfg(tmp_path)
    _run_all(cfg, _stages(calls))
    cfg.stage = 1
    runner = transfer.StageRunner(cfg)
    runner.run(0, _stages(calls)[0])
    runner.run(1, _stages(calls)[1])  # stops here: later markers must be gone
    left = sorted(os.listdir(os.path.join(tmp_path, "stages")))
    assert left == ["0.data.json", "1.features.json"]


def test_fingerprint_depends_only_on_earlier_stage_options(tmp_path):
    a = _cfg(tmp_path)
    b = _cfg(tmp_path, ft_lr=0.123)
    for i in range(5):
        assert config.fingerprint(a, i) == config.fingerprint(b, i)
    assert config.fingerprint(a, 5) != config.fingerprint(b, 5)


def test_presets_fill_unset_fields_only():
    cfg = config.RecipeConfig(preset="tiny", ft_steps=7).resolved()
    assert cfg.ft_steps == 7
    assert cfg.src_steps == config.RECIPE_PRESETS["tiny"]["src_steps"]
    with pytest.raises(XvjaxError, match="unknown preset"):
        config.RecipeConfig(preset="huge").resolved()
    assert config.RecipeConfig(frame_dims="8, 16").dims("frame_dims") == (8, 16)


def test_check_config_errors(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (tmp_path / "trials").write_text("a b target\n")
    with pytest.raises(XvjaxError, match="--tgt-train"):
        config.check_config(_cfg(tmp_path, tgt_enroll=str(d), tgt_test=str(d), trials="t"))
    with pytest.raises(XvjaxError, match="--src-data"):
        config.check_config(
            _cfg(tmp_path, tgt_enroll=str(d), tgt_test=str(d), tgt_train=str(d),
                 trials=str(tmp_path / "trials"))
        )  # fmt: skip
    with pytest.raises(XvjaxError, match="no such directory"):
        config.check_config(_cfg(tmp_path, musan=str(tmp_path / "nope")))
    with pytest.raises(XvjaxError, match="--plda"):
        config.check_config(_cfg(tmp_path, lda=str(tmp_path / "trials")))
    config.check_config(_cfg(tmp_path))  # the built-in corpus needs nothing


# ----------------------------------------------------------------------------- backends


def _domain(rng, num_spk, per_spk, dim, shift, spk_scale=3.0, prefix="s"):
    """Speakers ~ N(shift, spk_scale^2), utterances ~ N(speaker, 1): a toy x-vector domain."""
    centers = shift + spk_scale * rng.standard_normal((num_spk, dim))
    keys, rows, utt2spk = [], [], {}
    for s in range(num_spk):
        for u in range(per_spk):
            key = f"{prefix}{s:03d}-{u:02d}"
            keys.append(key)
            rows.append(centers[s] + rng.standard_normal(dim))
            utt2spk[key] = f"{prefix}{s:03d}"
    return XvectorSet(keys, np.array(rows), utt2spk)


def _trials(enroll: XvectorSet, test: XvectorSet) -> Trials:
    models = sorted(set(enroll.utt2spk.values()))
    e, t, lab = [], [], []
    for m in models:
        for k in test.keys:
            e.append(m)
            t.append(k)
            lab.append(test.utt2spk[k] == m)
    return Trials(e, t, np.array(lab))


def test_backend_rows_on_a_shifted_domain():
    rng = np.random.default_rng(0)
    dim = 16
    src = _domain(rng, 40, 6, dim, 0.0, prefix="a")
    # The target domain: another mean and a stretched, rotated within-speaker space.
    shift = 6.0 * rng.standard_normal(dim)
    tgt_all = _domain(rng, 50, 8, dim, shift, spk_scale=1.5, prefix="b")
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    tgt_all.mat = (tgt_all.mat - shift) @ q * np.linspace(0.5, 2.0, dim) + shift
    spk = sorted(set(tgt_all.utt2spk.values()))
    idx = {s: i for i, s in enumerate(spk)}

    def part(lo, hi, utts):
        keys = [
            k for k in tgt_all.keys if lo <= idx[tgt_all.utt2spk[k]] < hi and int(k[-2:]) in utts
        ]
        rows = [tgt_all.keys.index(k) for k in keys]
        return XvectorSet(keys, tgt_all.mat[rows], {k: tgt_all.utt2spk[k] for k in keys})

    train, adapt = part(0, 20, range(8)), part(20, 35, range(8))
    enroll, test = part(35, 50, range(2)), part(35, 50, range(2, 8))
    sets = {"source_train": src, "target_train": train, "target_adapt": adapt}
    backends = Backends(sets, lda_dim=12, em_iters=5)
    trials = _trials(enroll, test)
    eers = {}
    recipes = {
        "1": BackendRecipe(),
        "2": BackendRecipe(mean="adapt"),
        "3": BackendRecipe(mean="adapt", adapt=(0.75, 0.25)),
        "4": BackendRecipe(model="target", mean="adapt"),
    }
    for row_id, recipe in recipes.items():
        backend = backends.build(recipe).backend
        s, scored = backend.score(enroll, test, trials)
        assert len(scored) == len(trials)
        m = rows.metrics_of(s, scored.labels)
        assert 0.0 <= m["eer"] <= 100.0 and 0.0 <= m["min_dcf_0.01"] <= 1.0 + 1e-9
        eers[row_id] = m["eer"]
    assert backends.source().lda.shape == (12, dim + 1)
    # Re-centring beats the source mean on shifted data; in-domain LDA/PLDA beats the source one.
    assert eers["2"] < eers["1"]
    assert eers["4"] < eers["1"]
    backend = backends.build(recipes["4"]).backend
    for norm in ("snorm", "asnorm"):
        s, _ = backend.score(enroll, test, trials, norm=norm, cohort=adapt.mat, top_k=30)
        assert np.all(np.isfinite(s))
    # Unknown trial ids (a model, a test segment) are dropped with a warning, not scored; the
    # others keep their scores and their positions in the trials list.
    full, _ = backend.score(enroll, test, trials)
    bad = Trials(["nobody"] + trials.enroll + [trials.enroll[0]],
                 [test.keys[0]] + trials.test + ["no-such-utt"],
                 np.concatenate([[False], trials.labels, [True]]))  # fmt: skip
    s, scored = backend.score(enroll, test, bad)
    assert (scored.enroll, scored.test) == (trials.enroll, trials.test)
    np.testing.assert_array_equal(s, full)
    np.testing.assert_array_equal(scored.labels, trials.labels)


def test_lda_dim_capped_by_speakers():
    rng = np.random.default_rng(1)
    small = _domain(rng, 5, 6, 8, 0.0)
    backend = PldaBackend.fit(small, lda_dim=100)
    assert backend.lda.shape == (4, 9)
    assert len(backend.plda.psi) == 4


# ----------------------------------------------------------------------------- command line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_OPTS = ("src-data", "src-enroll", "src-test", "src-trials", "tgt-train", "tgt-adapt",
             "tgt-enroll", "tgt-test", "trials", "tgt-dev-enroll", "tgt-dev-test", "dev-trials",
             "pretrained", "plda", "mean", "lda", "musan", "rirs", "stage", "workdir")  # fmt: skip


def test_demo_command_options_and_errors(tmp_path, capsys):
    from xvjax import cli

    assert cli.run(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in USER_OPTS:
        assert f"--{opt} " in out
    assert cli.run(["demo", "--preset=huge", f"--workdir={tmp_path}"]) == 1
    assert "unknown preset 'huge'" in capsys.readouterr().err
    assert cli.run(["demo", f"--workdir={tmp_path}", "--tgt-enroll=/nonexistent"]) == 1
    assert "--tgt-train" in capsys.readouterr().err


def test_run_transfer_script_passes_options_to_demo(tmp_path):
    import subprocess

    fake = tmp_path / "fake_xvjax"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    fake.chmod(0o755)
    script = os.path.join(REPO, "scripts", "run_transfer.sh")
    env = {**os.environ, "XVJAX": str(fake)}
    argv = [script, "--src-data", "/data/src", "--sample-rate=8000"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == [
        "demo",
        "--workdir=exp/transfer",
        "--src-data",
        "/data/src",
        "--sample-rate=8000",
    ]
    out = subprocess.run(argv + ["--workdir", "w"], env=env, capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    assert "--workdir=exp/transfer" not in out and out[-2:] == ["--workdir", "w"]


def test_demo_takes_both_option_forms(tmp_path):
    from xvjax import cli

    cmd = cli.get_command("demo")
    spaced, _ = cli.parse_args(cmd, ["--src-enroll", "/x", "--seeds", "3", "--augment=false",
                                     "--progress", "--tgt-dev-test", "/d"])  # fmt: skip
    equals, _ = cli.parse_args(cmd, ["--src-enroll=/x", "--seeds=3", "--augment=false",
                                     "--progress", "--tgt-dev-test=/d"])  # fmt: skip
    assert vars(spaced) == vars(equals)
    assert spaced.src_enroll == "/x" and spaced.seeds == 3 and not spaced.augment
    with pytest.raises(XvjaxError, match="needs a value"):
        cli.parse_args(cmd, ["--trials"])


def test_run_transfer_help_lists_the_source_and_dev_options():
    import subprocess

    script = os.path.join(REPO, "scripts", "run_transfer.sh")
    xvjax = os.path.join(os.path.dirname(sys.executable), "xvjax")
    out = subprocess.run([script, "--help"], env={**os.environ, "XVJAX": xvjax},
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    for opt in ("--src-enroll", "--src-test", "--src-trials", "--tgt-dev-enroll", "--dev-trials",
                "--dev-speakers", "xvjax demo --help"):  # fmt: skip
        assert opt in out


def test_pretrained_kaldi_model_is_imported(tmp_path, kaldi_fixtures):
    from xvjax.model.checkpoint import load_model
    from xvjax.recipe import stages

    raw = str(kaldi_fixtures / "nnet3" / "small" / "final.raw")
    cfg = _cfg(tmp_path, pretrained=raw)
    out = stages.stage_source_model(cfg, {"feat_dim": 30})
    spec, variables = load_model(out["source_model"])
    assert spec.input_dim == 30 and spec.output_dim("tdnn6.affine") == 48
    assert os.path.isfile(os.path.join(out["source_model"], "template.raw"))
    with pytest.raises(XvjaxError, match="23-dim"):
        stages.stage_source_model(cfg, {"feat_dim": 23})
