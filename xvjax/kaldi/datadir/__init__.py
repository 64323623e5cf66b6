"""Kaldi data directories (`data/train/`): load, validate, write, subset, combine and fix.

Files (all `key value` text, sorted by key in C-locale byte order, as Kaldi's utils/ expect):

  utt2spk         utt spk                  (required)
  spk2utt         spk utt1 utt2 ...        (derived from utt2spk; checked for consistency)
  wav.scp         rec extended-filename    (rec = utt unless `segments` exists)
  segments        utt rec start end [ch]   (seconds; end -1 = to the end)
  feats.scp       utt ark-offset           (vad.scp likewise)
  utt2num_frames  utt num_frames
  utt2dur         utt seconds
  spk2gender      spk m|f                  (kept when subsetting/combining)

    d = load_data_dir("data/train")               # validates like utils/validate_data_dir.sh
    for utt, samples, sr in d.iter_audio(): ...   # int16-scale float32, segments cut
    write_data_dir("data/new", utt2spk=..., wav_scp=...)
    subset_data_dir("data/train", "data/sub", speakers=[...])
    combine_data_dirs("data/all", ["data/a", "data/b"])
    fix_data_dir("data/train")                    # like utils/fix_data_dir.sh

Relative paths inside wav.scp/feats.scp are relative to the working directory, as in Kaldi.

Modules: `files` (key order, segments lines, spk2utt from utt2spk), `validation` (the checks of
utils/validate_data_dir.sh), `record` (the loaded `DataDir`, load and write), `edits` (subset,
combine, fix). Import the names below from the package.
"""

from xvjax.kaldi.datadir.edits import combine_data_dirs, fix_data_dir, subset_data_dir
from xvjax.kaldi.datadir.files import Segment, utt2spk_to_spk2utt
from xvjax.kaldi.datadir.record import DataDir, load_data_dir, write_data_dir
from xvjax.kaldi.datadir.validation import check_data_dir, validate_data_dir

__all__ = [
    "DataDir",
    "Segment",
    "load_data_dir",
    "write_data_dir",
    "utt2spk_to_spk2utt",
    "check_data_dir",
    "validate_data_dir",
    "subset_data_dir",
    "combine_data_dirs",
    "fix_data_dir",
]
