"""Kaldi table and data-dir commands: copy-feats, copy-matrix, copy-vector, feat-to-dim, feat-to-len,
validate-data-dir, subset-data-dir, combine-data-dir, fix-data-dir.

Heavy imports stay inside the functions so `xvjax --help` is fast.
"""

from __future__ import annotations

import logging
import textwrap

from xvjax.cli import Opt, command
from xvjax.errors import XvjaxError
from xvjax.kaldi.shims import KALDI_BINARIES

log = logging.getLogger("xvjax")


def _tables():
    from xvjax.kaldi import tables

    return tables


def _compression(opts) -> int | None:
    if not opts.compress:
        return None
    if opts.compression_method not in range(1, 8):
        raise XvjaxError(f"--compression-method={opts.compression_method}: Kaldi accepts 1..7")
    return opts.compression_method


def _table_or_file(in_arg: str, out_arg: str, what: str) -> bool:
    """True for table mode (rspecifier -> wspecifier), False for single files; mixing is an error."""
    tables = _tables()
    in_table, out_table = tables.is_rspecifier(in_arg), tables.is_wspecifier(out_arg)
    if in_table != out_table:
        raise XvjaxError(
            f"cannot mix archives with regular files (copying {what}): '{in_arg}' -> '{out_arg}'"
        )
    return in_table


@command(
    "copy-feats",
    "Copy features [and possibly change format or compress them]",
    usage="""
    Usage: xvjax copy-feats [options] (<in-rspecifier> <out-wspecifier> | <in-rxfilename> <out-wxfilename>)
     e.g.: xvjax copy-feats ark:- ark,scp:foo.ark,foo.scp
           xvjax copy-feats --compress=true --compression-method=2 scp:feats.scp ark:feats_cm.ark
           xvjax copy-feats ark:feats.ark ark,t:-
    Compression methods (Kaldi's CompressionMethod): 1 automatic (speech-feature format if more
    than 8 rows, else two-byte), 2 speech-feature (CM), 3 two-byte auto (CM2), 4 two-byte signed
    integer, 5 one-byte auto (CM3), 6 one-byte unsigned integer, 7 one-byte zero-one.""",
    opts=[
        Opt("binary", True, "Binary-mode output (for tables ',t' in the wspecifier decides)"),
        Opt("compress", False, "If true, write output in compressed form"),
        Opt("compression-method", 1, "Compression method, 1..7 (only with --compress=true)"),
        Opt(
            "write-num-frames", "", "Wspecifier to write utt2num_frames (e.g. ark,t:utt2num_frames)"
        ),
    ],
    nargs=(2, 2),
)
def copy_feats(opts, in_arg: str, out_arg: str) -> int:
    tables = _tables()
    method = _compression(opts)
    if not _table_or_file(in_arg, out_arg, "features"):
        mat = tables.read_matrix(in_arg)
        tables.write_object(out_arg, mat, opts.binary, method)
        log.info("Copied features to %s", out_arg)
        return 0
    num_done = 0
    frames = tables.Writer(opts.write_num_frames) if opts.write_num_frames else None
    with tables.Writer(out_arg, compression_method=method) as writer:
        if frames is not None:
            frames.open()
        try:
            for key, mat in tables.read(in_arg, kind="matrix"):
                writer[key] = mat.astype("float32", copy=False)
                if frames is not None:
                    frames[key] = int(mat.shape[0])
                num_done += 1
        except BaseException:
            if frames is not None:
                frames.abort()
            raise
        if frames is not None:
            frames.close()
    log.info("Copied %d feature matrices.", num_done)
    return 0 if num_done else 1


def _transform_matrix(mat, opts):
    import numpy as np

    mat = mat.astype(np.float32, copy=True)
    if opts.scale != 1.0:  # Kaldi's order: scale, log, exp, softmax, power
        mat *= np.float32(opts.scale)
    if opts.apply_log:
        mat = np.log(np.maximum(mat, np.float32(1.0e-20)))
    if opts.apply_exp:
        mat = np.exp(mat)
    if opts.apply_softmax_per_row:
        mat = np.exp(mat - mat.max(axis=1, keepdims=True))
        mat /= mat.sum(axis=1, keepdims=True)
    if opts.apply_power != 1.0:
        mat = np.power(mat, np.float32(opts.apply_power))
    return mat


@command(
    "copy-matrix",
    "Copy matrices, or archives of matrices (e.g. features or transforms)",
    usage="""
    Usage: xvjax copy-matrix [options] (<matrix-in-rspecifier>|<matrix-in-rxfilename>) (<matrix-out-wspecifier>|<matrix-out-wxfilename>)
     e.g.: xvjax copy-matrix --binary=false transform.mat -
           xvjax copy-matrix ark:2.trans ark,t:-""",
    opts=[
        Opt("binary", True, "Write in binary mode (only relevant if output is a wxfilename)"),
        Opt("scale", 1.0, "This option can be used to scale the matrices being copied"),
        Opt("apply-log", False, "This option can be used to apply log on the matrices (floored)"),
        Opt("apply-exp", False, "This option can be used to apply exp on the matrices"),
        Opt("apply-softmax-per-row", False, "Apply softmax to each row of the matrices"),
        Opt("apply-power", 1.0, "Raise the elements of the matrices to this power"),
    ],
    nargs=(2, 2),
)
def copy_matrix(opts, in_arg: str, out_arg: str) -> int:
    tables = _tables()
    changes = opts.apply_log or opts.apply_exp or opts.apply_softmax_per_row
    changes = changes or opts.apply_power != 1.0 or opts.scale != 1.0
    if not _table_or_file(in_arg, out_arg, "matrices"):
        mat = tables.read_matrix(in_arg)
        tables.write_object(out_arg, _transform_matrix(mat, opts) if changes else mat, opts.binary)
        log.info("Copied matrix to %s", out_arg)
        return 0
    num_done = 0
    with tables.Writer(out_arg) as writer:
        for key, mat in tables.read(in_arg, kind="matrix"):
            writer[key] = (
                _transform_matrix(mat, opts) if changes else mat.astype("float32", copy=False)
            )
            num_done += 1
    log.info("Copied %d matrices.", num_done)
    return 0 if num_done else 1


def _change_dim(vec, dim: int):
    import numpy as np

    if dim < 0:
        return vec
    out = np.zeros(dim, dtype=vec.dtype)
    n = min(dim, vec.shape[0])
    out[:n] = vec[:n]
    return out


@command(
    "copy-vector",
    "Copy vectors, or archives of vectors (e.g. x-vectors, mean.vec)",
    usage="""
    Usage: xvjax copy-vector [options] (<vector-in-rspecifier>|<vector-in-rxfilename>) (<vector-out-wspecifier>|<vector-out-wxfilename>)
     e.g.: xvjax copy-vector --binary=false mean.vec -
           xvjax copy-vector ark:xvector.ark ark,t:-""",
    opts=[
        Opt("binary", True, "Write in binary mode (only relevant if output is a wxfilename)"),
        Opt("change-dim", -1, "Use this option to truncate or zero-pad the vectors"),
    ],
    nargs=(2, 2),
)
def copy_vector(opts, in_arg: str, out_arg: str) -> int:
    tables = _tables()
    if not _table_or_file(in_arg, out_arg, "vectors"):
        vec = tables.read_vector(in_arg)
        tables.write_object(
            out_arg, _change_dim(vec.astype("float32", copy=False), opts.change_dim), opts.binary
        )
        log.info("Copied vector to %s", out_arg)
        return 0
    num_done = 0
    with tables.Writer(out_arg) as writer:
        for key, vec in tables.read(in_arg, kind="vector"):
            writer[key] = _change_dim(vec.astype("float32", copy=False), opts.change_dim)
            num_done += 1
    suffix = f", setting dim to {opts.change_dim}" if opts.change_dim >= 0 else ""
    log.info("Copied %d vectors%s.", num_done, suffix)
    return 0 if num_done else 1


def _print_to(wxfilename: str, text: str) -> None:
    from xvjax.kaldi import streams

    streams.write_all(wxfilename, text.encode())


@command(
    "feat-to-dim",
    "Read features and write out their dimension (of the first utterance, or per utterance)",
    usage="""
    Usage: xvjax feat-to-dim [options] (<feat-rspecifier>|<feat-rxfilename>) (<dim-wspecifier>|<dim-wxfilename>)
     e.g.: xvjax feat-to-dim scp:feats.scp -
           xvjax feat-to-dim scp:feats.scp ark,t:feats_dims""",
    nargs=(1, 2),
)
def feat_to_dim(opts, in_arg: str, out_arg: str = "-") -> int:
    tables = _tables()
    if tables.is_rspecifier(in_arg):
        if tables.is_wspecifier(out_arg):
            with tables.Writer(out_arg) as writer:
                for key, mat in tables.read(in_arg, kind="matrix"):
                    writer[key] = int(mat.shape[1])
            return 0
        for _, mat in tables.read(in_arg, kind="matrix"):
            _print_to(out_arg, f"{mat.shape[1]}\n")
            return 0
        raise XvjaxError(f"no features in '{in_arg}'")
    _print_to(out_arg, f"{tables.read_matrix(in_arg).shape[1]}\n")
    return 0


@command(
    "feat-to-len",
    "Write the number of frames of each utterance (or of one matrix file)",
    usage="""
    Usage: xvjax feat-to-len [options] <in-rspecifier> <out-wspecifier>
       or: xvjax feat-to-len [options] <in-rxfilename>
     e.g.: xvjax feat-to-len scp:feats.scp ark,t:utt2num_frames
           xvjax feat-to-len foo.mat""",
    nargs=(1, 2),
)
def feat_to_len(opts, in_arg: str, out_arg: str | None = None) -> int:
    tables = _tables()
    if out_arg is None:
        if tables.is_rspecifier(in_arg):
            raise XvjaxError("with one argument feat-to-len takes a matrix rxfilename, not a table")
        print(tables.read_matrix(in_arg).shape[0])
        return 0
    if not tables.is_rspecifier(in_arg):
        raise XvjaxError(
            f"'{in_arg}' is not an rspecifier (with two arguments: <in-rspecifier> <out-wspecifier>)"
        )
    num_done = 0
    with tables.Writer(out_arg) as writer:
        for key, mat in tables.read(in_arg, kind="matrix"):
            writer[key] = int(mat.shape[0])
            num_done += 1
    log.info("Wrote the lengths of %d utterances.", num_done)
    return 0


# ------------------------------------------------------------------------------ data dirs


@command(
    "validate-data-dir",
    "Check a Kaldi data directory (sorted files, consistent ids, existing files)",
    usage="""
    Usage: xvjax validate-data-dir [options] <data-dir>
     e.g.: xvjax validate-data-dir --no-feats data/train
    Like utils/validate_data_dir.sh; prints every problem found, exits 1 if any.""",
    opts=[
        Opt("no-feats", False, "Do not require feats.scp"),
        Opt("no-wav", False, "Do not require wav.scp"),
        Opt("check-files", True, "Check that wav files and feature archives exist"),
    ],
    nargs=(1, 1),
)
def validate_data_dir_cmd(opts, data: str) -> int:
    from xvjax.kaldi import datadir

    problems = datadir.check_data_dir(
        data, check_files=opts.check_files, need_feats=not opts.no_feats, need_wav=not opts.no_wav
    )
    for p in problems[1:]:
        log.error("%s", p)
    if problems:
        raise XvjaxError(
            problems[0] + (f" ({len(problems)} problems)" if len(problems) > 1 else "")
        )
    d = datadir.load_data_dir(data, validate=False)
    log.info(
        "Successfully validated data-directory %s (%d utterances, %d speakers)",
        data,
        len(d.utt2spk),
        len(d.spk2utt),
    )
    return 0


def _read_list(path: str) -> list[str]:
    from xvjax.kaldi import text_tables

    out = []
    for _, line in text_tables.text_lines(path):
        fields = line.split()
        if fields:
            out.append(fields[0])
    return out


@command(
    "subset-data-dir",
    "Make a subset of a data directory (by utterances, speakers, first/last N or N evenly spaced)",
    usage="""
    Usage: xvjax subset-data-dir [options] <src-dir> [<num-utts>] <dest-dir>
     e.g.: xvjax subset-data-dir data/train 1000 data/train_1k
           xvjax subset-data-dir --spk-list=spks data/train data/train_sub
           xvjax subset-data-dir --first=100 data/train data/train_first100""",
    opts=[
        Opt("utt-list", "", "File whose first column lists the utterances to keep"),
        Opt("spk-list", "", "File whose first column lists the speakers to keep"),
        Opt("first", -1, "Keep the first N utterances"),
        Opt("last", -1, "Keep the last N utterances"),
    ],
    nargs=(2, 3),
)
def subset_data_dir_cmd(opts, src: str, *rest: str) -> int:
    from xvjax.kaldi import datadir

    kwargs: dict = {}
    if len(rest) == 2:
        try:
            kwargs["num_utts"] = int(rest[0])
        except ValueError:
            raise XvjaxError(f"<num-utts> must be an integer, got '{rest[0]}'") from None
    dest = rest[-1]
    if opts.utt_list:
        kwargs["utts"] = _read_list(opts.utt_list)
    if opts.spk_list:
        kwargs["speakers"] = _read_list(opts.spk_list)
    if opts.first >= 0:
        kwargs["first"] = opts.first
    if opts.last >= 0:
        kwargs["last"] = opts.last
    datadir.subset_data_dir(src, dest, **kwargs)
    return 0


@command(
    "combine-data-dir",
    "Combine several data directories into one",
    usage="""
    Usage: xvjax combine-data-dir <dest-dir> <src-dir1> <src-dir2> ...
     e.g.: xvjax combine-data-dir data/train_combined data/train data/train_aug""",
    nargs=(2, None),
)
def combine_data_dir_cmd(opts, dest: str, *srcs: str) -> int:
    from xvjax.kaldi import datadir

    datadir.combine_data_dirs(dest, list(srcs))
    return 0


@command(
    "fix-data-dir",
    "Sort a data directory and keep only utterances present in all its files",
    usage="""
    Usage: xvjax fix-data-dir <data-dir>
     e.g.: xvjax fix-data-dir data/train
    Like utils/fix_data_dir.sh; the original files are kept in <data-dir>/.backup.""",
    nargs=(1, 1),
)
def fix_data_dir_cmd(opts, data: str) -> int:
    from xvjax.kaldi import datadir

    datadir.fix_data_dir(data)
    return 0


@command(
    "copy-int-vector",
    "Copy vectors of integers, or archives of vectors of integers (e.g. alignments)",
    usage="""
    Usage: xvjax copy-int-vector [options] (<vector-in-rspecifier>|<vector-in-rxfilename>) (<vector-out-wspecifier>|<vector-out-wxfilename>)
     e.g.: xvjax copy-int-vector --binary=false foo -
           xvjax copy-int-vector ark:1.ali ark,t:-""",
    opts=[Opt("binary", True, "Write in binary mode (only relevant if output is a wxfilename)")],
    nargs=(2, 2),
)
def copy_int_vector(opts, in_arg: str, out_arg: str) -> int:
    tables = _tables()
    if not _table_or_file(in_arg, out_arg, "vectors"):
        vec = tables.read_object(in_arg, "int32_vector")
        tables.write_object(out_arg, vec.astype("int32"), opts.binary)
        log.info("Copied vector to %s", out_arg)
        return 0
    num_done = 0
    with tables.Writer(out_arg) as writer:
        for key, vec in tables.read(in_arg, kind="int32_vector"):
            writer[key] = vec.astype("int32", copy=False)
            num_done += 1
    log.info("Copied %d vectors of int32.", num_done)
    return 0 if num_done else 1


@command(
    "wav-copy",
    "Copy wave file or archives of wave files",
    usage="""
    Usage: xvjax wav-copy [options] <wav-rspecifier> <wav-wspecifier>
      or:  xvjax wav-copy [options] <wav-rxfilename> <wav-wxfilename>
     e.g.: xvjax wav-copy scp:wav.scp ark:-
           xvjax wav-copy wav.ark:123456 -
    Waves are 16-bit PCM (Kaldi's WaveData); written samples are truncated to int16.""",
    nargs=(2, 2),
)
def wav_copy(opts, in_arg: str, out_arg: str) -> int:
    from xvjax.kaldi.audio import WAVE_CODEC

    tables = _tables()
    if not _table_or_file(in_arg, out_arg, "waves"):
        tables.write_object(out_arg, tables.read_object(in_arg, WAVE_CODEC), codec=WAVE_CODEC)
        return 0
    num_done = 0
    with tables.Writer(out_arg, codec=WAVE_CODEC) as writer:
        for key, wave in tables.read(in_arg, kind=WAVE_CODEC):
            writer[key] = wave
            num_done += 1
    log.info("Copied %d wave files", num_done)
    return 0 if num_done else 1


@command(
    "wav-to-duration",
    "Read wav files and output an archive of their durations in seconds",
    usage="""
    Read wav files and output an archive consisting of a single float: the duration of each one
    in seconds.
    Usage: xvjax wav-to-duration [options...] <wav-rspecifier> <duration-wspecifier>
     e.g.: xvjax wav-to-duration scp:wav.scp ark,t:-
    Only the headers are read unless --read-entire-file=true (needed for streamed WAVs whose
    header has no length, e.g. from a 'sox ... - |' pipe).""",
    opts=[
        Opt("read-entire-file", False, "If true, read the samples, not only the header, to "
            "ensure the returned duration is correct"),
    ],
    nargs=(2, 2),
)  # fmt: skip
def wav_to_duration(opts, wav_rspec: str, dur_wspec: str) -> int:
    import numpy as np

    from xvjax.kaldi.audio import WAVE_CODEC, WAVE_INFO_CODEC

    tables = _tables()
    durations = []
    codec = WAVE_CODEC if opts.read_entire_file else WAVE_INFO_CODEC
    with tables.Writer(dur_wspec) as writer:
        for key, wave in tables.read(wav_rspec, kind=codec):
            if not opts.read_entire_file and wave.num_samples < 0:
                raise XvjaxError(
                    f"member {key} has no duration in header. Check the source, and/or try "
                    "--read-entire-file=true"
                )
            writer[key] = np.float32(wave.duration)
            durations.append(float(np.float32(wave.duration)))
    log.info("Printed duration for %d audio files.", len(durations))
    if durations:
        log.info("Mean duration was %g, min and max durations were %g, %g",
                 sum(durations) / len(durations), min(durations), max(durations))  # fmt: skip
    return 0 if durations else 1


@command(
    "extract-segments",
    "Extract segments from a large audio file in WAV format",
    usage="""
    Usage: xvjax extract-segments [options] <wav-rspecifier> <segments-file> <wav-wspecifier>
     e.g.: xvjax extract-segments scp:wav.scp segments ark:- | <some-other-program>
    segments-file format: each line is either
      <segment-id> <recording-id> <start-time> <end-time>
      e.g. call-861225-A-0050-0065 call-861225-A 5.0 6.5
    or <segment-id> <wav-file-name> <start-time> <end-time> <channel>
    where <channel> will normally be 0 (left) or 1 (right); <end-time> of -1 means the segment
    runs till the end of the WAV file. Bad lines are warned about and skipped, as in Kaldi.""",
    opts=[
        Opt("min-segment-length", 0.1, "Minimum segment length in seconds (reject shorter "
            "segments)"),
        Opt("max-overshoot", 0.5, "End segments overshooting audio by less than this (in "
            "seconds) are truncated, else rejected"),
    ],
    nargs=(3, 3),
)  # fmt: skip
def extract_segments(opts, wav_rspec: str, segments: str, wav_wspec: str) -> int:
    from xvjax.kaldi import text_tables
    from xvjax.kaldi.audio import WAVE_CODEC, Wave, segment_bounds

    tables = _tables()
    reader = tables.RandomAccess(wav_rspec, kind=WAVE_CODEC)
    num_lines = num_success = 0
    with tables.Writer(wav_wspec, codec=WAVE_CODEC) as writer:
        for _, line in text_tables.rx_lines(segments):
            num_lines += 1
            fields = line.split()
            if len(fields) not in (4, 5):
                log.warning("Invalid line in segments file: %s", line.rstrip())
                continue
            segment, recording = fields[0], fields[1]
            try:
                start, end = float(fields[2]), float(fields[3])
                channel = int(fields[4]) if len(fields) == 5 else -1
            except ValueError:
                log.warning("Invalid line in segments file [bad number]: %s", line.rstrip())
                continue
            if len(fields) == 5 and channel < 0:
                log.warning("Invalid line in segments file [bad channel]: %s", line.rstrip())
                continue
            if recording not in reader:
                log.warning("Could not find recording %s, skipping segment %s", recording,
                            segment)  # fmt: skip
                continue
            wave = reader[recording]
            try:
                first, last = segment_bounds(start, end, wave.rate, wave.data.shape[1],
                                             opts.max_overshoot, opts.min_segment_length)  # fmt: skip
            except XvjaxError as e:
                log.warning("%s; skipping segment '%s'", e, line.rstrip())
                continue
            if channel == -1:
                if wave.data.shape[0] != 1:
                    raise XvjaxError(
                        f"your data has multiple channels; you must specify the channel in the "
                        f"segments file (segment {segment})"
                    )
                channel = 0
            elif channel >= wave.data.shape[0]:
                log.warning("Invalid channel %d >= %d. Skipping segment %s", channel,
                            wave.data.shape[0], segment)  # fmt: skip
                continue
            writer[segment] = Wave(wave.data[channel : channel + 1, first:last], wave.rate)
            num_success += 1
    log.info("Successfully processed %d lines out of %d in the segments file. ", num_success,
             num_lines)  # fmt: skip
    return 0


@command(
    "kaldi-shims",
    "Write one executable per Kaldi binary xvjax implements, to put first on PATH",
    usage="""
    Usage: xvjax kaldi-shims [options] <shim-dir>
     e.g.: xvjax kaldi-shims exp/xvjax_bin && export PATH=$PWD/exp/xvjax_bin:$PATH
    Each shim runs 'python -m xvjax.cli <name> "$@"', so Kaldi's own scripts
    (steps/make_mfcc.sh, sid/nnet3/xvector/extract_xvectors.sh, ...) run unmodified on xvjax.
    Shims: """
    + textwrap.fill(
        ", ".join(KALDI_BINARIES), 96, subsequent_indent="    ", break_on_hyphens=False
    ),
    opts=[Opt("python", "", "Python interpreter the shims run (default: this one)")],
    nargs=(1, 1),
)
def kaldi_shims(opts, shim_dir: str) -> int:
    from xvjax.kaldi.shims import write_shims

    written = write_shims(shim_dir, opts.python or None)
    log.info("Wrote %d shims to %s", len(written), shim_dir)
    return 0
