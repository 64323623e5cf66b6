#!/usr/bin/env bash
# A small recipe written in the style of Kaldi's steps/make_mfcc.sh, sid/compute_vad_decision.sh
# and sid/nnet3/xvector/extract_xvectors.sh: the same binaries, option spellings, rspecifiers and
# pipes, jobs split run.pl-style. It calls Kaldi binary names only; `xvjax kaldi-shims` puts
# xvjax behind them (tests/test_kaldi_shims.py).
# Usage: make_feats_and_xvectors.sh <nj> <conf-dir> <data-dir> <nnet-dir> <exp-dir>
set -euo pipefail

nj=$1 conf=$2 data=$3 nnet_dir=$4 exp=$5
sdata=$data/split$nj
mkdir -p $exp/log

# run_jobs <log with JOB> <command with JOB>: one background job per JOB=1..nj (like run.pl),
# each logging to its own file; fails if any job fails.
run_jobs() {
  local log=$1 cmd=$2 pids=() failed=0
  for j in $(seq $nj); do
    ( echo "# ${cmd//JOB/$j}"; eval "${cmd//JOB/$j}" ) > "${log//JOB/$j}" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait $p || failed=$((failed + 1)); done
  if [ $failed -gt 0 ]; then echo "$0: $failed of $nj jobs failed, see $log" >&2; exit 1; fi
}

# split the data dir by speaker, round robin (as utils/split_data.sh keeps speakers whole)
for j in $(seq $nj); do
  mkdir -p $sdata/$j
  awk -v n=$nj -v j=$j '(NR - 1) % n == j - 1' $data/spk2utt > $sdata/$j/spk2utt
  awk 'NR == FNR { for (i = 2; i <= NF; i++) keep[$i] = 1; next } ($1 in keep)' \
    $sdata/$j/spk2utt $data/wav.scp > $sdata/$j/wav.scp
done

# steps/make_mfcc.sh
run_jobs $exp/log/make_mfcc.JOB.log \
  "compute-mfcc-feats --write-utt2dur=ark,t:$exp/log/utt2dur.JOB --verbose=2 \
     --config=$conf/mfcc.conf scp,p:$sdata/JOB/wav.scp ark:- | \
   copy-feats --write-num-frames=ark,t:$exp/log/utt2num_frames.JOB --compress=true ark:- \
     ark,scp:$exp/raw_mfcc.JOB.ark,$exp/raw_mfcc.JOB.scp"
cat $exp/raw_mfcc.*.scp | sort > $data/feats.scp
cat $exp/log/utt2dur.* | sort > $data/utt2dur
cat $exp/log/utt2num_frames.* | sort > $data/utt2num_frames
for j in $(seq $nj); do
  awk 'NR == FNR { keep[$1] = 1; next } ($1 in keep)' $sdata/$j/wav.scp $data/feats.scp \
    > $sdata/$j/feats.scp
done

# sid/compute_vad_decision.sh
run_jobs $exp/log/vad.JOB.log \
  "compute-vad --config=$conf/vad.conf scp:$sdata/JOB/feats.scp ark,scp:$exp/vad.JOB.ark,$exp/vad.JOB.scp"
cat $exp/vad.*.scp | sort > $data/vad.scp
for j in $(seq $nj); do
  awk 'NR == FNR { keep[$1] = 1; next } ($1 in keep)' $sdata/$j/wav.scp $data/vad.scp \
    > $sdata/$j/vad.scp
done

# sid/nnet3/xvector/extract_xvectors.sh
nnet="nnet3-copy --nnet-config=$nnet_dir/extract.config $nnet_dir/final.raw - |"
feat="ark:apply-cmvn-sliding --norm-vars=false --center=true --cmn-window=300 scp:$sdata/JOB/feats.scp ark:- | select-voiced-frames ark:- scp,s,cs:$sdata/JOB/vad.scp ark:- |"
run_jobs $exp/log/extract.JOB.log \
  "nnet3-xvector-compute --use-gpu=no --min-chunk-size=25 --chunk-size=10000 --cache-capacity=64 \
     \"$nnet\" \"$feat\" ark,scp:$exp/xvector.JOB.ark,$exp/xvector.JOB.scp"
cat $exp/xvector.*.scp | sort > $exp/xvector.scp
ivector-mean ark:$data/spk2utt scp:$exp/xvector.scp \
  ark,scp:$exp/spk_xvector.ark,$exp/spk_xvector.scp ark,t:$exp/num_utts.ark 2> $exp/log/speaker_mean.log
ivector-mean scp:$exp/xvector.scp $exp/mean.vec 2> $exp/log/mean.log
echo "$0: done, x-vectors in $exp/xvector.scp"
