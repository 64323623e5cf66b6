"""Chunk allocation as allocate_egs.py, and the checkpointable sampler."""

import numpy as np
import pytest

from xvjax.data import chunks
from xvjax.errors import XvjaxError


def _table(num_spk=6, utts_per_spk=4, seed=0):
    rng = np.random.default_rng(seed)
    utt2len, utt2spk = {}, {}
    for s in range(num_spk):
        for u in range(utts_per_spk):
            utt = f"spk{s}-utt{u}"
            utt2len[utt] = int(rng.integers(40, 200))
            utt2spk[utt] = f"spk{s}"
    return utt2len, utt2spk


def test_filtering_reports_what_was_dropped(caplog):
    utt2len, utt2spk = _table()
    utt2len["spk0-utt0"] = 10
    utt2spk["lonely-utt"] = "lonely"
    utt2len["lonely-utt"] = 100
    with caplog.at_level("WARNING", logger="xvjax"):
        table, rep = chunks.build_utt_table(utt2len, utt2spk, min_len=30, min_utts_per_spk=2)
    assert rep.short_utts == ["spk0-utt0"]
    assert rep.small_speakers == ["lonely"]
    assert "1 of 25 utterances are shorter than the minimum chunk of 30" in caplog.text
    assert "1 of 7 speakers have fewer than 2 usable utterances" in caplog.text
    assert table.num_speakers == 6 and table.num_utts == 23
    assert table.speakers[table.labels[table.utt_ids.index("spk3-utt1")]] == "spk3"
    with pytest.raises(XvjaxError, match="speaker"):
        chunks.build_utt_table(utt2len, utt2spk, min_len=500)


def test_archive_balanced_and_valid():
    utt2len, utt2spk = _table()
    table, _ = chunks.build_utt_table(utt2len, utt2spk, min_len=30)
    cfg = chunks.ChunkConfig(
        min_chunk=30, max_chunk=60, frames_per_archive=3000, num_repeats=5, batch_size=8
    )
    for k in range(5):
        arc = chunks.allocate_archive(table, cfg, k)
        assert 30 <= arc.chunk_len <= 60
        assert arc.num_egs % 8 == 0 and arc.num_egs <= 5 * 6
        # every chunk lies inside its utterance, label is its speaker
        assert np.all(arc.offsets >= 0)
        assert np.all(arc.offsets + arc.chunk_len <= table.lengths[arc.utt_idx])
        np.testing.assert_array_equal(arc.labels, table.labels[arc.utt_idx])
        # no speaker appears more than num_repeats times (Kaldi's balance)
        counts = np.bincount(arc.labels, minlength=table.num_speakers)
        eligible = [s for s in range(6) if table.lengths[table.labels == s].max() >= arc.chunk_len]
        assert counts.max() <= 5 and set(np.flatnonzero(counts)) <= set(eligible)
    # determinism: same seed same archive; other seed differs
    a = chunks.allocate_archive(table, cfg, 3)
    b = chunks.allocate_archive(table, cfg, 3)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    c = chunks.allocate_archive(table, chunks.ChunkConfig(**{**cfg.__dict__, "seed": 1}), 3)
    assert not (np.array_equal(a.offsets, c.offsets) and a.chunk_len == c.chunk_len)


def test_quantized_lengths():
    cfg = chunks.ChunkConfig(min_chunk=200, max_chunk=400, chunk_quantum=50)
    assert chunks.chunk_lengths(cfg) == [200, 250, 300, 350, 400]


def test_sampler_resume_and_process_split():
    utt2len, utt2spk = _table()
    table, _ = chunks.build_utt_table(utt2len, utt2spk, min_len=30)
    cfg = chunks.ChunkConfig(
        min_chunk=30, max_chunk=60, frames_per_archive=1000, num_repeats=4, batch_size=8
    )
    s = chunks.ChunkSampler(table, cfg)
    batches = [next(s) for _ in range(12)]
    assert len({b.archive for b in batches}) > 1
    # resume from the position recorded after batch 5
    r = chunks.ChunkSampler(table, cfg)
    r.load_state_dict(batches[4].next_position)
    for want in batches[5:]:
        got = next(r)
        assert (got.archive, got.batch, got.chunk_len) == (want.archive, want.batch, want.chunk_len)
        np.testing.assert_array_equal(got.offsets, want.offsets)
    # two processes see the two halves of the same global batch
    p0 = chunks.ChunkSampler(table, cfg, 0, 2)
    p1 = chunks.ChunkSampler(table, cfg, 1, 2)
    for want in batches[:6]:
        a, b = next(p0), next(p1)
        np.testing.assert_array_equal(np.concatenate([a.utt_idx, b.utt_idx]), want.utt_idx)
        np.testing.assert_array_equal(np.concatenate([a.labels, b.labels]), want.labels)
