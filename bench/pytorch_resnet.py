#!/usr/bin/env python3
"""PyTorch's training step on the model this project trains, for bench/gpu_side_by_side.sh.

The model is tools/pytorch_fixture.py's (the book's CIFAR ResNet-18, which the parity tests
match against this project's), with 10 classes; the step is the one `deno task bench --only
training` times: a batch of synthetic CIFAR-shaped images already on the GPU, forward, cross
entropy, backward and Adam (lr 1e-4, betas 0.9/0.999, eps 1e-8). Each mode runs warm-up steps,
then timed trials of steps between two `torch.cuda.synchronize()`; the figure is the median
trial. Also an evaluation forward (no grad), like the bench's eval column.

Modes:
  fp32     TF32 off for convolutions and matrix products: the same arithmetic as this project's f32
  default  PyTorch's defaults (cuDNN may use TF32 for convolutions)
  amp      mixed precision (autocast to float16 with a GradScaler), channels_last tensors

    python3 bench/pytorch_resnet.py [--width 1] [--batch 128] [--modes fp32,default,amp]
                                    [--json results.json] [--device cuda|cpu] [--threads N]

On the CPU (`--device cpu`, for bench/cpu_side_by_side.sh) only fp32 runs (TF32 and float16
autocast are CUDA's), on `--threads` threads (default: every core), and no memory is reported.
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

# Import the fixture's model without leaving a __pycache__ folder in tools/.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from pytorch_fixture import BasicBlock, ResNet  # noqa: E402

MODES = ("fp32", "default", "amp")
CLASSES = 10
LR = 1e-4


def build(width, channels_last, device):
    model = ResNet(BasicBlock, [2, 2, 2, 2], CLASSES, width).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


# PyTorch's own TF32 switches, read before any mode changes them.
TF32_DEFAULTS = {"matmul": torch.backends.cuda.matmul.allow_tf32,
                 "cudnn": torch.backends.cudnn.allow_tf32}


def settings(mode):
    """Sets the TF32 switches for `mode` and returns what every relevant switch is."""
    defaults = TF32_DEFAULTS
    if mode == "fp32":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    else:
        torch.backends.cuda.matmul.allow_tf32 = defaults["matmul"]
        torch.backends.cudnn.allow_tf32 = defaults["cudnn"]
    return {
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "autocast": "float16" if mode == "amp" else None,
        "channels_last": mode == "amp",
    }


def synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_trials(run, steps, trials, device):
    """Milliseconds per call of `run`: the median of `trials` trials of `steps` calls."""
    results = []
    for _ in range(trials):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            run()
        synchronize(device)
        results.append((time.perf_counter() - start) / steps * 1000)
    return statistics.median(results), results


def bench_mode(mode, width, batch, warmup, steps, trials, device):
    switches = settings(mode) if device == "cuda" else {"threads": torch.get_num_threads()}
    amp = mode == "amp"
    model = build(width, channels_last=amp, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.randn(batch, 3, 32, 32, device=device, generator=generator)
    if amp:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, CLASSES, (batch,), device=device, generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8)
    loss_function = nn.CrossEntropyLoss()
    # Only amp scales the loss (torch.amp.GradScaler is newer than the CPU machine's PyTorch 1.13).
    scaler = torch.amp.GradScaler("cuda") if amp else None

    def autocast():
        return torch.autocast("cuda", dtype=torch.float16) if amp else contextlib.nullcontext()

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_function(model(images), labels)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    def eval_step():
        with torch.no_grad(), autocast():
            model(images)

    model.train()
    for _ in range(warmup):
        train_step()
    train_ms, train_trials = time_trials(train_step, steps, trials, device)
    model.eval()
    for _ in range(warmup):
        eval_step()
    eval_ms, eval_trials = time_trials(eval_step, steps, trials, device)
    return {
        "mode": mode,
        "model": f"resnet18 width {width:g}",
        "batch": batch,
        "settings": switches,
        "train_ms": train_ms,
        "train_images_per_second": batch / train_ms * 1000,
        "train_trials_ms": train_trials,
        "eval_ms": eval_ms,
        "eval_images_per_second": batch / eval_ms * 1000,
        "eval_trials_ms": eval_trials,
        "max_memory_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else None,
    }


def cpu_name():
    """The CPU's model name and whether it has AVX-512 (what decides lavapipe's code)."""
    text = Path("/proc/cpuinfo").read_text()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.startswith("model name")), "unknown CPU")
    return f"{name}, {'AVX-512' if 'avx512f' in text else 'no AVX-512'}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--modes", help="default: all three on CUDA, fp32 on the CPU")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--json")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    modes = (args.modes or (",".join(MODES) if args.device == "cuda" else "fp32")).split(",")
    for mode in modes:
        if mode not in MODES:
            parser.error(f"--modes: {mode} is not one of {', '.join(MODES)}")
        if args.device == "cpu" and mode != "fp32":
            parser.error(f"--modes: {mode} is CUDA's; on the CPU use --modes fp32")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("pytorch_resnet.py: no CUDA device (on the CPU: --device cpu --modes fp32)")
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
        results = {"torch": torch.__version__, "cpu": cpu_name(), "threads": args.threads}
    else:
        results = {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "gpu": torch.cuda.get_device_name(),
        }
    results.update({"optimizer": f"Adam lr {LR:g}", "modes": []})
    for mode in modes:
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        row = bench_mode(mode, args.width, args.batch, args.warmup, args.steps, args.trials,
                         args.device)
        print(f"{mode:8} train {row['train_ms']:7.2f} ms  {row['train_images_per_second']:9.0f} "
              f"images/s   eval {row['eval_ms']:7.2f} ms  {row['eval_images_per_second']:9.0f} "
              f"images/s   {row['settings']}", flush=True)
        results["modes"].append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
