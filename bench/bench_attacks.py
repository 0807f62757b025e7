"""PGD-40 throughput of ppcore against torchattacks on the same model, inputs and device, and
(with --table1) the wall time of the paper's full Table 1 evaluation.

Three PGD-40 runs on the same images, interleaved and repeated (median of --repeats):
  torchattacks   torchattacks.PGD(eps, alpha, steps, random_start=True)
  ppcore-all     ppcore's PGD with early_stop=False: the same work, every example every step
  ppcore         ppcore's PGD as the evaluation runs it (early_stop=True: an example leaves the
                 batch once misclassified, keeping that iterate)
Images/s = images / wall seconds of the attack alone (data already on the device).

usage:
  python bench/bench_attacks.py --checkpoint checkpoints/mnist-normal --n 1000
  python bench/bench_attacks.py --checkpoint checkpoints/mnist-normal --table1   # 10 000 images
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ppcore.attacks import make_attack  # noqa: E402
from ppcore.data import load_split, to_float  # noqa: E402
from ppcore.device import pick_device  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the only sync: at the end of a timed run


def machine() -> dict:
    def sh(cmd: str) -> str:
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001 - best effort description
            return ""
    info = {"nproc": sh("nproc"), "cpu": sh("lscpu | grep 'Model name' | sed 's/.*: *//'"),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def load_model(checkpoint: str | None, device: torch.device):
    if checkpoint:
        from ppcore.checkpoint import load_model as _load
        return _load(checkpoint, device=device)
    from ppcore.data import dataset_info
    from ppcore.models import build_model
    torch.manual_seed(0)
    return build_model("mnist-net", dataset_info("mnist")).to(device).eval()


def run_batches(fn, x: torch.Tensor, y: torch.Tensor, batch: int, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for i in range(0, x.shape[0], batch):
        fn(x[i:i + batch], y[i:i + batch])
    _sync(device)
    return time.perf_counter() - t0


def bench_pgd(args, device) -> dict:
    import torchattacks

    model = load_model(args.checkpoint, device)
    images, labels = load_split("mnist", "test")
    x, y = to_float(images[:args.n]).to(device), labels[:args.n].to(device)
    ta = torchattacks.PGD(model, eps=args.eps, alpha=args.alpha, steps=args.steps,
                          random_start=True)
    ours_all = make_attack("pgd", eps=args.eps, alpha=args.alpha, steps=args.steps,
                           early_stop=False)
    ours = make_attack("pgd", eps=args.eps, alpha=args.alpha, steps=args.steps)
    runs = {"torchattacks": lambda a, b: ta(a, b),
            "ppcore-all": lambda a, b: ours_all(model, a, b),
            "ppcore": lambda a, b: ours(model, a, b)}
    # warm-up (allocator, oneDNN primitives) on one batch each, not timed
    for fn in runs.values():
        run_batches(fn, x[:args.batch], y[:args.batch], args.batch, device)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, fn in runs.items():
            times[k].append(run_batches(fn, x, y, args.batch, device))
    x_ta = torch.cat([ta(x[i:i + args.batch], y[i:i + args.batch])
                      for i in range(0, x.shape[0], args.batch)])
    with torch.no_grad():
        acc = {"clean": float((model(x).argmax(1) == y).float().mean()),
               "torchattacks": float((model(x_ta).argmax(1) == y).float().mean())}
    acc["ppcore-all"] = ours_all(model, x, y).accuracy
    acc["ppcore"] = ours(model, x, y).accuracy
    med = {k: statistics.median(v) for k, v in times.items()}
    ips = {k: args.n / v for k, v in med.items()}
    return {"images": args.n, "batch": args.batch, "steps": args.steps, "eps": args.eps,
            "alpha": args.alpha, "repeats": args.repeats, "checkpoint": args.checkpoint,
            "seconds": times, "median_s": med, "images_per_s": ips,
            "ratio_ppcore_all_vs_torchattacks": ips["ppcore-all"] / ips["torchattacks"],
            "ratio_ppcore_vs_torchattacks": ips["ppcore"] / ips["torchattacks"],
            "accuracy": acc}


def bench_table1(args, device) -> dict:
    from ppcore.evaluate import evaluate

    t0 = time.perf_counter()
    res = evaluate(args.checkpoint, "whitebox", device=device, batch_size=args.batch,
                   progress=True)
    wall = time.perf_counter() - t0
    return {"checkpoint": args.checkpoint, "images": res["n_images"], "wall_s": wall,
            "per_attack_s": {r["key"]: r["wall_s"] for r in res["rows"]},
            "accuracy": {r["key"]: r["metrics"]["accuracy"] for r in res["rows"]}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="MNIST checkpoint (default: a randomly initialised "
                                        "mnist-net; --table1 needs one)")
    p.add_argument("--n", type=int, default=1000, help="images for the PGD benchmark")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--alpha", type=float, default=0.01)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--table1", action="store_true",
                   help="also time the full Table 1 evaluation (10 000 test images)")
    p.add_argument("--skip-pgd", action="store_true", help="only --table1")
    p.add_argument("--json", help="write the figures as JSON")
    args = p.parse_args(argv)
    os.environ.setdefault("PPCORE_NO_DOWNLOAD", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    out = {"machine": machine(), "device": str(device), "command": " ".join(sys.argv)}
    print(f"machine: {out['machine']}")
    if not args.skip_pgd:
        r = out["pgd"] = bench_pgd(args, device)
        print(f"PGD-{args.steps} (eps {args.eps}, step {args.alpha}) on {args.n} MNIST test "
              f"images, batch {args.batch}, {device}, median of {args.repeats}:")
        for k, v in r["images_per_s"].items():
            print(f"  {k:<13} {v:8.1f} images/s  (accuracy under attack "
                  f"{100 * r['accuracy'][k]:.2f}%)")
        print(f"  clean accuracy {100 * r['accuracy']['clean']:.2f}%")
        print(f"  ratio ppcore-all / torchattacks: {r['ratio_ppcore_all_vs_torchattacks']:.2f}x")
        print(f"  ratio ppcore     / torchattacks: {r['ratio_ppcore_vs_torchattacks']:.2f}x")
    if args.table1:
        if not args.checkpoint:
            p.error("--table1 needs --checkpoint")
        r = out["table1"] = bench_table1(args, device)
        print(f"Table 1 evaluation of {args.checkpoint} on {r['images']} images: "
              f"{r['wall_s']:.1f} s")
        for k, v in r["per_attack_s"].items():
            print(f"  {k:<9} {v:8.1f} s  accuracy {r['accuracy'][k]:.2f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
