"""Train a model with one of ppcore's methods on MNIST, Fashion-MNIST or CIFAR-10.

Unset method hyper-parameters take the paper's presets for the data set (see `python -m ppcore
info`). Metrics go to OUT/metrics.jsonl as training runs; the weights and a JSON record to
OUT/model.pt and OUT/model.json. Ctrl-C or SIGTERM saves a checkpoint and exits; run the same
command with --resume to continue from the last finished epoch.

Under torchrun every process trains its share of each global batch (--batch-size is the
global batch) with DistributedDataParallel: NCCL on GPUs, gloo on CPUs (--device cpu).

examples:
  python -m ppcore train --dataset mnist --method proposed --lam 10 --xi 0.3 --epochs 1 \\
      --limit-train 2000 --out runs/demo
  torchrun --standalone --nproc-per-node 4 -m ppcore train --dataset cifar10 --method proposed \\
      --out runs/cifar-proposed
"""

from __future__ import annotations

import argparse
import json
import logging
import signal

from ..config import OPTIMIZERS, PRECISIONS, REDUCTIONS
from ..data import DATASETS
from ..errors import PPCoreError
from ..methods import METHODS
from ..models import DEFAULT_INIT, INITS, MODELS

HELP = "train a model (normal, proposed, ablations, adversarial baselines)"
log = logging.getLogger("ppcore.train")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to train")
    g.add_argument("--dataset", choices=list(DATASETS), help="required unless --config")
    g.add_argument("--model", choices=list(MODELS),
                   help="architecture (default: mnist-net for MNIST/Fashion-MNIST, wrn for CIFAR-10)")
    g.add_argument("--wrn-depth", type=int, help="WideResNet depth (6n+4; default 28)")
    g.add_argument("--wrn-width", type=int, help="WideResNet widening factor (default 10)")
    g.add_argument("--padding", choices=("valid", "same"),
                   help="convolution padding of mnist-net (Table 6 gives none; default: the "
                        "pilots' choice, see docs/results.md)")
    g.add_argument("--init", choices=list(INITS),
                   help=f"weight initialisation (default {DEFAULT_INIT}: He, zero last layer)")
    g.add_argument("--method", default="normal", choices=list(METHODS))
    h = p.add_argument_group("method hyper-parameters (default: the paper's preset)")
    h.add_argument("--lam", type=float, help="weight of the pairing term (lambda; beta for TRADES)")
    h.add_argument("--xi", type=float, help="size of the random noise (l-inf, or l2 for ablations 2/3)")
    h.add_argument("--eps", type=float, help="l-inf budget of adversarial training, in [0, 1]")
    h.add_argument("--alpha", type=float, help="attack step size during training")
    h.add_argument("--steps", type=int, help="attack steps during training")
    h.add_argument("--max-rot", type=float, help="largest rotation of spatial pairs (degrees)")
    h.add_argument("--max-trans", type=float, help="largest translation of spatial pairs (pixels)")
    h.add_argument("--reduction", choices=REDUCTIONS,
                   help="Eq. (1)'s pairing term over the batch: lambda * mean or lambda * sum")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int)
    o.add_argument("--batch-size", type=int,
                   help="images a step; under torchrun the global batch, shared by the processes")
    o.add_argument("--optimizer", choices=OPTIMIZERS, help="sgd (momentum 0.9) or adam")
    o.add_argument("--lr", type=float, help="initial learning rate")
    o.add_argument("--warmup-iters", type=int, help="linear learning-rate warm-up (iterations)")
    o.add_argument("--eps-warmup-iters", type=int,
                   help="linear epsilon warm-up of adversarial training (iterations)")
    o.add_argument("--lam-warmup-iters", type=int,
                   help="linear lambda warm-up of the pairing term (iterations; a stabiliser "
                        "of large lambda, not the paper's: name such a run so)")
    o.add_argument("--grad-clip", type=float,
                   help="clip the gradient's l2 norm to this before each step (0: off, the "
                        "default; a stabiliser, not the paper's: name such a run so)")
    o.add_argument("--weight-decay", type=float)
    o.add_argument("--precision", choices=PRECISIONS,
                   help="auto (bf16 autocast + channels_last where the hardware does bf16, "
                        "else fp32), fp32 or bf16")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--metrics-every", type=int, help="iterations between metric records (20)")
    o.add_argument("--probe-size", type=int,
                   help="test images of the PGD-10 robustness meter (200; 0 turns it off)")
    o.add_argument("--probe-every", type=int,
                   help="iterations between meter readings (0: automatic, ~5%% of the run; "
                        "-1: epoch ends only)")
    r = p.add_argument_group("running")
    r.add_argument("--config", metavar="FILE",
                   help="read every training setting from FILE (a TrainConfig as JSON, e.g. a "
                        "job's job.json or a record's config); no other setting flag may be "
                        "given with it")
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
    r.add_argument("--no-cuda-graphs", action="store_true",
                   help="run the training attacks' PGD loop eagerly on a GPU (by default it is "
                   "captured once as a CUDA graph and replayed)")


#: flags that are training settings (they go into the TrainConfig); --config replaces them all
_SETTING_FLAGS = ("dataset", "model", "wrn_depth", "wrn_width", "padding", "init", "lam", "xi",
                  "eps", "alpha", "steps", "max_rot", "max_trans", "reduction", "epochs",
                  "batch_size", "optimizer", "lr", "warmup_iters", "eps_warmup_iters",
                  "lam_warmup_iters", "grad_clip", "weight_decay", "precision", "metrics_every",
                  "probe_size", "probe_every", "limit_train", "limit_test", "name", "note")


def config_from_args(args: argparse.Namespace):
    """The validated TrainConfig the command line asks for (from --config FILE, or the flags
    over the paper's presets)."""
    from ..config import TrainConfig, make_config

    if args.config:
        given = [f"--{k.replace('_', '-')}" for k in _SETTING_FLAGS
                 if getattr(args, k) is not None]
        if given or args.method != "normal" or args.seed != 0:
            raise PPCoreError(f"--config holds every setting; drop {', '.join(given) or '--method/--seed'}")
        try:
            with open(args.config, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise PPCoreError(f"cannot read settings from '{args.config}': "
                              f"{str(exc).splitlines()[0]}") from None
        if isinstance(data, dict) and isinstance(data.get("config"), dict):
            data = data["config"]  # a job.json or a model.json record holds the settings
        return TrainConfig.from_dict(data)
    if args.dataset is None:
        raise PPCoreError("--dataset is required (or --config FILE)")
    model_options = {k: v for k, v in (("depth", args.wrn_depth), ("width", args.wrn_width),
                                       ("padding", args.padding), ("init", args.init))
                     if v is not None}
    return make_config(args.dataset, args.model, args.method, lam=args.lam, xi=args.xi,
                       eps=args.eps, alpha=args.alpha, steps=args.steps, max_rot=args.max_rot,
                       max_trans=args.max_trans, reduction=args.reduction, epochs=args.epochs,
                       batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                       warmup_iters=args.warmup_iters, eps_warmup_iters=args.eps_warmup_iters,
                       lam_warmup_iters=args.lam_warmup_iters, grad_clip=args.grad_clip,
                       weight_decay=args.weight_decay, precision=args.precision,
                       seed=args.seed, limit_train=args.limit_train,
                       limit_test=args.limit_test, metrics_every=args.metrics_every,
                       probe_size=args.probe_size, probe_every=args.probe_every,
                       name=args.name, note=args.note, model_options=model_options or None)


def run(args: argparse.Namespace) -> int:
    from .. import distributed

    cfg = config_from_args(args)
    with distributed.session(args.device) as (dist, device):
        return _train(args, cfg, dist, device)


def _train(args, cfg, dist, device) -> int:
    from ..train import Trainer

    trainer = Trainer(cfg, args.out, device, data_dir=args.data_dir,
                      download=False if args.no_download else None,
                      progress=not args.no_progress, dist=dist,
                      cuda_graphs=not args.no_cuda_graphs)

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
