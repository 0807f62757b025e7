#!/usr/bin/env bash
# Evaluate the shipped checkpoints into checkpoints/<run>/eval/<suite>.json (the layout the app
# and `python -m ppcore report` read), then rebuild docs/results.md.
#
# Re-runnable: an existing eval JSON is kept (delete it, or set FORCE=1, to redo it); a run
# that is not trained (no complete model.json) is skipped.
#
# usage: scripts/eval_checkpoints.sh [PHASE ...]     (default: all phases, in this order)
# phases: whitebox autoattack sanity blackbox spatial unbounded sweep report
# environment (test images per suite; unset = the full test set, what a GPU user runs):
#   LIMIT_WB LIMIT_AA LIMIT_SAN LIMIT_BB LIMIT_SP LIMIT_UB LIMIT_SWEEP
#   UB_PARAMS    extra --attack-param flags of the unbounded suite (default: none, i.e. the
#                paper's 1000 C&W iterations); the CPU run used
#                "cw_l2.steps=100 cw_linf.steps=100"
#   DEVICE       auto, cpu or cuda (default auto)
#   OUT          checkpoint root (default checkpoints)
#   ONLY         space-separated folder names: evaluate only these (e.g. ONLY="mnist-trades")
#
# The CPU run that made the committed eval JSONs:
#   LIMIT_WB=1000 LIMIT_AA=200 LIMIT_SAN=300 LIMIT_BB=1000 LIMIT_SP=500 LIMIT_UB=100 \
#   LIMIT_SWEEP=300 UB_PARAMS="cw_l2.steps=100 cw_linf.steps=100" scripts/eval_checkpoints.sh
# (in several passes and streams as models finished training; the run stopped before every
# (run, suite) pair was done: see docs/results.md for what exists)
# A GPU user, on the full test sets:
#   DEVICE=cuda scripts/eval_checkpoints.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-checkpoints}
DEVICE=${DEVICE:-auto}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi

# ev RUN SUITE LIMIT [NAME] [extra flags...]
ev() {
  local run="$OUT/$1" suite=$2 limit=$3 name=${4:-$2}
  shift 3; [[ $# -gt 0 ]] && shift
  local json="$run/eval/$name.json"
  if [[ -n "${ONLY:-}" && " $ONLY " != *" ${run##*/} "* ]]; then return 0; fi
  if ! { [[ -f "$run/model.json" ]] && grep -q '"status": "complete"' "$run/model.json"; }; then
    echo "== not trained: $run"; return 0
  fi
  if [[ -f "$json" && -z "${FORCE:-}" ]]; then echo "== skip $json"; return 0; fi
  mkdir -p "$run/eval"
  echo "== $(date -u +%H:%M:%S) eval $run $suite ${limit:+--limit $limit} $*"
  "$PYTHON" -m ppcore eval --checkpoint "$run" --suite "$suite" ${limit:+--limit "$limit"} \
    --device "$DEVICE" --no-progress --json "$json" "$@" > /dev/null || echo "!! failed: $json"
}

# cuts DATASET METHOD...: runs shipped under their length because they are shorter than their
# method's recipe (pgd_at-30ep: 30 of 84 epochs) or the paper's length (the first release's
# 1-3-epoch runs: fgsm_rs-2ep, proposed_spatial-3ep), or under the stabiliser they needed
# (proposed_spatial-lr0.005-lamwarm10k: lower lr and lambda warm-up)
cuts() { local d=$1; shift; (cd "$OUT" 2>/dev/null && for m in "$@"; do
  for r in "$d-$m"-[0-9]*ep "$d-$m"-lr*-lamwarm*; do [[ -d $r ]] && echo -n "${r#"$d-"} "; done
  done; true); }
PGD_CUTS=$(cuts mnist pgd_at)
SPATIAL_CUTS=$(cuts mnist proposed_spatial proposed_noise_spatial proposed_noise_and_spatial)
M_TABLE="normal proposed fgsm_at pgd_at $PGD_CUTS$(cuts mnist alp trades fgsm_rs)alp ablation1 ablation2 ablation3 trades fgsm_rs proposed_spatial proposed_noise_spatial proposed_noise_and_spatial $SPATIAL_CUTS"
# Table 1's other seeds of the proposed method, whichever scripts/train_checkpoints.sh trained:
# λ = 10, and λ = 5 (Eq. (1)'s 1/(2m) read over both terms; its seed 0 is the sweep point
# sweep-mnist-proposed-lam5)
SEEDS=$(cd "$OUT" 2>/dev/null && for r in mnist-proposed-seed[0-9]* mnist-proposed-lam*-seed[0-9]*; do
  [[ -d $r ]] && echo -n "${r#mnist-} "; done; true)
F_TABLE="normal proposed fgsm_at pgd_at alp ablation1 ablation2 ablation3 trades fgsm_rs $(cuts fashion-mnist fgsm_rs)"

# src DATASET: "--source" and the data set's Net-A, where it is trained (else nothing)
src() { [[ -f "$OUT/$1-net_a/model.json" ]] && echo "--source $OUT/$1-net_a" || true; }

phase() {
  case $1 in
    whitebox)
      for m in $M_TABLE $SEEDS; do ev "mnist-$m" whitebox "${LIMIT_WB:-}"; done
      for m in $F_TABLE; do ev "fashion-mnist-$m" whitebox "${LIMIT_WB:-}"; done ;;
    autoattack)
      for m in $M_TABLE $SEEDS; do ev "mnist-$m" autoattack "${LIMIT_AA:-}"; done
      for m in $F_TABLE; do ev "fashion-mnist-$m" autoattack "${LIMIT_AA:-}"; done ;;
    sanity)  # with the data set's Net-A as the black-box source of its transfer check
      for m in normal proposed $PGD_CUTS pgd_at fgsm_at alp trades; do
        ev "mnist-$m" sanity "${LIMIT_SAN:-}" sanity $(src mnist); done
      for m in normal proposed pgd_at fgsm_at; do
        ev "fashion-mnist-$m" sanity "${LIMIT_SAN:-}" sanity $(src fashion-mnist); done ;;
    blackbox)
      for d in mnist fashion-mnist; do
        for t in pgd_at $PGD_CUTS proposed; do
          for s in net_a net_b; do
            [[ -f "$OUT/$d-$s/model.json" ]] || continue
            ev "$d-$t" blackbox "${LIMIT_BB:-}" "blackbox-$s" --source "$OUT/$d-$s"
          done
        done
      done ;;
    spatial)
      for m in normal fgsm_at pgd_at $PGD_CUTS alp trades proposed proposed_spatial proposed_noise_spatial \
               proposed_noise_and_spatial $SPATIAL_CUTS; do
        ev "mnist-$m" spatial "${LIMIT_SP:-}"; done ;;
    unbounded)
      local params=()
      for p in ${UB_PARAMS:-}; do params+=(--attack-param "$p"); done
      for m in normal fgsm_at pgd_at $PGD_CUTS proposed; do
        ev "mnist-$m" unbounded "${LIMIT_UB:-}" unbounded "${params[@]}"; done ;;
    sweep)
      for d in "$OUT"/sweep-mnist-proposed-lam*; do
        [[ -d $d ]] && ev "${d##*/}" whitebox "${LIMIT_SWEEP:-}"
      done ;;
    report) "$PYTHON" -m ppcore report --checkpoints "$OUT" ;;
    *) echo "unknown phase '$1'" >&2; exit 2 ;;
  esac
}

for p in "${@:-whitebox autoattack sanity blackbox spatial unbounded sweep report}"; do
  for q in $p; do phase "$q"; done
done
