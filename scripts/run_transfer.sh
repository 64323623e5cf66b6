#!/usr/bin/env bash
# The x-vector transfer recipe (`xvjax demo`) on your own Kaldi data dirs, Kaldi sre16/v2 style.
#
#   scripts/run_transfer.sh [--stage N] [--workdir exp/transfer] \
#     --src-data data/swbd_sre [--src-enroll data/swbd_eval_enroll --src-test data/swbd_eval_test \
#     --src-trials data/swbd_eval_test/trials] \
#     --tgt-train data/sre16_train --tgt-adapt data/sre16_major \
#     --tgt-enroll data/sre16_eval_enroll --tgt-test data/sre16_eval_test \
#     --trials data/sre16_eval_test/trials \
#     [--tgt-dev-enroll data/sre16_dev_enroll --tgt-dev-test data/sre16_dev_test \
#      --dev-trials data/sre16_dev_test/trials] \
#     [--pretrained exp/xvector_nnet_1a/final.raw --plda exp/xvectors_swbd_sre/plda \
#      --mean exp/xvectors_swbd_sre/mean.vec --lda exp/xvectors_swbd_sre/transform.mat] \
#     [--musan musan --rirs RIRS_NOISES] [--sample-rate 8000 --mfcc-config conf/mfcc_8k.conf]
#
# Every option of `xvjax demo` works here, as --name=value or --name value (`xvjax demo --help`
# lists them all, e.g. --seeds N to rerun the trained rows with N seeds).
# --src-*: source-domain data (the source model and backend are trained on --src-data; the
# optional --src-enroll/--src-test/--src-trials give a source-domain reference EER).
# --tgt-dev-*: the in-domain dev set on which every choice is made; without it, --dev-speakers
# speakers of --tgt-train are held out as the dev set. The evaluation trials (--trials) are scored
# once per row and never used to choose.
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

for arg in "$@"; do
  case "$arg" in
    -h|--help)
      # the usage is the comment block at the top
      awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
      exit 0 ;;
  esac
done
workdir=(--workdir=exp/transfer)
for arg in "$@"; do
  case "$arg" in --workdir|--workdir=*) workdir=() ;; esac
done
exec "$xvjax" demo ${workdir[@]+"${workdir[@]}"} "$@"
