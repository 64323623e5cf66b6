"""Training sources: feats.scp store (raw: CMN + VAD, or prepared), chunk loader, Kaldi egs archives."""

import os
import re
import shutil

import numpy as np
import pytest

from xvjax.data import chunks, loaders, stores
from xvjax.kaldi import tables
from xvjax.synthetic.fake_feats import write_fake_data_dir


def parse_egs_text(path):
    """{key: (input (rows, dim), label)} from `nnet3-copy-egs ark,t:` output."""
    text = open(path).read()
    out = {}
    for m in re.finditer(r"(\S+) <Nnet3Eg>(.*?)</Nnet3Eg>", text, re.S):
        key, body = m.group(1), m.group(2)
        mat = body.split("[", 1)[1].split("]", 1)[0]
        rows = np.array([[float(v) for v in line.split()] for line in mat.strip().splitlines()])
        label = int(re.search(r"<NnetIo> output .*?\[ (\d+) 1 \]", body, re.S).group(1))
        out[key] = (rows, label)
    return out


def test_egs_sample_reads_to_its_text_form(kaldi_fixtures):
    egs = kaldi_fixtures / "egs"
    want = parse_egs_text(egs / "egs_sample.txt")
    assert len(want) == 4
    loader = loaders.EgsLoader(str(egs / "egs_sample.ark"), batch_size=1, seed=3)
    assert loader.feat_dim == 30
    got = [next(loader) for _ in range(4)]
    assert loader.position["epoch"] == 0 and next(loader).position["epoch"] == 1
    seen = set()
    for b in got:
        assert b.feats.shape == (1, 66, 30)
        key = next(k for k, (rows, lab) in want.items() if lab == b.labels[0] and k not in seen)
        seen.add(key)
        rows, lab = want[key]
        assert key.endswith(f"-66-{lab}")  # utt-START-LEN-LABEL
        np.testing.assert_allclose(b.feats[0], rows, rtol=1e-6, atol=1e-5 * np.abs(rows).max())
    assert seen == set(want)


def test_egs_dir_resume_and_speakers(kaldi_fixtures, tmp_path):
    egs = kaldi_fixtures / "egs"
    for n in (1, 2, 3):
        shutil.copy(egs / "egs_sample.ark", tmp_path / f"egs.{n}.ark")
    shutil.copy(egs / "pdf2num", tmp_path / "pdf2num")
    loader = loaders.EgsLoader(str(tmp_path), batch_size=2, seed=0)
    assert loader.num_speakers == 20
    run = [next(loader) for _ in range(8)]
    again = loaders.EgsLoader(str(tmp_path), batch_size=2, seed=0)
    again.load_state_dict(run[2].position)
    for want in run[3:]:
        got = next(again)
        np.testing.assert_array_equal(got.feats, want.feats)
        assert got.position == want.position
    # two processes split each minibatch
    halves = [
        loaders.EgsLoader(str(tmp_path), batch_size=2, seed=0, process_index=p, process_count=2)
        for p in (0, 1)
    ]
    for want in run[:4]:
        a, b = next(halves[0]), next(halves[1])
        np.testing.assert_array_equal(np.concatenate([a.feats, b.feats]), want.feats)


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("src") / "train")
    write_fake_data_dir(path, num_speakers=4, utts_per_speaker=3, feat_dim=6, with_vad=True)
    return path


def test_feats_store_raw_applies_cmn_and_vad(raw_dir):
    from xvjax.features.cmvn import sliding_cmn_numpy
    from xvjax.features.options import RECIPE_CMN

    store = stores.FeatsStore(raw_dir)
    assert store.prep == "raw" and store.feat_dim == 6
    feats = tables.read_dict(f"scp:{raw_dir}/feats.scp")
    vad = tables.read_dict(f"scp:{raw_dir}/vad.scp")
    utt = sorted(feats)[1]
    want = sliding_cmn_numpy(feats[utt], RECIPE_CMN)[vad[utt] > 0.5]
    np.testing.assert_array_equal(store.load(utt), want)
    assert store.utt2len[utt] == int((vad[utt] > 0.5).sum()) < len(feats[utt])
    prepared = stores.FeatsStore(raw_dir, prep="prepared")
    np.testing.assert_array_equal(prepared.load(utt), feats[utt])


def test_chunk_loader_batches_are_chunks_of_utterances(raw_dir):
    store = stores.FeatsStore(raw_dir)
    table, _ = chunks.build_utt_table(store.utt2len, store.utt2spk, min_len=30)
    cfg = chunks.ChunkConfig(
        min_chunk=30, max_chunk=50, frames_per_archive=800, num_repeats=3, batch_size=4
    )
    loader = loaders.ChunkLoader(store, chunks.ChunkSampler(table, cfg), prefetch=2)
    ref = chunks.ChunkSampler(table, cfg)
    for _ in range(6):
        b, spec = next(loader), next(ref)
        assert b.feats.shape == (4, spec.chunk_len, 6) and b.feats.dtype == np.float32
        for row in range(4):
            utt = table.utt_ids[spec.utt_idx[row]]
            off = spec.offsets[row]
            np.testing.assert_array_equal(b.feats[row], store.load(utt)[off : off + spec.chunk_len])
        np.testing.assert_array_equal(b.labels, spec.labels)
        assert b.position == spec.next_position
        assert loader.state_dict() == b.position  # not the prefetching sampler's position
    loader.close()


def test_missing_files_are_clear_errors(tmp_path):
    from xvjax.errors import XvjaxError

    with pytest.raises(XvjaxError, match="feats.scp"):
        stores.FeatsStore(str(tmp_path))
    with pytest.raises(XvjaxError, match="no egs"):
        loaders.EgsLoader(str(tmp_path), batch_size=2)
    os.makedirs(tmp_path / "x")
    with pytest.raises(XvjaxError, match="does not exist"):
        loaders.EgsLoader(str(tmp_path / "x" / "egs.1.ark"), batch_size=2)


def test_train_data_from_egs_config(kaldi_fixtures, tmp_path):
    from xvjax.train.config import base_config
    from xvjax.train.input_pipeline import build_data

    shutil.copy(kaldi_fixtures / "egs" / "egs_sample.ark", tmp_path / "egs.1.ark")
    c = base_config()
    c.data.source, c.data.egs_dir = "egs", str(tmp_path)
    c.train.batch_size = 2
    from xvjax.errors import XvjaxError

    with pytest.raises(XvjaxError, match="pdf2num"):
        build_data(c)
    shutil.copy(kaldi_fixtures / "egs" / "pdf2num", tmp_path / "pdf2num")
    td = build_data(c)
    assert td.num_speakers == 20 and td.feat_dim == 30
    assert next(td.loader).feats.shape == (2, 66, 30)


# ----------------------------------------------------------------------------- parallel workers


def _feats_loader(raw_dir, num_workers, prefetch=1, store=None):
    store = store or stores.FeatsStore(raw_dir, cache=False)
    table, _ = chunks.build_utt_table(store.utt2len, store.utt2spk, min_len=30)
    cfg = chunks.ChunkConfig(
        min_chunk=30, max_chunk=50, frames_per_archive=400, num_repeats=2, batch_size=4, seed=3
    )
    return loaders.ChunkLoader(store, chunks.ChunkSampler(table, cfg), prefetch, num_workers)


def _assert_same_batches(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.feats, w.feats)
        np.testing.assert_array_equal(g.labels, w.labels)
        assert g.position == w.position


def _take(loader, n):
    out = [next(loader) for _ in range(n)]
    loader.close()
    return out


def _data_threads():
    """The loader worker threads alive now (other tests' unclosed loaders may hold some)."""
    import threading

    return {t for t in threading.enumerate() if t.name.startswith("xvjax-data")}


def test_feats_batches_do_not_depend_on_workers_and_resume_exactly(raw_dir):
    run = _take(_feats_loader(raw_dir, num_workers=0), 12)  # in this thread
    assert len({b.position["archive"] for b in run}) > 1  # crosses archive boundaries
    for workers, prefetch in ((1, 0), (3, 2)):
        _assert_same_batches(_take(_feats_loader(raw_dir, workers, prefetch), 12), run)
    # resume after batch 4 with another worker count: the uninterrupted run's batches follow
    again = _feats_loader(raw_dir, num_workers=2)
    again.load_state_dict(run[4].position)
    _assert_same_batches(_take(again, 7), run[5:])


def test_closed_loader_leaves_no_worker_and_continues_where_it_was(raw_dir):
    before = _data_threads()
    loader = _feats_loader(raw_dir, num_workers=3, prefetch=2)
    first = [next(loader) for _ in range(3)]
    # workers are making the next batches; not daemons, so the interpreter joins them before it
    # tears down (a daemon thread inside a JAX call at exit aborts the process)
    assert _data_threads() - before and not any(t.daemon for t in _data_threads())
    loader.close()
    assert _data_threads() <= before
    assert loader.state_dict() == first[-1].position
    rest = _take(loader, 3)  # restarts the workers from the position of the last batch handed out
    _assert_same_batches(first + rest, _take(_feats_loader(raw_dir, 0), 6))
    assert _data_threads() <= before


class _BrokenStore:
    """A store whose reads of one utterance fail as a disk or a network mount can."""

    def __init__(self, store, bad):
        self.store, self.bad = store, bad
        self.utt2len, self.utt2spk, self.feat_dim = store.utt2len, store.utt2spk, store.feat_dim

    def load(self, utt):
        if utt == self.bad:
            raise OSError(f"[Errno 5] Input/output error: '{self.bad}.ark'")
        return self.store.load(utt)


def test_worker_error_names_the_utterance(raw_dir):
    before = _data_threads()
    from xvjax.errors import XvjaxError

    store = stores.FeatsStore(raw_dir)
    loader = _feats_loader(raw_dir, 0)
    bad = loader.sampler.table.utt_ids[int(next(loader.sampler).utt_idx[2])]  # in the first batch
    loader = _feats_loader(raw_dir, num_workers=2, store=_BrokenStore(store, bad))
    with pytest.raises(XvjaxError, match=f"utterance '{bad}': cannot load \\(OSError"):
        next(loader)
    loader.close()
    assert _data_threads() <= before
    # an utterance shorter than its allocation (features rewritten since the start)
    short = _BrokenStore(store, "")
    short.load = lambda utt: store.load(utt)[:10] if utt == bad else store.load(utt)
    loader = _feats_loader(raw_dir, num_workers=2, store=short)
    with pytest.raises(XvjaxError, match=f"utterance '{bad}' has 10 frames"):
        next(loader)
    loader.close()


def _egs_dir(kaldi_fixtures, path):
    for n in (1, 2, 3):
        shutil.copy(kaldi_fixtures / "egs" / "egs_sample.ark", path / f"egs.{n}.ark")
    return str(path)


def test_egs_batches_do_not_depend_on_workers_and_resume_exactly(kaldi_fixtures, tmp_path):
    before = _data_threads()
    egs = _egs_dir(kaldi_fixtures, tmp_path)
    run = _take(loaders.EgsLoader(egs, batch_size=2, seed=1, num_workers=0), 14)
    assert run[-1].position["epoch"] == 2  # 2 batches per archive, 3 archives per epoch
    for workers in (1, 3):
        got = _take(loaders.EgsLoader(egs, batch_size=2, seed=1, num_workers=workers), 14)
        _assert_same_batches(got, run)
    again = loaders.EgsLoader(egs, batch_size=2, seed=1, num_workers=2)
    again.load_state_dict(run[4].position)  # in epoch 0, archive 2
    _assert_same_batches(_take(again, 9), run[5:])
    assert _data_threads() <= before


def test_egs_worker_error_names_the_archive(kaldi_fixtures, tmp_path):
    before = _data_threads()
    from xvjax.errors import XvjaxError

    egs = _egs_dir(kaldi_fixtures, tmp_path)
    loader = loaders.EgsLoader(egs, batch_size=2, seed=1, num_workers=2)
    order = loader._order(0)
    with open(order[1], "r+b") as f:  # the second archive of epoch 0 is cut short
        f.truncate(300)
    next(loader), next(loader)
    with pytest.raises(XvjaxError, match=os.path.basename(order[1])):
        next(loader)
    loader.close()
    assert _data_threads() <= before
