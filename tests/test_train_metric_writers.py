"""`xvjax.train.metric_writers`: interval means and throughput, one writer for metrics.jsonl +
TensorBoard + console, the training curve; only the active process writes."""

import json
import logging
import os

import jax.numpy as jnp
import pytest

from xvjax.train.metric_writers import IntervalMetrics, MetricWriter


def test_interval_means_then_a_new_interval():
    interval = IntervalMetrics()
    interval.add({"loss": jnp.float32(2.0), "accuracy": jnp.float32(0.25)}, 8, 30)
    interval.add({"loss": jnp.float32(1.0), "accuracy": jnp.float32(0.75)}, 8, 30)
    out = interval.summary(lr=0.01)
    assert list(out) == ["loss", "accuracy", "lr", "examples_per_sec", "frames_per_sec"]
    assert out["loss"] == 1.5 and out["accuracy"] == 0.5 and out["lr"] == 0.01
    assert out["frames_per_sec"] == pytest.approx(30 * out["examples_per_sec"])
    assert interval.metrics == [] and interval.examples == 0 and interval.frames == 0


def _train_point(loss):
    return {"loss": loss, "accuracy": 0.5, "lr": 0.01, "examples_per_sec": 100.0,
            "frames_per_sec": 3000.0}  # fmt: skip


def test_active_writer_writes_jsonl_tensorboard_console_and_curve(tmp_path, caplog):
    history = [{"step": 2, **_train_point(3.0)}]  # from the checkpoint of a resumed run
    writer = MetricWriter(
        str(tmp_path), 10, 2, history, active=True, tensorboard=True, progress=False
    )
    with caplog.at_level(logging.INFO, logger="xvjax"):
        writer.step_done()
        writer.write_scalars(4, _train_point(2.0))
        writer.write_scalars(4, {"dev_eer": 0.125})
    writer.close_progress()
    writer.write_training_curve()
    writer.close()
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    # one line per step: the dev EER of a log step joins its line; the file holds the history
    assert rows == [
        {"step": 2, **_train_point(3.0)},
        {"step": 4, **_train_point(2.0), "dev_eer": 0.125},
    ]
    assert history == rows
    assert "Step 4/10: loss 2.0000, accuracy 0.500, lr 0.01, 100.0 examples/s" in caplog.text
    assert "Step 4: dev EER 12.50% (cosine)" in caplog.text
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(tmp_path / "tb"))
    assert (tmp_path / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inactive_writer_keeps_history_only(tmp_path):
    history = []
    writer = MetricWriter(
        str(tmp_path), 10, 0, history, active=False, tensorboard=True, progress=True
    )
    writer.step_done()
    writer.write_scalars(1, _train_point(2.0))
    writer.write_training_curve()
    writer.close()
    assert history == [{"step": 1, **_train_point(2.0)}]
    assert os.listdir(tmp_path) == []


def test_resumed_writer_drops_the_lines_after_its_checkpoint(tmp_path):
    """An interrupted run logged steps 2..8 but checkpointed at 4: the resumed run's metrics.jsonl
    has steps 2 and 4 from the checkpoint's history, then its own, each once."""
    lines = [{"step": s, **_train_point(10.0 - s)} for s in (2, 4, 6, 8)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    history = lines[:2]  # restored from the step-4 checkpoint
    writer = MetricWriter(
        str(tmp_path), 10, 4, history, active=True, tensorboard=False, progress=False
    )
    writer.write_scalars(6, _train_point(1.0))
    writer.write_scalars(8, _train_point(0.5))
    writer.close()
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    assert rows[2]["loss"] == 1.0 and rows[3]["loss"] == 0.5


def test_fresh_writer_starts_an_empty_metrics_file(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n')  # an older run's
    MetricWriter(str(tmp_path), 10, 0, [], active=True, tensorboard=False, progress=False).close()
    assert (tmp_path / "metrics.jsonl").read_text() == ""
