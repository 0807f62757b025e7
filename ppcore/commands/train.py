"""Train a model with one of ppcore's methods on MNIST, Fashion-MNIST or CIFAR-10.

Unset method hyper-parameters take the paper's presets for the data set (see `python -m ppcore
info`). Metrics go to OUT/metrics.jsonl as training runs; the weights and a JSON record to
OUT/model.pt and OUT/model.json. Ctrl-C or SIGTERM saves a checkpoint and exits; run the same
command with --resume to continue from the last finished epoch.

example:
  python -m ppcore train --dataset mnist --method proposed --lam 10 --xi 0.3 --epochs 1 \\
      --limit-train 2000 --out runs/demo
"""

from __future__ import annotations

import argparse
import logging
import signal

from ..data import DATASETS
from ..methods import METHODS
from ..models import MODELS

HELP = "train a model (normal, proposed, ablations, adversarial baselines)"
log = logging.getLogger("ppcore.train")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to train")
    g.add_argument("--dataset", required=True, choices=list(DATASETS))
    g.add_argument("--model", choices=list(MODELS),
                   help="architecture (default: mnist-net for MNIST/Fashion-MNIST, wrn for CIFAR-10)")
    g.add_argument("--wrn-depth", type=int, help="WideResNet depth (6n+4; default 28)")
    g.add_argument("--wrn-width", type=int, help="WideResNet widening factor (default 10)")
    g.add_argument("--method", default="normal", choices=list(METHODS))
    h = p.add_argument_group("method hyper-parameters (default: the paper's preset)")
    h.add_argument("--lam", type=float, help="weight of the pairing term (lambda; beta for TRADES)")
    h.add_argument("--xi", type=float, help="size of the random noise (l-inf, or l2 for ablations 2/3)")
    h.add_argument("--eps", type=float, help="l-inf budget of adversarial training, in [0, 1]")
    h.add_argument("--alpha", type=float, help="attack step size during training")
    h.add_argument("--steps", type=int, help="attack steps during training")
    h.add_argument("--max-rot", type=float, help="largest rotation of spatial pairs (degrees)")
    h.add_argument("--max-trans", type=float, help="largest translation of spatial pairs (pixels)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int)
    o.add_argument("--batch-size", type=int)
    o.add_argument("--lr", type=float, help="initial learning rate (SGD, momentum 0.9)")
    o.add_argument("--weight-decay", type=float)
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--metrics-every", type=int, help="iterations between metric records (20)")
    r = p.add_argument_group("running")
    r.add_argument("--out", required=True, help="run folder for metrics and checkpoints")
    r.add_argument("--resume", action="store_true", help="continue the run in --out")
    r.add_argument("--device", default="auto", help="auto, cpu or cuda")
    r.add_argument("--data-dir", help="data root (default: $PPCORE_DATA, else ~/.cache/ppcore/data)")
    r.add_argument("--no-download", action="store_true", help="never download data")
    r.add_argument("--limit-train", type=int, help="train on the first N training images")
    r.add_argument("--limit-test", type=int, help="measure test accuracy on the first N images")
    r.add_argument("--name", help="the run's own name where its settings differ from the "
                   "paper's (e.g. pgd_at-short for a shorter schedule)")
    r.add_argument("--note", help="free text kept in the record")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..config import make_config
    from ..device import pick_device
    from ..train import Trainer

    model_options = {k: v for k, v in (("depth", args.wrn_depth), ("width", args.wrn_width))
                     if v is not None}
    cfg = make_config(args.dataset, args.model, args.method, lam=args.lam, xi=args.xi,
                      eps=args.eps, alpha=args.alpha, steps=args.steps, max_rot=args.max_rot,
                      max_trans=args.max_trans, epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
                      limit_train=args.limit_train, limit_test=args.limit_test,
                      metrics_every=args.metrics_every, name=args.name, note=args.note,
                      model_options=model_options or None)
    device = pick_device(args.device)
    trainer = Trainer(cfg, args.out, device, data_dir=args.data_dir,
                      download=False if args.no_download else None,
                      progress=not args.no_progress)

    def stop(signum, _frame):
        log.info("%s received: stopping after this step and saving a checkpoint",
                 signal.Signals(signum).name)
        trainer.request_stop()

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        record = trainer.fit(resume=args.resume)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    acc = record["final_metrics"]["test_acc"]
    acc_text = f"{acc:.4f}" if acc is not None else "n/a"
    if record["status"] == "interrupted":
        log.info("stopped at epoch %d/%d; checkpoint in %s; continue with --resume",
                 record["epochs_done"], cfg.epochs, args.out)
    else:
        log.info("done: %d epochs, test accuracy %s, checkpoint %s/model.pt",
                 record["epochs_done"], acc_text, args.out)
    return 0
