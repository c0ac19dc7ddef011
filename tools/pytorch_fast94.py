#!/usr/bin/env python3
"""The fast94 recipe (`deno task train --preset fast94`) in PyTorch on the CPU, for the
side-by-side comparison with the WebGPU trainer: same model, optimizer, schedule, augmentation
and evaluation, so that accuracies and losses epoch by epoch say whether the port trains as
PyTorch does. Not run in CI; run by hand from the repository root:

    /usr/bin/python3 tools/pytorch_fast94.py                          # the full recipe
    /usr/bin/python3 tools/pytorch_fast94.py --limit 2048 --epochs 1 --width 0.0625   # smoke test

The recipe (see the fast94 preset and tools/pytorch_fixture.py's ResNet9, the same module):

  - ResNet-9 (DAWNBench) with every width scaled by --width, PyTorch's default init
    (kaiming_uniform a=sqrt(5)), BatchNorm momentum 0.1 and eps 1e-5;
  - batch 512, full batches only (the last partial batch is dropped), reshuffled each epoch;
  - SGD, Nesterov momentum 0.9, lr 0.4, weight decay 5e-4 coupled (torch.optim.SGD
    weight_decay, on every parameter, batch-norm ones included);
  - the learning rate of step s (0-based) is 0.4 times the piecewise-linear factor through
    (0, 0), (0.2, 1), (1, 0) at s / total steps;
  - loss: mean CrossEntropyLoss with label smoothing 0.2;
  - augmentation: normalise with the CIFAR-10 mean/std of src/data/gpu_dataset.ts, random
    32x32 crop of the image with 4 pixels of reflect padding, horizontal flip with p = 0.5, then
    Cutout: an 8x8 square centred on a uniform pixel (cy, cx) in 0..31, rows cy-4 .. cy+3 and
    columns cx-4 .. cx+3 clipped to the image, set to 0 (the mean colour, after normalisation);
  - evaluation: batch 500, eval-mode batch norm, TTA flip (mean of the logits of the image and
    its mirror); the test loss is the plain cross-entropy of those mean logits.

Prints one line per epoch and a final JSON line with every number. The random draws (init,
shuffle, augmentation) follow --seed but differ from the WebGPU trainer's own hash-based draws,
so the two runs agree statistically, not bit for bit.

Reads the CIFAR-10 binary archive with tarfile and numpy; no torchvision.
"""

import argparse
import json
import math
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pytorch_fixture import ResNet9

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPOSITORY.parent / "shared" / "cifar-10" / "cifar-10-binary.tar.gz"

# src/data/gpu_dataset.ts CIFAR10_MEAN / CIFAR10_STD.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

CLASSES = 10
BATCH = 512
EVAL_BATCH = 500
LR = 0.4
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
LABEL_SMOOTHING = 0.2
SCHEDULE = ((0.0, 0.0), (0.2, 1.0), (1.0, 0.0))
CROP_PADDING = 4
CUTOUT = 8

RECORD_BYTES = 1 + 3 * 32 * 32
TRAIN_FILES = [f"data_batch_{index}.bin" for index in range(1, 6)]
TEST_FILES = ["test_batch.bin"]


def read_split(archive, names):
    """Labels (int64 [N]) and images (uint8 [N, 3, 32, 32]) of the named .bin files, in order."""
    members = {Path(member.name).name: member for member in archive.getmembers()}
    records = []
    for name in names:
        if name not in members:
            raise SystemExit(f"{name} is not in the archive")
        data = archive.extractfile(members[name]).read()
        if len(data) % RECORD_BYTES:
            raise SystemExit(f"{name}: {len(data)} bytes is not a whole number of records")
        records.append(np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES))
    records = np.concatenate(records)
    labels = torch.from_numpy(records[:, 0].astype(np.int64))
    images = torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).copy())
    return labels, images


def normalise(images):
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def augment(images, generator):
    """Reflect-padded random crop, horizontal flip, then Cutout, of a normalised batch
    [B, 3, 32, 32]."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (CROP_PADDING,) * 4, mode="reflect")
    top = torch.randint(0, 2 * CROP_PADDING + 1, (batch,), generator=generator)
    left = torch.randint(0, 2 * CROP_PADDING + 1, (batch,), generator=generator)
    rows = (top[:, None] + torch.arange(height))[:, None, :, None]
    columns = (left[:, None] + torch.arange(width))[:, None, None, :]
    cropped = padded[torch.arange(batch)[:, None, None, None], torch.arange(3)[None, :, None, None],
                     rows, columns]
    flip = torch.rand(batch, generator=generator) < 0.5
    flipped = torch.where(flip[:, None, None, None], cropped.flip(3), cropped)
    centre_y = torch.randint(0, height, (batch,), generator=generator)
    centre_x = torch.randint(0, width, (batch,), generator=generator)
    offset = torch.arange(height)[None, :] - (centre_y[:, None] - CUTOUT // 2)
    in_rows = (offset >= 0) & (offset < CUTOUT)
    offset = torch.arange(width)[None, :] - (centre_x[:, None] - CUTOUT // 2)
    in_columns = (offset >= 0) & (offset < CUTOUT)
    square = in_rows[:, None, :, None] & in_columns[:, None, None, :]
    return flipped.masked_fill(square, 0.0)


def schedule_factor(step, total_steps):
    return float(np.interp(step / total_steps, [point for point, _ in SCHEDULE],
                           [factor for _, factor in SCHEDULE]))


def evaluate(model, images, labels):
    """Plain cross-entropy and accuracy of the mean logits of each image and its mirror."""
    model.eval()
    loss_sum = 0.0
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), EVAL_BATCH):
            batch = images[start:start + EVAL_BATCH]
            batch_labels = labels[start:start + EVAL_BATCH]
            logits = (model(batch) + model(batch.flip(3))) / 2
            loss_sum += F.cross_entropy(logits, batch_labels, reduction="sum").item()
            correct += (logits.argmax(1) == batch_labels).sum().item()
    return loss_sum / len(labels), correct / len(labels)


def main():
    parser = argparse.ArgumentParser(
        description="The fast94 recipe in PyTorch on the CPU; see the docstring of "
                    "tools/pytorch_fast94.py for what it mirrors.")
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier (1)")
    parser.add_argument("--epochs", type=int, default=18, help="epochs (18)")
    parser.add_argument("--limit", type=int, default=0,
                        help="train on the first N training images only (0: all 50000)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads (0: PyTorch's default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of init, shuffle, augmentation")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="the CIFAR-10 binary archive (cifar-10-binary.tar.gz)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    with tarfile.open(args.data, "r:gz") as archive:
        train_labels, train_images = read_split(archive, TRAIN_FILES)
        test_labels, test_images = read_split(archive, TEST_FILES)
    if args.limit:
        train_labels, train_images = train_labels[:args.limit], train_images[:args.limit]
    train_images = normalise(train_images)
    test_images = normalise(test_images)
    steps_per_epoch = len(train_labels) // BATCH
    if steps_per_epoch == 0:
        raise SystemExit(f"{len(train_labels)} training images make no full batch of {BATCH}")
    total_steps = steps_per_epoch * args.epochs

    model = ResNet9(CLASSES, args.width)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True,
                                weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: schedule_factor(step, total_steps))
    criterion = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    print(f"fast94 in PyTorch {torch.__version__}: width {args.width}, {parameters} parameters, "
          f"{len(train_labels)} training images ({steps_per_epoch} batches of {BATCH}), "
          f"{len(test_labels)} test images, {args.epochs} epochs, "
          f"{torch.get_num_threads()} threads", flush=True)

    epochs = []
    started = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(train_labels), generator=generator)
        loss_sum = 0.0
        correct = 0
        epoch_started = time.perf_counter()
        for step in range(steps_per_epoch):
            indices = order[step * BATCH:(step + 1) * BATCH]
            images = augment(train_images[indices], generator)
            labels = train_labels[indices]
            logits = model(images)
            loss = criterion(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item()
            correct += (logits.argmax(1) == labels).sum().item()
        train_seconds = time.perf_counter() - epoch_started
        test_loss, test_accuracy = evaluate(model, test_images, test_labels)
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / steps_per_epoch,
            "train_accuracy": correct / (steps_per_epoch * BATCH),
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "images_per_second": steps_per_epoch * BATCH / train_seconds,
            "train_seconds": train_seconds,
            "epoch_seconds": time.perf_counter() - epoch_started,
        }
        epochs.append(record)
        print(f"epoch {epoch}/{args.epochs}: train loss {record['train_loss']:.4f}, "
              f"train accuracy {100 * record['train_accuracy']:.2f}%, "
              f"test loss {test_loss:.4f}, test accuracy {100 * test_accuracy:.2f}% (TTA flip), "
              f"{record['images_per_second']:.1f} images/s", flush=True)

    print(json.dumps({
        "recipe": "fast94",
        "framework": f"pytorch {torch.__version__} cpu",
        "width": args.width,
        "epochs": args.epochs,
        "limit": args.limit,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "parameters": parameters,
        "train_images": len(train_labels),
        "test_images": len(test_labels),
        "batch": BATCH,
        "steps": total_steps,
        "test_accuracy": epochs[-1]["test_accuracy"] if epochs else math.nan,
        "test_loss": epochs[-1]["test_loss"] if epochs else math.nan,
        "seconds": time.perf_counter() - started,
        "history": epochs,
    }))


if __name__ == "__main__":
    main()
