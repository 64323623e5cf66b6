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
    assert rows == [{"step": 4, **_train_point(2.0)}, {"step": 4, "dev_eer": 0.125}]
    assert history[1:] == rows
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
