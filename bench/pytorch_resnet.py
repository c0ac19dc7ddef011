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
                                    [--json results.json]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from pytorch_fixture import BasicBlock, ResNet  # noqa: E402

MODES = ("fp32", "default", "amp")
CLASSES = 10
LR = 1e-4


def build(width, channels_last):
    model = ResNet(BasicBlock, [2, 2, 2, 2], CLASSES, width).cuda()
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


def time_trials(run, steps, trials):
    """Milliseconds per call of `run`: the median of `trials` trials of `steps` calls."""
    results = []
    for _ in range(trials):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            run()
        torch.cuda.synchronize()
        results.append((time.perf_counter() - start) / steps * 1000)
    return statistics.median(results), results


def bench_mode(mode, width, batch, warmup, steps, trials):
    switches = settings(mode)
    amp = mode == "amp"
    model = build(width, channels_last=amp)
    generator = torch.Generator(device="cuda").manual_seed(0)
    images = torch.randn(batch, 3, 32, 32, device="cuda", generator=generator)
    if amp:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, CLASSES, (batch,), device="cuda", generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8)
    loss_function = nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            loss = loss_function(model(images), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def eval_step():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            model(images)

    model.train()
    for _ in range(warmup):
        train_step()
    train_ms, train_trials = time_trials(train_step, steps, trials)
    model.eval()
    for _ in range(warmup):
        eval_step()
    eval_ms, eval_trials = time_trials(eval_step, steps, trials)
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
        "max_memory_bytes": torch.cuda.max_memory_allocated(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    modes = args.modes.split(",")
    for mode in modes:
        if mode not in MODES:
            parser.error(f"--modes: {mode} is not one of {', '.join(MODES)}")
    if not torch.cuda.is_available():
        sys.exit("pytorch_resnet.py: no CUDA device")
    results = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "gpu": torch.cuda.get_device_name(),
        "optimizer": f"Adam lr {LR:g}",
        "modes": [],
    }
    for mode in modes:
        torch.cuda.reset_peak_memory_stats()
        row = bench_mode(mode, args.width, args.batch, args.warmup, args.steps, args.trials)
        print(f"{mode:8} train {row['train_ms']:7.2f} ms  {row['train_images_per_second']:9.0f} "
              f"images/s   eval {row['eval_ms']:7.2f} ms  {row['eval_images_per_second']:9.0f} "
              f"images/s   {row['settings']}", flush=True)
        results["modes"].append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
