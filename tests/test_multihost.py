"""Several hosts: the heavy commands run as two local processes joined by jax.distributed (CPU
collectives over loopback, as the trainer's test does) give the same tables as one process; one
failed process ends them all with nothing merged. Plus the job tables and cluster options."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xvjax import cli
from xvjax.errors import XvjaxError
from xvjax.kaldi import jobs, tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- running processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    for name in ("XLA_FLAGS", "XVJAX_COORDINATOR", "XVJAX_NUM_PROCESSES", "XVJAX_PROCESS_ID"):
        env.pop(name, None)
    return env


def xvjax(args: list[str], num_processes: int = 1, cwd=None) -> list[subprocess.CompletedProcess]:
    """Runs `xvjax ARGS` as `num_processes` processes of one cluster; their results in order."""
    cmd = [sys.executable, "-m", "xvjax.cli", *args]
    if num_processes == 1:
        return [
            subprocess.run(cmd, env=_env(), cwd=cwd, capture_output=True, text=True, timeout=600)
        ]
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                *cmd,
                f"--coordinator=127.0.0.1:{port}",
                f"--num-processes={num_processes}",
                f"--process-id={p}",
            ],
            env=_env(),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for p in range(num_processes)
    ]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def _ok(results) -> None:
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]


def entry_bytes(scp: str) -> dict[str, bytes]:
    """key -> the bytes of its object in the archive (what an scp line points at)."""
    entries = tables.read_scp(scp)
    by_file: dict[str, list[tuple[int, str]]] = {}
    for key, rx in entries:
        path, _, offset = rx.rpartition(":")
        by_file.setdefault(path, []).append((int(offset), key))
    found = {}
    for path, items in by_file.items():
        data = Path(path).read_bytes()
        items.sort()
        for i, (offset, key) in enumerate(items):
            end = items[i + 1][0] - len(items[i + 1][1]) - 1 if i + 1 < len(items) else len(data)
            found[key] = data[offset:end]
    return {key: found[key] for key, _ in entries}  # in the scp's order


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def model_and_feats(tmp_path_factory):
    """A small x-vector model dir and a fake 20-dim feature data dir of 24 utterances."""
    import jax

    from xvjax.model.checkpoint import save_model
    from xvjax.model.spec import xvector_1a_spec
    from xvjax.model.xvector import init_variables
    from xvjax.synthetic.fake_feats import write_fake_data_dir

    root = tmp_path_factory.mktemp("xv")
    write_fake_data_dir(str(root / "data"), num_speakers=6, utts_per_speaker=4, feat_dim=20,
                        min_frames=40, max_frames=400)  # fmt: skip
    spec = xvector_1a_spec(input_dim=20, num_speakers=6, frame_dims=(32, 32, 32, 32, 64),
                           embedding_dims=(16, 16))  # fmt: skip
    save_model(str(root / "model"), spec, init_variables(spec, jax.random.key(0)))
    return root


XV_OPTS = ["--chunk-size=150", "--min-chunk-size=25", "--print-args=false"]


@pytest.fixture(scope="module")
def single_xvectors(model_and_feats):
    root = model_and_feats
    _ok(xvjax(["nnet3-xvector-compute", *XV_OPTS, str(root / "model"),
               f"scp:{root}/data/feats.scp", f"ark,scp:{root}/one.ark,{root}/one.scp"]))  # fmt: skip
    return entry_bytes(str(root / "one.scp"))


@pytest.mark.slow
def test_xvector_compute_two_processes_write_what_one_does(model_and_feats, single_xvectors):
    root = model_and_feats
    out = root / "two"
    out.mkdir()
    results = xvjax(["nnet3-xvector-compute", *XV_OPTS, str(root / "model"),
                     f"scp:{root}/data/feats.scp", f"ark,scp:{out}/xv.JOB.ark,{out}/xv.JOB.scp"],
                    num_processes=2)  # fmt: skip
    _ok(results)
    assert sorted(os.listdir(out)) == ["xv.1.ark", "xv.1.scp", "xv.2.ark", "xv.2.scp", "xv.scp"]
    # each process took a share, balanced by frames (not by count), and nothing twice
    frames = dict(tables.read_text_table(str(root / "data" / "utt2num_frames")))
    shares = [[k for k, _ in tables.read_scp(str(out / f"xv.{j}.scp"))] for j in (1, 2)]
    assert shares[0] and shares[1] and not set(shares[0]) & set(shares[1])
    loads = [sum(int(frames[k]) for k in share) for share in shares]
    assert abs(loads[0] - loads[1]) <= max(int(v) for v in frames.values())
    # the merged table: the single run's keys in its order, byte for byte
    merged = entry_bytes(str(out / "xv.scp"))
    assert [k for k, _ in tables.read_scp(str(out / "xv.scp"))] == list(single_xvectors)
    assert merged == single_xvectors
    assert "(xvjax nnet3-xvector-compute:2/2)" in results[1].stderr  # rank in the log prefix
    assert "Done 24 utterances, failed for 0 (2 processes)" in results[0].stderr


def test_one_failed_process_ends_all_and_nothing_is_merged(model_and_feats, tmp_path):
    """A truncated feature file in process 2's share: both processes exit 1 naming the utterance
    and the process; no job archive and no merged scp is left."""
    root = model_and_feats
    entries = tables.read_scp(str(root / "data" / "feats.scp"))
    owners = jobs.assign_by_length([tables.matrix_num_rows(rx) for _, rx in entries], 2)
    bad_key = [k for (k, _), o in zip(entries, owners, strict=True) if o == 1][-1]
    rows = tables.matrix_num_rows(dict(entries)[bad_key])
    broken = tmp_path / "broken.ark"  # its header is whole (the shares stay), its data cut short
    broken.write_bytes(b"\0BFM \x04" + np.int32(rows).tobytes() + b"\x04" + np.int32(20).tobytes())
    scp = tmp_path / "feats.scp"
    scp.write_text("".join(f"{k} {broken if k == bad_key else rx}\n" for k, rx in entries))
    out = tmp_path / "out"
    results = xvjax(["nnet3-xvector-compute", *XV_OPTS, str(root / "model"), f"scp:{scp}",
                     f"ark,scp:{out}/xv.ark,{out}/xv.scp"], num_processes=2)  # fmt: skip
    for r in results:
        assert r.returncode == 1, r.stderr[-2000:]
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("ERROR (xvjax nnet3-xvector-compute:"), last
        assert "process 2 of 2 failed" in last and bad_key in last, last
    assert not out.exists() or os.listdir(out) == []


@pytest.fixture(scope="module")
def wav_dir(kaldi_fixtures, tmp_path_factory):
    """A data dir of 6 16 kHz utterances (the fixtures' audio and cut copies), dither on."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("feats")
    data = root / "data"
    data.mkdir()
    audio = kaldi_fixtures / "audio"
    wavs = {}
    for name in ("u1_16k", "u2_16k", "u5_16k", "u7_16k_long"):
        wavs[f"a-{name}"] = str(audio / f"{name}.wav")
    x, rate = sf.read(str(audio / "u7_16k_long.wav"), dtype="int16")
    for i, n in enumerate((len(x) // 3, len(x) // 2)):
        path = root / f"cut{i}.wav"
        sf.write(str(path), x[:n], rate, subtype="PCM_16")
        wavs[f"b-cut{i}"] = str(path)
    (data / "wav.scp").write_text("".join(f"{k} {v}\n" for k, v in sorted(wavs.items())))
    (data / "utt2spk").write_text("".join(f"{k} {k[:1]}\n" for k in sorted(wavs)))
    (data / "spk2utt").write_text("a " + " ".join(k for k in sorted(wavs) if k[0] == "a") + "\n"
                                  "b " + " ".join(k for k in sorted(wavs) if k[0] == "b") + "\n")  # fmt: skip
    conf = kaldi_fixtures / "features"
    mfcc = root / "mfcc.conf"
    mfcc.write_text((conf / "mfcc16k.conf").read_text().replace("--dither=0", "--dither=1"))
    return root, mfcc, conf / "vad.conf"


@pytest.mark.slow
def test_make_features_two_processes_write_what_one_does(wav_dir):
    root, mfcc, vad = wav_dir
    one, two = root / "one", root / "two"
    shutil.copytree(root / "data", one)
    shutil.copytree(root / "data", two)
    args = ["make-features", f"--mfcc-config={mfcc}", f"--vad-config={vad}", "--batch-size=2",
            "--print-args=false"]  # fmt: skip
    _ok(xvjax([*args, str(one)]))
    results = xvjax([*args, str(two)], num_processes=2)
    _ok(results)
    archives = sorted(os.listdir(two / "data"))
    assert archives == ["raw_mfcc_two.1.ark", "raw_mfcc_two.1.scp", "raw_mfcc_two.2.ark",
                        "raw_mfcc_two.2.scp", "vad_two.1.ark", "vad_two.1.scp", "vad_two.2.ark",
                        "vad_two.2.scp"]  # fmt: skip
    for name in ("feats.scp", "vad.scp"):  # dithered, compressed MFCC and VAD: byte for byte
        a, b = entry_bytes(str(one / name)), entry_bytes(str(two / name))
        assert list(a) == list(b) and a == b, name
    assert (one / "utt2num_frames").read_text() == (two / "utt2num_frames").read_text()


# ----------------------------------------------------------------------------- scoring
@pytest.fixture(scope="module")
def backend_case(kaldi_fixtures, tmp_path_factory):
    bk = kaldi_fixtures / "backend"
    root = tmp_path_factory.mktemp("scores")
    for name in ("enroll_prepared_mean_adapt", "test_prepared_mean_adapt", "cohort_prepared"):
        shutil.copy(bk / f"{name}.ark.txt", root / f"{name}.txt")
    trials = [line.split()[:2] for line in (bk / "trials").read_text().splitlines() if line]
    (root / "trials").write_text("".join(f"{e} {t}\n" for e, t in trials))
    plda = [str(bk / "plda_adapt"), f"ark,t:{root}/enroll_prepared_mean_adapt.txt",
            f"ark,t:{root}/test_prepared_mean_adapt.txt"]  # fmt: skip
    return root, plda, f"--num-utts=ark:{bk}/num_utts.ark"


def _rows(scp: str) -> tuple[list[str], np.ndarray]:
    d = tables.read_dict(f"scp:{scp}", kind="vector")
    return list(d), np.stack(list(d.values()))


@pytest.fixture(scope="module")
def scored(backend_case):
    """score-matrix, dense AS-norm, trial-list AS-norm and ivector-plda-scoring, run as 1 and as 2
    processes."""
    root, plda, num_utts = backend_case
    cohort = f"ark,t:{root}/cohort_prepared.txt"
    common = ["--precision=float64", "--block-size=7", num_utts, "--print-args=false"]
    for num_processes in (1, 2):
        out = root / f"p{num_processes}"
        out.mkdir()
        runs = [
            ["score-matrix", *common, *plda, f"ark,scp:{out}/m.ark,{out}/m.scp"],
            ["score-norm", "--method=asnorm", "--top-k=20", *common, *plda, cohort,
             f"ark,scp:{out}/a.ark,{out}/a.scp"],
            ["score-norm", "--method=asnorm", "--top-k=20", *common, *plda, cohort,
             str(root / "trials"), str(out / "scores")],
            ["ivector-plda-scoring", num_utts, "--print-args=false", *plda, str(root / "trials"),
             str(out / "plda_scores")],
        ]  # fmt: skip
        for args in runs:
            _ok(xvjax(args, num_processes))
    return root, plda, num_utts, cohort


def _trial_scores(path: Path) -> tuple[list[str], np.ndarray]:
    lines = [line.split() for line in path.read_text().splitlines()]
    return [f"{e} {t}" for e, t, _ in lines], np.array([float(s) for _, _, s in lines])


@pytest.mark.slow
def test_score_matrix_and_asnorm_two_processes_as_one(scored):
    """Two processes write the tables one process writes (rows split over the processes, top-k
    cohort statistics computed sharded), within 1e-6; both equal the float64 library."""
    from xvjax.backend import scoring, snorm
    from xvjax.kaldi import plda_io

    root, plda, num_utts, cohort = scored
    one, two = root / "p1", root / "p2"
    assert sorted(os.listdir(two)) == ["a.1.ark", "a.1.scp", "a.2.ark", "a.2.scp", "a.scp",
                                       "m.1.ark", "m.1.scp", "m.2.ark", "m.2.scp", "m.scp",
                                       "plda_scores", "scores"]  # fmt: skip
    for name in ("m.scp", "a.scp"):
        keys1, rows1 = _rows(str(one / name))
        keys2, rows2 = _rows(str(two / name))
        assert keys1 == keys2
        # within 1e-6, or the float32 table's last bit (|score| ~ 30: one step is 1.9e-6), which
        # a float64 difference of 1e-15 (another order of the cohort sums) can flip
        np.testing.assert_allclose(rows2, rows1, rtol=2.4e-7, atol=1e-6, err_msg=name)
    trials1, s1 = _trial_scores(one / "scores")
    trials2, s2 = _trial_scores(two / "scores")
    assert trials1 == trials2 and len(trials1) == 1102
    # printed %.7g: within 1e-6, or one step of the 7th digit (1e-5 for |score| >= 10)
    np.testing.assert_allclose(s2, s1, rtol=1e-6, atol=1e-6)
    # and what they write is the library's float64 answer (stored as float32 / printed %.7g)
    model = plda_io.read_plda(plda[0])
    e = tables.read_dict(plda[1], kind="vector")
    t = tables.read_dict(plda[2], kind="vector")
    c = np.stack(list(tables.read_dict(cohort, kind="vector").values()))
    counts = tables.read_dict(num_utts.partition("=")[2], kind="int32")
    e_keys, t_keys = list(e), list(t)
    ev, tv = np.stack(list(e.values())), np.stack(list(t.values()))
    n = np.array([counts[k] for k in e_keys], np.float64)
    ref = scoring.score_matrix(model, ev, tv, n, dtype=np.float64)
    prep = snorm.prepare_norm(model, ev, tv, c, n, method="asnorm", top_k=20, dtype=np.float64)
    ref_norm = snorm.normalize_scores(ref, prep.enroll_stats, prep.test_stats)
    for name, want in (("m.scp", ref), ("a.scp", ref_norm)):
        keys, got = _rows(str(two / name))
        assert keys == e_keys
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-6)
    ie = [e_keys.index(p.split()[0]) for p in trials2]
    it = [t_keys.index(p.split()[1]) for p in trials2]
    np.testing.assert_allclose(s2, ref_norm[ie, it], rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- job tables
def test_job_wspecifiers_and_merged_scp():
    assert jobs.job_wspecifier("ark,scp:x.ark,x.scp", 2, 4) == "ark,scp:x.2.ark,x.2.scp"
    assert jobs.job_wspecifier("ark,scp,t:d/x.JOB.ark,d/x.JOB.scp", 3, 4) == (
        "ark,scp,t:d/x.3.ark,d/x.3.scp"
    )
    assert jobs.job_wspecifier("ark,scp:x.ark,x.scp", 1, 1) == "ark,scp:x.ark,x.scp"
    assert jobs.merged_scp("ark,scp:x.ark,x.scp", 1) is None
    assert jobs.merged_scp("ark,scp:x.ark,x.scp", 2) == "x.scp"
    assert jobs.merged_scp("ark,scp:d/x.JOB.ark,d/x.JOB.scp", 1) == "d/x.scp"
    assert jobs.job_filename("scores", 2) == "scores.2"
    with pytest.raises(XvjaxError, match="cannot write one stream"):
        jobs.job_wspecifier("ark:-", 1, 2)
    with pytest.raises(XvjaxError, match="needs an scp"):
        jobs.job_wspecifier("ark:x.ark", 1, 2)


def test_assign_by_length_balances_frames_not_counts():
    lengths = [1000, 10, 10, 10, 10, 990, 5, 5]
    owners = jobs.assign_by_length(lengths, 2)
    loads = [sum(n for n, o in zip(lengths, owners, strict=True) if o == j) for j in (0, 1)]
    assert abs(loads[0] - loads[1]) <= max(lengths)
    assert owners.count(0) != owners.count(1)  # by frames, so not 4 and 4
    assert jobs.assign_by_length(lengths, 2) == owners  # the same on every process
    assert [list(r) for r in jobs.split_ranges(5, 2)] == [[0, 1, 2], [3, 4]]


def test_table_share_splits_a_table_without_overlap(tmp_path):
    rng = np.random.default_rng(0)
    mats = {f"u{i}": rng.normal(size=(int(rng.integers(5, 60)), 3)).astype(np.float32)
            for i in range(11)}  # fmt: skip
    tables.write_dict(f"ark,scp:{tmp_path}/f.ark,{tmp_path}/f.scp", mats, compression_method=2)
    for rspec in (f"scp:{tmp_path}/f.scp", f"ark:{tmp_path}/f.ark"):
        got = {}
        for job in range(3):
            share = jobs.TableShare(rspec, job, 3)
            part = dict(share)
            assert not set(part) & set(got)
            got.update(part)
            assert share.all_keys == list(mats)
        assert sorted(got) == sorted(mats)
    want = jobs.assign_by_length([len(m) for m in mats.values()], 3)
    first = dict(jobs.TableShare(f"scp:{tmp_path}/f.scp", 0, 3))
    assert list(first) == [k for k, o in zip(mats, want, strict=True) if o == 0]


def test_cluster_options_from_the_environment(monkeypatch):
    cmd = cli.get_command("nnet3-xvector-compute")
    monkeypatch.setenv("XVJAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("XVJAX_PROCESS_ID", "2")
    opts, _ = cli.parse_args(cmd, ["--process-id=3", "m", "r", "w"])
    assert (opts.coordinator, opts.num_processes, opts.process_id) == ("", 4, 3)  # CLI wins
    assert "env XVJAX_COORDINATOR" in cli.usage_text(cmd)


def test_cluster_detection(monkeypatch):
    from xvjax import distributed

    for name in list(os.environ):
        if name.startswith(("SLURM_", "OMPI_", "TPU_")):
            monkeypatch.delenv(name)
    assert distributed.detected_cluster() is None
    slurm = dict(SLURM_JOB_ID="7", SLURM_STEP_NODELIST="n[1-2]", SLURM_NTASKS="2",
                 SLURM_PROCID="0", SLURM_LOCALID="0")  # fmt: skip
    for k, v in slurm.items():
        monkeypatch.setenv(k, v)
    assert distributed.detected_cluster() == "Slurm step with 2 tasks"
    monkeypatch.setenv("SLURM_NTASKS", "1")  # one task: a plain run
    assert distributed.detected_cluster() is None
    assert distributed.join_cluster("none") == (0, 1)
    with pytest.raises(XvjaxError, match="need a coordinator"):
        distributed.join_cluster("", 2, 1)


def test_split_data_dir_keeps_speakers_whole_and_order(tmp_path):
    from xvjax.kaldi import datadir
    from xvjax.synthetic.fake_feats import write_fake_data_dir

    src = str(tmp_path / "train")
    write_fake_data_dir(src, num_speakers=5, utts_per_speaker=3, feat_dim=4, min_frames=10,
                        max_frames=20)  # fmt: skip
    d = datadir.load_data_dir(src)
    assert cli.run(["split-data-dir", "--print-args=false", src, "3"]) == 0
    parts = [datadir.load_data_dir(f"{src}/split3/{j}") for j in (1, 2, 3)]
    assert [u for p in parts for u in p.utts] == d.utts  # contiguous, in order, nothing twice
    speakers = [set(p.spk2utt) for p in parts]
    assert not (speakers[0] & speakers[1] or speakers[1] & speakers[2])  # speakers kept whole
    assert sorted(len(p.utts) for p in parts) == [3, 6, 6]  # 5 speakers of 3 over 3 jobs
    assert all(tables.read_scp(f"{src}/split3/{j}/feats.scp") for j in (1, 2, 3))
    paths = datadir.split_data_dir(src, 4, per_utt=True)
    assert [len(datadir.load_data_dir(p).utts) for p in paths] == [4, 4, 4, 3]
    with pytest.raises(XvjaxError, match="has 5 speakers, fewer than the 6 jobs"):
        datadir.split_data_dir(src, 6)


@pytest.mark.slow
def test_ivector_plda_scoring_two_processes_as_one_and_as_kaldi(scored, kaldi_fixtures):
    """ivector-plda-scoring on two processes (trial ranges, joined in order by process 0) writes
    the lines one process writes, and Kaldi's scores for the same PLDA and vectors."""
    root = scored[0]
    trials1, s1 = _trial_scores(root / "p1" / "plda_scores")
    trials2, s2 = _trial_scores(root / "p2" / "plda_scores")
    assert (
        trials1
        == trials2
        == [" ".join(t.split()) for t in (root / "trials").read_text().splitlines()]
    )
    np.testing.assert_allclose(s2, s1, rtol=1e-6, atol=1e-6)
    kaldi_trials, kaldi = _trial_scores(kaldi_fixtures / "backend" / "scores_plda_adapt_mean_adapt")
    want = dict(zip(kaldi_trials, kaldi, strict=True))
    assert set(trials2) <= set(want)
    np.testing.assert_allclose(s2, [want[t] for t in trials2], rtol=0, atol=1e-4)
