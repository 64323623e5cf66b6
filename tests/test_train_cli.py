"""`xvjax train` command line: option parsing, config overrides, and bad input caught before any
compute (clear one-line errors / warnings with counts, nothing written)."""

import os
import shutil

import jax
import pytest

from xvjax import cli
from xvjax.errors import XvjaxError
from xvjax.model.checkpoint import save_model
from xvjax.model.spec import xvector_1a_spec
from xvjax.model.xvector import init_variables
from xvjax.synthetic.fake_feats import write_fake_data_dir
from xvjax.train.commands import parse_train_argv
from xvjax.train.input_pipeline import build_data

pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = str(root / "train")
    write_fake_data_dir(
        data, num_speakers=5, utts_per_speaker=3, feat_dim=8, min_frames=40, max_frames=90
    )
    spec = xvector_1a_spec(
        input_dim=8, num_speakers=7, frame_dims=(16, 16, 16, 16, 32), embedding_dims=(16, 16)
    )
    model8 = str(root / "model8")
    save_model(model8, spec, init_variables(spec, jax.random.key(0)))
    spec10 = xvector_1a_spec(
        input_dim=10, num_speakers=7, frame_dims=(16, 16, 16, 16, 32), embedding_dims=(16, 16)
    )
    model10 = str(root / "model10")
    save_model(model10, spec10, init_variables(spec10, jax.random.key(0)))
    return root, data, model8, model10


def _argv(data, workdir, *extra):
    return [
        "--config=configs/finetune.py",
        f"--data={data}",
        f"--workdir={workdir}",
        "--config.data.min_chunk=30",
        "--config.data.max_chunk=30",
        "--batch-size=4",
        *extra,
    ]


def test_parse_options_and_overrides(setup):
    root, data, model8, _ = setup
    config, workdir, _ = parse_train_argv(
        _argv(data, "w", f"--init-from={model8}", "--freeze=tdnn[1-4]", "--train_only=tdnn[5-7],output",
              "--config.optim.initial_lr=0.5", "--num-steps=7", "--lr-mults=output:2")
    )  # fmt: skip
    assert workdir == "w" and config.init_from == model8
    assert config.optim.freeze == "tdnn[1-4]" and config.optim.train_only == "tdnn[5-7],output"
    assert (
        config.optim.initial_lr == 0.5
        and config.train.num_steps == 7
        and config.train.batch_size == 4
    )
    assert config.optim.lr_mults == "output:2"
    assert config.data.num_workers == 1  # the default: one thread makes the batches
    config, _, _ = parse_train_argv(_argv(data, "w", "--num-workers=4"))
    assert config.data.num_workers == 4
    config, _, _ = parse_train_argv(_argv(data, "w", "--egs-dir=exp/egs"))
    assert config.data.source == "egs"
    config, _, _ = parse_train_argv(_argv(data, "w", "--musan=musan", "--rirs=RIRS_NOISES"))
    assert config.data.source == "audio" and config.data.aug_prob == 0.5
    assert config.data.musan == "musan" and config.data.rirs == "RIRS_NOISES"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--bogus=1"], "invalid option --bogus"),
        (["--config.train.nope=1"], "no field 'train.nope'"),
        (["--config.train.num_steps=many"], "num_steps"),
        (["--num-steps=many"], "invalid int"),
    ],
)
def test_bad_options(setup, extra, message):
    root, data, _, _ = setup
    with pytest.raises(XvjaxError, match=message):
        parse_train_argv(_argv(data, "w", *extra))


def test_missing_required(setup):
    with pytest.raises(XvjaxError, match="--workdir"):
        parse_train_argv(["--config=configs/finetune.py"])
    with pytest.raises(XvjaxError, match="--config"):
        parse_train_argv(["--workdir=x"])


def _damaged(root, model) -> str:
    """A copy of the model dir `model` whose Orbax array data is gone."""
    path = str(root / "damaged")
    if not os.path.exists(path):
        shutil.copytree(model, path)
        shutil.rmtree(os.path.join(path, "variables", "d"))
    return path


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--freeze=tdnn9"], "freeze: pattern 'tdnn9' matches no layer"),
        (["--train-only=outptu"], "train_only: pattern 'outptu' matches no layer"),
        (["--freeze=.*"], "every layer is frozen"),
        (["--init-from=MODEL10"], "takes 10-dim input but the training features are 8-dim"),
        (["--config.data.min_chunk=500", "--config.data.max_chunk=500"], "0 speaker"),
        (["--init-from=/no/such/model.raw"], "no such file"),
        (["--data=/no/such/dir"], "no feats.scp"),
        (["--musan=/m", "--source=feats"], "use --source=audio"),
        (["--num-steps=-5"], "config train.num_steps=-5: must be in [1, inf)"),
        (["--batch-size=0"], "config train.batch_size=0: must be in [1, inf)"),
        (["--config.optim.initial_lr=-0.1"], "config optim.initial_lr=-0.1: must be in (0, inf)"),
        (["--config.train.keep_checkpoints=-1"], "train.keep_checkpoints=-1: must be in [0, inf)"),
        (["--config.eval.every=-10"], "config eval.every=-10: must be in [0, inf)"),
        (["--config.optim.momentum=1.0"], "config optim.momentum=1.0: must be in [0, 1)"),
        (["--config.data.max_chunk=20"], "data.max_chunk=20: must be >= data.min_chunk (30)"),
        (["--config.optim.optimizer=rmsprop"], "optim.optimizer='rmsprop': choose one of sgd,"),
        # the model room reads it (model.checkpoint.load_model: a one-line XvjaxError)
        (["--init-from=DAMAGED"], "cannot read the variables in"),
    ],
)
def test_bad_input_is_one_line_error_before_compute(setup, capsys, extra, message):
    root, data, model8, model10 = setup
    workdir = str(root / "bad")
    extra = [
        e.replace("MODEL10", model10).replace("DAMAGED", _damaged(root, model8)) for e in extra
    ]
    argv = ["train", *_argv(data, workdir, f"--init-from={model8}"), *extra]
    assert cli.run(argv) == 1
    err = capsys.readouterr().err
    assert "ERROR (xvjax train): " in err and message in err, err
    assert not os.path.exists(workdir)  # nothing written


def test_dropped_speakers_and_short_utterances_are_reported(setup, caplog):
    root, data, _, _ = setup
    lengths = {}
    for line in open(os.path.join(data, "utt2num_frames")):
        utt, n = line.split()
        lengths[utt] = int(n)
    min_chunk = sorted(lengths.values())[3]  # drops the 3 shortest utterances
    short = [u for u, n in lengths.items() if n < min_chunk]
    hit = {u.split("-")[0] for u in short}  # their speakers keep < 3 utterances
    config, _, _ = parse_train_argv(_argv(data, "w", "--config.data.min_utts_per_spk=3"))
    config.data.min_chunk = config.data.max_chunk = min_chunk
    with caplog.at_level("WARNING", logger="xvjax"):
        td = build_data(config)
    text = caplog.text
    assert (
        f"{len(short)} of 15 utterances in {data} are shorter than the minimum chunk of {min_chunk}"
        in text
    )
    assert f"{len(hit)} of 5 speakers in {data} have fewer than 3 usable utterances" in text
    assert td.num_speakers == 5 - len(hit)
    td.loader.close()


def test_help(capsys):
    assert cli.run(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--init-from" in out and "--config.FIELD" in out and "XVJAX_COORDINATOR" in out
