#!/usr/bin/env bash
# CIFAR-10 (the paper's Tables 2, 4 and 8): train the WRN-28-10 models and the VGG black-box
# sources, evaluate them, rebuild docs/results.md. A GPU job: `python -m ppcore report` names
# this file in docs/results.md and shows its commands.
#
# usage: scripts/cifar10_checkpoints.sh
# environment:
#   PPCORE_DATA  data folder (CIFAR-10 is downloaded there on first use)
#   DEVICE       cuda (default), auto or cpu
#   OUT          checkpoint root (default checkpoints)
#   PYTHON       interpreter (default .venv/bin/python if present, else python)
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-checkpoints}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi

for m in normal proposed fgsm_at ablation1 ablation2 ablation3 pgd_at alp; do
  # the presets carry each method's recipe (PGD-AT / ALP: Madry et al.'s PGD-7, step 2/255)
  "$PYTHON" -m ppcore train --dataset cifar10 --method $m --device "$DEVICE" --resume \
    --out "$OUT/cifar10-$m"
done
for s in vgg11 vgg19; do  # black-box sources of Table 4
  "$PYTHON" -m ppcore train --dataset cifar10 --model $s --method normal --device "$DEVICE" \
    --resume --out "$OUT/cifar10-$s"
done
for m in normal proposed fgsm_at pgd_at alp ablation1 ablation2 ablation3; do  # Table 2
  mkdir -p "$OUT/cifar10-$m/eval"
  "$PYTHON" -m ppcore eval --checkpoint "$OUT/cifar10-$m" --suite whitebox --device "$DEVICE" \
    --json "$OUT/cifar10-$m/eval/whitebox.json"
done
for m in normal fgsm_at pgd_at proposed; do  # Table 8
  "$PYTHON" -m ppcore eval --checkpoint "$OUT/cifar10-$m" --suite unbounded --device "$DEVICE" \
    --json "$OUT/cifar10-$m/eval/unbounded.json"
done
for t in pgd_at proposed; do for s in vgg11 vgg19; do  # Table 4
  "$PYTHON" -m ppcore eval --checkpoint "$OUT/cifar10-$t" --suite blackbox \
    --source "$OUT/cifar10-$s" --device "$DEVICE" --json "$OUT/cifar10-$t/eval/blackbox-$s.json"
done; done
"$PYTHON" -m ppcore report --checkpoints "$OUT"
