"""Training throughput against the number of processes (torchrun + DDP), for normal and PGD-AT
training of the CIFAR-10 model.

    python bench/bench_ddp.py                        # 1..N GPUs (WRN-28-10), or 1..2 CPU procs
    python bench/bench_ddp.py --world-sizes 1 2 4 8 --methods normal pgd_at --limit-train 20000
    python bench/bench_ddp.py --fake-data ...        # random images in CIFAR-10's own file format

Each (method, world size) is one real ``python -m ppcore train`` run through
``ppcore.distributed.launch_argv`` (torchrun for more than one process), one epoch, the global
batch fixed (``--batch-size``), so every world size does the same work. Images per second are
the median of the run's metric windows after the first (start-up and first-batch costs left
out), summed over ranks by the trainer. Scaling efficiency = speed-up / world size. On GPUs the
model is WRN-28-10 (SyncBatchNorm under DDP); on a CPU a small WRN (depth 10, width 2) with one
thread a process. Figures go to ``docs/performance.md`` with the command and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from ppcore.distributed import launch_argv, visible_gpus  # noqa: E402

METHODS = ("normal", "pgd_at")


def write_fake_cifar(root: Path, images: int, seed: int = 0) -> None:
    """Random images and labels in CIFAR-10's python format (as tests/test_cifar.py): the
    bench then loads them through the same code as the real data set."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    per = -(-images // 5)
    for name, n in [(f"data_batch_{i}", per) for i in range(1, 6)] + [("test_batch", 200)]:
        data = torch.randint(0, 256, (n, 3 * 32 * 32), generator=g, dtype=torch.uint8)
        labels = torch.randint(0, 10, (n,), generator=g)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data.numpy(), "labels": labels.tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                     "frog", "horse", "ship", "truck"]}, f)


def run_one(method: str, world: int, args, data_dir: str, out: Path) -> dict:
    cmd = ["train", "--dataset", "cifar10", "--model", "wrn", "--wrn-depth", str(args.depth),
           "--wrn-width", str(args.width), "--method", method, "--epochs", "1",
           "--limit-train", str(args.limit_train), "--limit-test", "100",
           "--batch-size", str(args.batch_size), "--probe-size", "0",
           "--metrics-every", str(args.window), "--device", args.device, "--no-progress",
           "--data-dir", data_dir, "--out", str(out)]
    argv = launch_argv(world, cmd, python=sys.executable)
    res = subprocess.run(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{res.stderr[-2000:]}")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["images_per_s"] for r in rows if r["type"] == "iter"][1:]
    if not rates:
        raise SystemExit(f"too few iterations to time: raise --limit-train above "
                         f"{2 * args.window * args.batch_size}")
    epoch = next(r for r in rows if r["type"] == "epoch")
    return {"method": method, "world_size": world, "images_per_s": statistics.median(rates),
            "epoch_time_s": epoch["epoch_time_s"], "windows": len(rates)}


def main() -> None:
    gpus = visible_gpus()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world-sizes", type=int, nargs="+",
                   default=list(range(1, (gpus or 2) + 1)))
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--device", default="auto", help="auto, cuda or cpu (gloo)")
    p.add_argument("--depth", type=int, default=28 if gpus else 10)
    p.add_argument("--width", type=int, default=10 if gpus else 2)
    p.add_argument("--batch-size", type=int, default=128, help="the global batch")
    p.add_argument("--limit-train", type=int, default=12800 if gpus else 1024)
    p.add_argument("--window", type=int, default=5, help="iterations per timing window")
    p.add_argument("--data-dir", help="CIFAR-10's root (default: $PPCORE_DATA)")
    p.add_argument("--fake-data", action="store_true",
                   help="random images in CIFAR-10's format instead of the real data set")
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread a process, as torchrun sets
    results = []
    with TemporaryDirectory() as tmp:
        data_dir = args.data_dir or os.environ.get("PPCORE_DATA", "")
        if args.fake_data:
            data_dir = str(Path(tmp) / "data")
            write_fake_cifar(Path(data_dir), args.limit_train)
        for m in args.methods:
            for w in args.world_sizes:
                r = run_one(m, w, args, data_dir, Path(tmp) / f"{m}-{w}")
                results.append(r)
                print(f"{m:<7} {w} process(es): {r['images_per_s']:9.1f} images/s", file=sys.stderr,
                      flush=True)
    machine = (f"{gpus} x {torch.cuda.get_device_name()}" if gpus and args.device != "cpu"
               else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                    f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} a process")
    print(f"# WRN-{args.depth}-{args.width}, CIFAR-10{' (fake data)' if args.fake_data else ''}"
          f", global batch {args.batch_size}, {args.limit_train} images, {machine}, torch "
          f"{torch.__version__}")
    print(f"{'method':<8} {'procs':>5} {'images/s':>10} {'speed-up':>9} {'efficiency':>11}")
    for m in args.methods:
        base = next((r["images_per_s"] for r in results if r["method"] == m
                     and r["world_size"] == 1), None)
        for r in (r for r in results if r["method"] == m):
            up = r["images_per_s"] / base if base else float("nan")
            r.update(speed_up=up, efficiency=up / r["world_size"])
            print(f"{m:<8} {r['world_size']:>5} {r['images_per_s']:>10.1f} {up:>9.2f} "
                  f"{r['efficiency']:>11.0%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "args": vars(args),
                                               "results": results}, indent=2))


if __name__ == "__main__":
    main()
