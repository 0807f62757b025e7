#!/usr/bin/env bash
# Everything one short GPU lease can do for the shipped checkpoints, in one time-boxed call:
# the GPU speed figures, the CUDA tests, PGD-AT / ALP / TRADES on MNIST, and the evaluations a
# CPU cannot afford (AutoAttack, DeepFool and C&W at the paper's iterations).
#
#   BUDGET=560 TRAIN_UNTIL=380 RESULTS=$OUT bash scripts/gpu_lease.sh
#
# This is not the full-length recipe (that is `DEVICE=cuda scripts/train_checkpoints.sh
# adversarial`, hours on one GPU). Within the lease:
# - PGD-AT and ALP train with their paper's recipe (Madry et al.: Adam 1e-4, batch 50, no
#   schedule) planned for its 84 epochs, and are stopped at TRAIN_UNTIL seconds. With a constant
#   learning rate the first k epochs of that run *are* a k-epoch run, so the run is closed at
#   the k epochs it finished (--resume --epochs k) and named for its length: mnist-pgd_at-<k>ep.
#   Its resume.pt continues it towards 84 epochs with the same command and a larger --epochs.
# - TRADES has a schedule (x0.1 at 55/75/90% of the run), so a cut run is not a shorter run: it
#   trains a planned 30 epochs (the shortest run the checkpoint issue ships) as trades-30ep,
#   and a run that does not finish in time is brought back as interrupted and not evaluated.
# - Evaluations run in parallel lanes until BUDGET; whatever finished comes back.
# (BENCH=0 skips the speed figures and LIMIT_TRAIN=N trains on N images: a dry run's knobs.)
# Results: $RESULTS/lease-train.tar.gz (the run folders, packed as soon as training ends),
# $RESULTS/lease-evals.tar.gz (every eval JSON written), $RESULTS/bench*.txt|json,
# $RESULTS/logs.tar.gz and $RESULTS/lease.log. Unpack the tars in the repository root.
# A run continues from its folder's resume.pt where one travels (name it in the call's carry,
# e.g. checkpoints/mnist-pgd_at/resume.pt): the lease of 2026-11-26 got PGD-AT and ALP to 8
# epochs (ALP's resume state is kept in docs/pilots/gpu-lease-2026-11-26/alp-resume/), and
# PGD-AT went on from there on the CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=${BUDGET:-560}
TRAIN_UNTIL=${TRAIN_UNTIL:-380}
RESULTS=${RESULTS:-${OUT:-/tmp/gpu-lease}}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
CK=checkpoints
T0=$(date +%s)
mkdir -p "$RESULTS" /tmp/lease-logs
exec 3>&1 > "$RESULTS/lease.log" 2>&1   # the log comes back as a file; fd 3 is the terminal
el() { echo $(( $(date +%s) - T0 )); }
say() { echo "[$(el)s] $*"; }
left() { echo $(( BUDGET - $(el) )); }
export PYTHONUNBUFFERED=1 PPCORE_DATA=${PPCORE_DATA:-$PWD/.data}
# several processes share the CPU cores: a few threads each, not all of them each
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
NOTE="GPU lease ($(date -u +%Y-%m-%d)), scripts/gpu_lease.sh"

pack() {
  say "packing"
  local paths=()
  for f in "$CK"/*/eval/*.json; do
    [[ $f -nt "$T0_FILE" ]] && paths+=("$f")
  done
  (( ${#paths[@]} )) && tar czf "$RESULTS/lease-evals.tar.gz" "${paths[@]}" 2>/dev/null
  tar czf "$RESULTS/logs.tar.gz" -C /tmp lease-logs 2>/dev/null
  say "done"
  cat "$RESULTS/lease.log" >&3
}
T0_FILE=$(mktemp); touch "$T0_FILE"
trap pack EXIT
trap 'exit 143' TERM INT

# -- set-up: torchattacks (AutoAttack) from a carried wheel; the idx files from the .gz -----
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
for f in "$PPCORE_DATA"/*/raw/*.gz; do [[ -f ${f%.gz} ]] || gunzip -kf "$f"; done
nvidia-smi -L; $PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

# -- the GPU speed figures, alone on the GPU ------------------------------------------------
if [[ ${BENCH:-1} == 1 ]]; then
say "bench (graphs on)"
timeout 60 $PY bench/bench_train.py --device "$DEVICE" --limit-train 3000 --repeats 2 \
  --precisions bf16 --methods normal proposed fgsm_at pgd_at alp trades \
  --json "$RESULTS/bench.json" > "$RESULTS/bench.txt" 2>&1
say "bench (graphs off)"
timeout 30 $PY bench/bench_train.py --device "$DEVICE" --limit-train 3000 --repeats 2 \
  --precisions bf16 --methods normal pgd_at --no-cuda-graphs \
  --json "$RESULTS/bench-eager.json" > "$RESULTS/bench-eager.txt" 2>&1
cat "$RESULTS/bench.txt" "$RESULTS/bench-eager.txt"
fi

# -- training, three runs side by side, and the CUDA tests beside them ---------------------
tr() {  # tr LOG ARGS...: becomes the trainer (so that a signal to it reaches the trainer)
  exec $PY -m ppcore train --dataset mnist --device "$DEVICE" --metrics-every 50 --no-progress \
    --note "$NOTE" ${LIMIT_TRAIN:+--limit-train "$LIMIT_TRAIN"} "${@:2}" >> "/tmp/lease-logs/$1.log" 2>&1
}
lane() {  # lane DIR LOG ARGS...: train into DIR until TRAIN_UNTIL (then SIGTERM: it saves and
  # stops), continuing DIR's resume.pt where there is one (carry it: a run goes on across
  # leases and the CPU); a run that fails with CUDA graphs goes on without them
  local dir=$1 logf=$2 extra=(--resume); shift 2
  if grep -qs '"status": "complete"' "$dir/model.json"; then say "$dir is complete"; return 0; fi
  for attempt in 1 2; do
    (( TRAIN_UNTIL - $(el) > 20 )) || return 0
    timeout -s TERM $(( TRAIN_UNTIL - $(el) )) bash -c 'tr "$@"' _ "$logf" --out "$dir" "$@" \
      "${extra[@]}"
    grep -qs '"status": "failed"' "$dir/status.json" || return 0
    say "$dir failed: $(grep -o '"error": "[^"]*"' "$dir/status.json"); on without CUDA graphs"
    extra=(--resume --no-cuda-graphs)
  done
}
export -f tr; export PY DEVICE NOTE LIMIT_TRAIN=${LIMIT_TRAIN:-}
say "training"
lane "$CK/mnist-pgd_at" train-pgd_at --method pgd_at --epochs 84 & P1=$!
lane "$CK/mnist-alp" train-alp --method alp --epochs 84 & P2=$!
lane "$CK/mnist-trades-30ep" train-trades --method trades --epochs 30 --name trades-30ep & P3=$!
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_cuda_graphs.py \
  > /tmp/lease-logs/tests-cuda.log 2>&1 & PT=$!
wait $P1 $P2 $P3
say "training over"
for m in pgd_at alp trades; do tail -n 3 /tmp/lease-logs/train-$m.log; done

# close a cut constant-rate run at the epochs it finished, under a name that says so
close() {  # close METHOD
  local dir=$CK/mnist-$1
  [[ -f $dir/status.json ]] || return 0
  grep -q '"status": "complete"' "$dir/status.json" && return 0
  local k
  k=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['epoch'])" "$dir/status.json")
  (( k >= 1 )) || return 0
  mv "$dir" "$dir-${k}ep"
  (tr "close-$1" --method "$1" --epochs "$k" --name "$1-${k}ep" --resume --out "$dir-${k}ep")
  say "closed mnist-$1 at $k epochs: $(grep -o '"status": "[a-z]*"' "$dir-${k}ep/status.json")"
}
close pgd_at; close alp
# the runs come back first, in their own archive: a transfer cut short later loses evaluations,
# not training
tar czf "$RESULTS/lease-train.tar.gz" "$CK"/mnist-pgd_at* "$CK"/mnist-alp* "$CK"/mnist-trades* \
  2>/dev/null

# -- evaluations in parallel lanes until the budget ----------------------------------------
ev() {  # ev RUN SUITE LIMIT [extra...]
  local name=$1 run=$CK/$1 suite=$2 limit=$3; shift 3
  grep -qs '"status": "complete"' "$run/model.json" || return 0
  (( $(left) > 15 )) || return 0
  mkdir -p "$run/eval"
  say "eval $name $suite ${limit:+(n=$limit)}"
  timeout $(( $(left) - 10 )) $PY -m ppcore eval --checkpoint "$run" --suite "$suite" \
    ${limit:+--limit "$limit"} --device "$DEVICE" --no-progress --json "$run/eval/$suite.json" \
    "$@" > "/tmp/lease-logs/eval-$name-$suite.log" 2>&1 || say "!! $name $suite did not finish"
}
new() { for d in "$CK"/mnist-"$1"*; do [[ -d $d ]] && echo "${d##*/}"; done; }
PGD=$(new pgd_at | head -1); ALP=$(new alp | head -1); TRD=$(new trades | head -1)
wait $PT; say "CUDA tests: $(tail -n 1 /tmp/lease-logs/tests-cuda.log)"
( for r in $PGD $ALP $TRD; do ev "$r" whitebox ""; done
  for r in $PGD $ALP $TRD; do ev "$r" autoattack 1000; done
  for r in $PGD; do ev "$r" sanity ""; ev "$r" spatial ""; done ) & L1=$!
( for r in mnist-proposed mnist-proposed-seed1 mnist-proposed-seed2 fashion-mnist-proposed \
           mnist-ablation2; do ev "$r" autoattack 1000; done ) & L2=$!
( for r in $PGD mnist-proposed mnist-normal mnist-fgsm_at; do ev "$r" unbounded 500; done ) & L3=$!
( for r in mnist-normal mnist-proposed mnist-fgsm_at fashion-mnist-normal \
           fashion-mnist-proposed; do ev "$r" sanity ""; done ) & L4=$!
wait $L1 $L2 $L3 $L4
say "evaluations over"
