#!/usr/bin/env bash
# The x-vector transfer recipe (xvjax demo) on your own Kaldi data dirs, Kaldi sre16/v2 style.
#
#   scripts/run_transfer.sh [--stage N] [--workdir exp/transfer] \
#     --src-data data/swbd_sre --tgt-train data/sre16_train --tgt-adapt data/sre16_major \
#     --tgt-enroll data/sre16_eval_enroll --tgt-test data/sre16_eval_test \
#     --trials data/sre16_eval_test/trials \
#     [--pretrained exp/xvector_nnet_1a/final.raw --plda exp/xvectors_swbd_sre/plda \
#      --mean exp/xvectors_swbd_sre/mean.vec --lda exp/xvectors_swbd_sre/transform.mat] \
#     [--musan musan --rirs RIRS_NOISES] [any other `xvjax demo` option, e.g. --sample-rate=8000
#      --mfcc-config=conf/mfcc.conf]
#
# With no data options it runs the built-in demo corpus (same as `make demo`). With --pretrained/
# --plda/--mean/--lda the recipe uses your Kaldi model and backend as the out-of-domain baseline.
# Stages: 0 data, 1 features, 2 source model, 3 x-vectors, 4 backends, 5 fine-tuning, 6 results;
# a rerun resumes, --stage N re-runs from stage N. Results: <workdir>/results/.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
xvjax=${XVJAX:-}
if [ -z "$xvjax" ]; then
  if [ -x "$here/.venv/bin/xvjax" ]; then xvjax="$here/.venv/bin/xvjax"; else xvjax=xvjax; fi
fi

stage=-1
workdir=exp/transfer
args=()
# The usage is the comment block at the top (up to the first line that is not a comment).
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage 0 ;;
    --stage|--workdir|--src-data|--tgt-train|--tgt-adapt|--tgt-enroll|--tgt-test|--trials|\
    --pretrained|--plda|--mean|--lda|--musan|--rirs)
      [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 1; }
      name=${1#--}; value=$2; shift 2
      case "$name" in
        stage) stage=$value ;;
        workdir) workdir=$value ;;
        *) args+=("--$name=$value") ;;
      esac ;;
    --stage=*) stage=${1#*=}; shift ;;
    --workdir=*) workdir=${1#*=}; shift ;;
    --*) args+=("$1"); shift ;;
    *) echo "$0: unexpected argument '$1'" >&2; usage 1 ;;
  esac
done

exec "$xvjax" demo --workdir="$workdir" --stage="$stage" ${args[@]+"${args[@]}"}
