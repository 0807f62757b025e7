#!/usr/bin/env bash
# Train every checkpoint that ships with the app, into checkpoints/<dataset>-<method>[-variant]/.
#
# Re-runnable, one run at a time: a run whose model.json says "complete" is skipped; an
# interrupted one continues from its resume.pt (--resume). Each run is one exact
# `python -m ppcore train` command below, with ppcore's recipe (He init with a zero last layer,
# SGD lr 0.01 momentum 0.9, x0.1 at 50% and 75% of the iterations, bf16 + channels_last where
# the hardware has it; see docs/results.md, "Choices the paper leaves open").
#
# usage:
#   scripts/train_checkpoints.sh [GROUP ...]        (default: paper)
# Stopping it (Ctrl-C, kill, timeout) stops the run in training, which saves its resume state;
# the same command continues it.
# groups, in the order a CPU should run them:
#   core          MNIST normal, proposed (seed 0), FGSM-AT; Fashion-MNIST normal, proposed
#   seeds         MNIST proposed with seeds 1 and 2 (Table 1's mean +- std over 3 seeds)
#   ablations     MNIST ablations 1-3, proposed_spatial, proposed_noise_spatial
#   sources       Net-A and Net-B (black-box sources), MNIST and Fashion-MNIST; Fashion FGSM-AT
#   sweep         Figure 4: proposed on MNIST with lambda 0, 0.1, 1, 50, 100 (lambda 10 is
#                 mnist-proposed itself)
#   sweep-warmup  Figure 4's large lambdas (50, 100) with lambda rising linearly over the first
#                 10 000 iterations: a stabiliser the paper does not use (plain lambda 50
#                 diverged, docs/pilots/sweep-lam50-divergence/), so the folders say "lamwarm10k"
#   sweep-half    proposed on MNIST with lambda 5: Table 1's lambda 10 when Eq. (1)'s leading
#                 1/(2m) is read over both terms (cross-entropy mean + lambda/2 x pair mean);
#                 seed 0 as a sweep point, seeds 1 and 2 as mnist-proposed-lam5-seed{1,2}
#   spatial-warmup  proposed_spatial, proposed_noise_spatial and proposed_noise_and_spatial
#                 (Table 5's "both" row read as a noise and a spatial copy of every image) with
#                 lr 0.005 and lambda rising
#                 linearly over the first 10 000 iterations: at the recipe's lr 0.01
#                 proposed_spatial collapsed to a constant output, at once without the warm-up
#                 and from epoch 14 with it (docs/pilots/proposed_spatial-collapse/,
#                 docs/pilots/proposed_spatial-lamwarm10k-collapse/); folders "lr0.005-lamwarm10k"
#   paper         core seeds ablations sources sweep
#   adversarial   PGD-AT, ALP, TRADES on MNIST, then PGD-AT on Fashion-MNIST, each with its own
#                 paper's recipe (the presets: Madry's Adam 1e-4 for 100k iterations; TRADES'
#                 SGD schedule): hours per epoch-block on a CPU, a GPU job
# environment:
#   EPOCHS       epochs of the non-iterative methods (default 34: 40 800 iterations of batch 50,
#                at least the 40 000 of the paper's Figure 1)
#   DEVICE       auto, cpu or cuda (default auto)
#   NOTE         text added to every record's note (e.g. the machine)
#   OUT          checkpoint root (default checkpoints)
#   ONLY         space-separated folder names: train only these (e.g. ONLY="mnist-proposed")
#   TRAIN_FLAGS  extra `ppcore train` flags for every run (e.g. "--no-cuda-graphs"; a dry run's
#                "--limit-train 500 --limit-test 200" in a scratch OUT: resume refuses them)
#   PYTHON       interpreter (default .venv/bin/python if present, else python)
#
# A GPU user reproduces everything with:
#   DEVICE=cuda scripts/train_checkpoints.sh paper adversarial
set -euo pipefail
cd "$(dirname "$0")/.."

EPOCHS=${EPOCHS:-34}
DEVICE=${DEVICE:-auto}
OUT=${OUT:-checkpoints}
NOTE=${NOTE:-}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
export PPCORE_NO_DOWNLOAD=${PPCORE_NO_DOWNLOAD:-}

# train DIR DATASET METHOD [extra ppcore train flags...]
train() {
  local dir="$OUT/$1" dataset=$2 method=$3
  shift 3
  if [[ -n "${ONLY:-}" && " $ONLY " != *" ${dir##*/} "* ]]; then return 0; fi
  if [[ -f "$dir/model.json" ]] && grep -q '"status": "complete"' "$dir/model.json"; then
    if grep -q '"init":' "$dir/model.json"; then
      echo "== skip $dir (complete)"
      return 0
    fi
    # a checkpoint of the first release (before the recipe of issue 8: no recorded init, 1-3
    # epochs); git keeps it, the folder is retrained from scratch
    echo "== replace $dir (made before the current recipe)"
    rm -rf "$dir"
  fi
  echo "== $(date -u +%H:%M:%S) train $dir"
  local note="${NOTE:+$NOTE; }scripts/train_checkpoints.sh" rc=0 extra=()
  read -ra extra <<< "${TRAIN_FLAGS:-}"
  # the trainer runs as a child this script waits for: a TERM or INT to the script (kill,
  # timeout, a lease's deadline, Ctrl-C) is passed on to it, it saves its resume state, and the
  # script stops only then, so whoever stopped it never finds a run folder still being written
  "$PYTHON" -m ppcore train --dataset "$dataset" --method "$method" --out "$dir" \
    --device "$DEVICE" --metrics-every 50 --no-progress --resume --note "$note" "$@" \
    ${extra[@]+"${extra[@]}"} &
  TRAINER=$!
  trap 'STOPPED=1; kill -TERM "$TRAINER" 2>/dev/null' TERM INT
  while :; do  # a signal ends `wait` early; wait again until the trainer has exited
    wait "$TRAINER" && rc=0 || rc=$?
    kill -0 "$TRAINER" 2>/dev/null || break
  done
  trap - TERM INT
  if [[ -n ${STOPPED:-} ]]; then
    echo "== $(date -u +%H:%M:%S) stopped $dir (its resume state is saved: run the same" \
      "command again to continue)"
    exit 143
  fi
  (( rc == 0 )) || { echo "!! $dir: the trainer exited with status $rc" >&2; return "$rc"; }
  echo "== $(date -u +%H:%M:%S) done $dir"
}

for group in "${@:-paper}"; do
  case $group in
    core)
      train mnist-normal mnist normal --epochs "$EPOCHS"
      train mnist-proposed mnist proposed --epochs "$EPOCHS"
      train mnist-fgsm_at mnist fgsm_at --epochs "$EPOCHS"
      train fashion-mnist-normal fashion-mnist normal --epochs "$EPOCHS"
      train fashion-mnist-proposed fashion-mnist proposed --epochs "$EPOCHS"
      ;;
    seeds)
      for seed in 1 2; do
        train "mnist-proposed-seed$seed" mnist proposed --epochs "$EPOCHS" --seed "$seed"
      done
      ;;
    ablations)
      for m in ablation1 ablation2 ablation3 proposed_spatial proposed_noise_spatial; do
        train "mnist-$m" mnist "$m" --epochs "$EPOCHS"
      done
      ;;
    sources)
      for d in mnist fashion-mnist; do
        # Net-A / Net-B (Tramer et al. 2018) are the black-box sources: normally trained
        train "$d-net_a" "$d" normal --model net-a --epochs "$EPOCHS"
        train "$d-net_b" "$d" normal --model net-b --epochs "$EPOCHS"
      done
      train fashion-mnist-fgsm_at fashion-mnist fgsm_at --epochs "$EPOCHS"
      ;;
    sweep)
      for lam in 0 0.1 1 50 100; do
        train "sweep-mnist-proposed-lam$lam" mnist proposed --lam "$lam" --epochs "$EPOCHS" \
          --name "proposed-lam$lam" --note "${NOTE:+$NOTE; }Figure 4 lambda sweep"
      done
      ;;
    sweep-warmup)
      for lam in 50 100; do
        train "sweep-mnist-proposed-lam$lam-lamwarm10k" mnist proposed --lam "$lam" \
          --lam-warmup-iters 10000 --epochs "$EPOCHS" --name "proposed-lam$lam-lamwarm10k" \
          --note "${NOTE:+$NOTE; }Figure 4 lambda sweep, lambda warm-up over 10 000 iterations"
      done
      ;;
    spatial-warmup)
      lr=0.005 warm=10000  # the folder name is made from the same two values as the flags
      tag="lr$lr-lamwarm$((warm / 1000))k"
      for m in proposed_spatial proposed_noise_spatial proposed_noise_and_spatial; do
        train "mnist-$m-$tag" mnist "$m" --lr "$lr" \
          --lam-warmup-iters "$warm" --epochs "$EPOCHS" --name "$m-$tag" \
          --note "${NOTE:+$NOTE; }lr $lr and lambda warm-up over $warm iterations (lr 0.01 \
collapsed with and without the warm-up: docs/pilots/proposed_spatial-collapse/, \
docs/pilots/proposed_spatial-lamwarm10k-collapse/)"
      done
      ;;
    sweep-half)
      train sweep-mnist-proposed-lam5 mnist proposed --lam 5 --epochs "$EPOCHS" \
        --name proposed-lam5 --note "${NOTE:+$NOTE; }Figure 4 lambda sweep; lambda 5 = lambda 10 \
under Eq. (1) read with its leading 1/(2m) over both terms"
      for seed in 1 2; do  # Table 1's three seeds of that reading (seed 0 is the sweep point)
        train "mnist-proposed-lam5-seed$seed" mnist proposed --lam 5 --seed "$seed" \
          --epochs "$EPOCHS" --name "proposed-lam5-seed$seed" --note "${NOTE:+$NOTE; }lambda 5 = \
lambda 10 under Eq. (1) read with its leading 1/(2m) over both terms; seed $seed"
      done
      ;;
    paper) "$0" core seeds ablations sources sweep ;;
    adversarial)
      # the presets carry each method's own paper's optimiser, schedule and length
      train mnist-pgd_at mnist pgd_at
      train mnist-alp mnist alp
      train mnist-trades mnist trades
      train fashion-mnist-pgd_at fashion-mnist pgd_at
      ;;
    *) echo "unknown group '$group'" >&2; exit 2 ;;
  esac
done
