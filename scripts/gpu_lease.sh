#!/usr/bin/env bash
# What one short GPU lease does for the checkpoints that are still training, in one time-boxed
# call, and the two steps around it on this machine.
#
# State (2026-12-05 06:23): every run this lease was written for is complete, on CPUs: MNIST
# PGD-AT, ALP and TRADES (100 epochs), and Fashion-MNIST PGD-AT (Madry et al.'s recipe, 84
# epochs, about 215 s an epoch on the Intel Xeon with AMX). With the default RUNS a lease
# therefore trains nothing and goes on to the CUDA tests (and BENCH=1's speed figures); name a
# new run in RUNS to train it. A lease trains the RUNS not yet complete side by side with the
# CUDA tests until TRAIN_UNTIL, then SIGTERM: each saves its resume.pt at the last finished
# epoch and the run folders come back. The CPU or the next lease goes on with --resume
# (scripts/train_checkpoints.sh adversarial). On an H200 TRADES took about 9.4 s an epoch alone
# and 18.5 s beside two other runs (mnist-trades-30ep's record); PGD-AT about 25 s alone
# (docs/performance.md), so a 15-minute lease finishes no full-length run of these but moves
# one by hours.
# The lease of 2026-11-26 ran this script's first version (git show 791871a:scripts/gpu_lease.sh).
#
#   bash scripts/gpu_lease.sh prep      # here: the data's .gz into .data/, other weights out
#   # the device tool's run: command 'RESULTS=$OUT bash scripts/gpu_lease.sh', carry [".data"],
#   # timeout_s 600 (BUDGET=540 and TRAIN_UNTIL=430 seconds by default)
#   bash scripts/gpu_lease.sh restore   # here: the stashed weights back (git checkout)
#   tar xzf <files_at>/lease-train.tar.gz   # in the repository root: the run folders
#
# "prep" exists because the tree that travels to the device is capped at 64 MiB and the
# committed checkpoints alone weigh about 80 MB: it deletes from the working tree (never from
# git) every committed file over 256 KiB under checkpoints/ and docs/pilots/ that is unchanged
# and not in a run folder the lease trains, lists them in .git/ppcore-lease-stash, and refuses
# when what would travel is still over the cap. Commit nothing between prep and restore.
#
# Results under $RESULTS: lease-train.tar.gz (the run folders, resume.pt included, packed as
# soon as training ends), lease-evals.tar.gz (whitebox of a run that completed, time allowing),
# bench*.txt|json (BENCH=1), logs.tar.gz and lease.log.
# Knobs: DEVICE (cuda), RUNS ("mnist-trades fashion-mnist-pgd_at"), CK (checkpoints), BENCH=1
# for the speed figures (taken on 2026-11-26 already), LIMIT_TRAIN=N for a dry run on N images
# (a fresh run only: resume refuses a changed setting), PYTHON.
set -uo pipefail
cd "$(dirname "$0")/.."
CK=${CK:-checkpoints}
RUNS=${RUNS:-mnist-trades fashion-mnist-pgd_at}
STASH=.git/ppcore-lease-stash
LIMIT_BYTES=$(( 64 * 1024 * 1024 ))

# -- the steps on this machine -------------------------------------------------------------
travelling_bytes() {  # what the device tool sends: tracked files on disk, untracked files git
  # does not ignore, and the carried .data
  { git ls-files -z; git ls-files -z --others --exclude-standard; } |
    xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s += $1} END {print s + 0}'
}
kept() {  # kept PATH: whether PATH lies in a run folder the lease trains
  local r
  for r in $RUNS; do [[ $1 == "$CK/$r/"* ]] && return 0; done
  return 1
}
case "${1:-}" in
  prep)
    if [[ -s $STASH ]]; then echo "a stash is already out ($STASH): run restore first" >&2; exit 1; fi
    DATA=${PPCORE_DATA:-../shared/data}
    for d in MNIST FashionMNIST; do
      mkdir -p ".data/$d/raw"
      cp -u "$DATA/$d/raw/"*.gz ".data/$d/raw/" || { echo "no $d under $DATA" >&2; exit 1; }
    done
    : > "$STASH"
    while IFS= read -r -d '' f; do
      kept "$f" && continue
      [[ -f $f ]] && (( $(stat -c %s -- "$f") > 262144 )) || continue
      git diff --quiet HEAD -- "$f" || continue  # changed since the last commit: never deleted
      printf '%s\0' "$f" >> "$STASH" && rm -- "$f"
    done < <(git ls-files -z -- "$CK" docs/pilots)
    tree=$(travelling_bytes)
    data=$(du -sb .data | cut -f1)
    echo "stashed $(tr -cd '\0' < "$STASH" | wc -c) files (listed in $STASH); the tree that" \
      "travels is $(( tree / 1048576 )) MiB plus $(( data / 1048576 )) MiB of carried .data," \
      "the cap $(( LIMIT_BYTES / 1048576 )) MiB"
    if (( tree + data > LIMIT_BYTES )); then
      echo "still over the cap: run restore, then make less travel" >&2; exit 1
    fi
    exit 0 ;;
  restore)
    [[ -s $STASH ]] || { echo "nothing stashed"; exit 0; }
    xargs -0 -a "$STASH" git checkout HEAD -- && rm -f "$STASH" && echo "restored"
    exit $? ;;
  "") ;;
  *) echo "usage: $0 [prep|restore]  (no argument: the lease itself, on the device)" >&2; exit 2 ;;
esac

# -- the lease, on the device ----------------------------------------------------------------
BUDGET=${BUDGET:-540}
TRAIN_UNTIL=${TRAIN_UNTIL:-430}
RESULTS=${RESULTS:-${OUT:-/tmp/gpu-lease}}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
T0=$(date +%s)
mkdir -p "$RESULTS" /tmp/lease-logs
exec 3>&1 > "$RESULTS/lease.log" 2>&1   # the log comes back as a file; fd 3 is the terminal
el() { echo $(( $(date +%s) - T0 )); }
say() { echo "[$(el)s] $*"; }
left() { echo $(( BUDGET - $(el) )); }
export PYTHONUNBUFFERED=1 PPCORE_DATA=${PPCORE_DATA:-$PWD/.data} PPCORE_NO_DOWNLOAD=1
# several processes share the CPU cores: a few threads each, not all of them each
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
NOTE="GPU lease ($(date -u +%Y-%m-%d)), scripts/gpu_lease.sh"

T0_FILE=$(mktemp); touch "$T0_FILE"
pack() {
  say "packing"
  local paths=() f
  for f in "$CK"/*/eval/*.json; do [[ $f -nt "$T0_FILE" ]] && paths+=("$f"); done
  (( ${#paths[@]} )) && tar czf "$RESULTS/lease-evals.tar.gz" "${paths[@]}" 2>/dev/null
  tar czf "$RESULTS/logs.tar.gz" -C /tmp lease-logs 2>/dev/null
  say "done"
  cat "$RESULTS/lease.log" >&3
}
trap pack EXIT
trap 'exit 143' TERM INT

# -- set-up: torchattacks from a carried wheel where one travels; the idx files from the .gz --
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
for f in "$PPCORE_DATA"/*/raw/*.gz; do [[ -f ${f%.gz} ]] || gunzip -kf "$f"; done
[[ $DEVICE == cuda ]] && nvidia-smi -L
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"

if [[ ${BENCH:-0} == 1 ]]; then  # the speed figures, alone on the GPU (docs/performance.md)
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

# -- training, the runs side by side, and the CUDA tests beside them -----------------------
lane() {  # lane RUN: train CK/RUN with scripts/train_checkpoints.sh's own command for it (RUN
  # must be a run of its "adversarial" group) until TRAIN_UNTIL, then SIGTERM: the script
  # passes it on, the trainer saves, the script returns; a run that fails with CUDA graphs
  # goes on without them
  local run=$1 dir=$CK/$1 flags=${LIMIT_TRAIN:+--limit-train $LIMIT_TRAIN}
  if grep -qs '"status": "complete"' "$dir/model.json"; then say "$run is complete"; return 0; fi
  for attempt in 1 2; do
    (( TRAIN_UNTIL - $(el) > 20 )) || return 0
    say "train $run${flags:+ ($flags)}"
    ONLY=$run OUT=$CK TRAIN_FLAGS=$flags timeout -s TERM $(( TRAIN_UNTIL - $(el) )) \
      bash scripts/train_checkpoints.sh adversarial >> "/tmp/lease-logs/train-$run.log" 2>&1
    grep -qs '"status": "failed"' "$dir/status.json" || break
    say "$run failed: $(grep -o '"error": "[^"]*"' "$dir/status.json"); on without CUDA graphs"
    flags+=" --no-cuda-graphs"
  done
  say "$run: $(grep -o '"status": "[a-z]*"\|"epoch": [0-9]*' "$dir/status.json" | tr '\n' ' ')"
}
export PYTHON=$PY DEVICE NOTE
say "training until ${TRAIN_UNTIL}s: $RUNS"
pids=()
for r in $RUNS; do lane "$r" & pids+=($!); done
PT=
if [[ $DEVICE == cuda ]]; then
  timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_cuda_graphs.py \
    > /tmp/lease-logs/tests-cuda.log 2>&1 & PT=$!
fi
wait "${pids[@]}"
say "training over"
# the runs come back first, in their own archive: a transfer cut short later loses
# evaluations, not training
dirs=(); for r in $RUNS; do [[ -d $CK/$r ]] && dirs+=("$CK/$r"); done
(( ${#dirs[@]} )) && tar czf "$RESULTS/lease-train.tar.gz" "${dirs[@]}"
[[ -n $PT ]] && { wait "$PT"; say "CUDA tests: $(tail -n 1 /tmp/lease-logs/tests-cuda.log)"; }

# -- a run that completed: its white-box suite, while time is left (eval_checkpoints.sh's own
# command for it; it skips a run that is not complete) ------------------------------------------
for r in $RUNS; do
  (( $(left) > 30 )) || break
  say "eval $r whitebox (where it is complete)"
  ONLY=$r OUT=$CK timeout $(( $(left) - 15 )) bash scripts/eval_checkpoints.sh whitebox \
    > "/tmp/lease-logs/eval-$r-whitebox.log" 2>&1 || say "!! $r whitebox did not finish"
done
say "evaluations over"
