#!/usr/bin/env python3
"""PyTorch parity fixtures for the CPU reference ResNet and ResNet-9
(tests/support/reference_pytorch_test.ts).

Run by hand, not in CI, from the repository root; the output is committed:

    apt-get install -y python3-torch        # Debian's PyTorch (1.13 on bookworm)
    /usr/bin/python3 tools/pytorch_fixture.py

Debian's torch is installed for the system interpreter, hence /usr/bin/python3 rather than
whatever `python3` a virtual environment or pyenv puts first on PATH. The script is
deterministic: rerunning it with the same torch version rewrites the same bytes.

It builds the book's model (weiaicunzai/pytorch-cifar100 models/resnet.py, stem named `conv`)
with every width scaled by a multiplier, runs one train-mode forward and backward on a random
batch, then one Adam step, and writes tests/support/fixtures/<name>.safetensors with these tensors:

    weights/<name>   the initial state dict, PyTorch layout (conv weights OIHW [Cout, Cin, K, K])
    input            the images, NCHW [N, 3, H, W] as PyTorch takes them
    labels           I64 [N]
    eval_logits      [N, classes] from an eval-mode forward of the initial weights
    logits           [N, classes] from the train-mode forward
    loss             [] mean CrossEntropyLoss of those logits
    grad/<name>      d loss / d parameter for every trainable parameter, PyTorch layout
    running/<name>   running_mean, running_var, num_batches_tracked after the train forward
    adam/<name>      every trainable parameter after one torch.optim.Adam step

The ResNet-9 fixture (pytorch_resnet9_tiny, the DAWNBench network of the fast94 preset) holds
the same entries with three differences: the loss is CrossEntropyLoss(label_smoothing=0.2),
the optimizer step is torch.optim.SGD (Nesterov momentum 0.9, coupled weight decay 5e-4) and
its results are under sgd/<name> instead of adam/<name>, and one more tensor is recorded:

    eval_logits_tta  [N, classes] the mean of the eval logits of input and input.flip(3)

Floats are F32 and integers I64. BatchNorm weight, bias and running statistics start from
random values rather than PyTorch's 1/0 defaults, so that a port which ignores any of them
fails the comparison.

Fixture names given on the command line build only those (e.g. `tools/pytorch_fixture.py
pytorch_resnet9_tiny`), so that a new fixture can be added without rewriting the committed
ones when a different torch version would change their bytes.
"""

import json
import math
import struct
import sys
from pathlib import Path

import torch
import torch.nn as nn

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "tests" / "support" / "fixtures"


def scaled_width(base_width, width_multiplier):
    """Rounded half up and at least 1, the same formula as tests/support/reference/resnet.ts."""
    return max(1, int(math.floor(base_width * width_multiplier + 0.5)))


# The book's blocks and network, unchanged except for the width multiplier and the stem's name.


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.residual_function = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels * BasicBlock.expansion, kernel_size=3, padding=1,
                      bias=False),
            nn.BatchNorm2d(out_channels * BasicBlock.expansion),
        )
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != BasicBlock.expansion * out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels * BasicBlock.expansion, kernel_size=1,
                          stride=stride, bias=False),
                nn.BatchNorm2d(out_channels * BasicBlock.expansion),
            )

    def forward(self, x):
        return nn.ReLU(inplace=True)(self.residual_function(x) + self.shortcut(x))


class BottleNeck(nn.Module):
    expansion = 4

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.residual_function = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, stride=stride, kernel_size=3, padding=1,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels * BottleNeck.expansion, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels * BottleNeck.expansion),
        )
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels * BottleNeck.expansion:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels * BottleNeck.expansion, stride=stride,
                          kernel_size=1, bias=False),
                nn.BatchNorm2d(out_channels * BottleNeck.expansion),
            )

    def forward(self, x):
        return nn.ReLU(inplace=True)(self.residual_function(x) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, block, num_block, num_classes=100, width_multiplier=1.0):
        super().__init__()
        widths = [scaled_width(width, width_multiplier) for width in (64, 128, 256, 512)]
        self.in_channels = widths[0]
        self.conv = nn.Sequential(
            nn.Conv2d(3, widths[0], kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.conv2_x = self._make_layer(block, widths[0], num_block[0], 1)
        self.conv3_x = self._make_layer(block, widths[1], num_block[1], 2)
        self.conv4_x = self._make_layer(block, widths[2], num_block[2], 2)
        self.conv5_x = self._make_layer(block, widths[3], num_block[3], 2)
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * block.expansion, num_classes)

    def _make_layer(self, block, out_channels, num_blocks, stride):
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for stride in strides:
            layers.append(block(self.in_channels, out_channels, stride))
            self.in_channels = out_channels * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        output = self.conv(x)
        output = self.conv2_x(output)
        output = self.conv3_x(output)
        output = self.conv4_x(output)
        output = self.conv5_x(output)
        output = self.avg_pool(output)
        output = output.view(output.size(0), -1)
        return self.fc(output)


class ResNet9(nn.Module):
    """The DAWNBench ResNet-9 (Myrtle's), with the module names of the design's state dict.
    Each residual branch ends in its own ReLU and nothing follows the addition; the head is a
    global max pool and a linear layer whose output is scaled by 0.125."""

    def __init__(self, num_classes=10, width_multiplier=1.0):
        super().__init__()
        w64, w128, w256, w512 = (scaled_width(width, width_multiplier)
                                 for width in (64, 128, 256, 512))
        self.prep = conv_bn(3, w64)
        self.layer1 = nn.Sequential(*conv_bn(w64, w128), nn.MaxPool2d(2))
        self.res1 = nn.Sequential(*conv_bn(w128, w128), *conv_bn(w128, w128))
        self.layer2 = nn.Sequential(*conv_bn(w128, w256), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(*conv_bn(w256, w512), nn.MaxPool2d(2))
        self.res3 = nn.Sequential(*conv_bn(w512, w512), *conv_bn(w512, w512))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(w512, num_classes)

    def forward(self, x):
        x = self.prep(x)
        x = self.layer1(x)
        x = x + self.res1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = x + self.res3(x)
        x = self.pool(x).flatten(1)
        return self.fc(x) * 0.125


def conv_bn(in_channels, out_channels):
    """Conv2d(3x3, padding 1, no bias), BatchNorm2d, ReLU: Sequential indices 0, 1, 2."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


BLOCKS = {"basic": BasicBlock, "bottleneck": BottleNeck}
SAFETENSORS_DTYPES = {torch.float32: ("F32", "<f4"), torch.int64: ("I64", "<i8")}


def write_safetensors(path, tensors, metadata):
    """safetensors by hand: u64 LE header length, JSON header padded with spaces to a multiple
    of 8, then each tensor's raw little-endian bytes in insertion order."""
    header = {"__metadata__": metadata}
    chunks = []
    offset = 0
    for name, tensor in tensors.items():
        dtype, numpy_dtype = SAFETENSORS_DTYPES[tensor.dtype]
        data = tensor.detach().contiguous().numpy().astype(numpy_dtype).tobytes()
        header[name] = {"dtype": dtype, "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(header_bytes)))
        file.write(header_bytes)
        for chunk in chunks:
            file.write(chunk)


def randomize_batch_norms(model, generator):
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.1, generator=generator)
                module.running_mean.normal_(0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)


def start_fixture(build_model, classes, batch, image_size, seed):
    """The model (seeded init, random BN state), a random batch, and the tensors recorded so far:
    the initial state dict, the input and the labels."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_model()
    randomize_batch_norms(model, generator)
    images = torch.randn(batch, 3, image_size, image_size, generator=generator)
    labels = torch.randint(0, classes, (batch,), generator=generator)
    tensors = {f"weights/{key}": value.clone() for key, value in model.state_dict().items()}
    tensors["input"] = images
    tensors["labels"] = labels
    return model, images, labels, tensors


def record_train_step(model, images, labels, criterion, optimizer, prefix, tensors):
    """One train-mode forward and backward, then one optimizer step; records logits, loss,
    gradients, running statistics and the stepped parameters (under `prefix`/)."""
    model.train()
    optimizer.zero_grad()
    logits = model(images)
    loss = criterion(logits, labels)
    loss.backward()
    tensors["logits"] = logits
    tensors["loss"] = loss
    for key, parameter in model.named_parameters():
        tensors[f"grad/{key}"] = parameter.grad.clone()
    for key, buffer in model.named_buffers():
        tensors[f"running/{key}"] = buffer.clone()
    optimizer.step()
    for key, parameter in model.named_parameters():
        tensors[f"{prefix}/{key}"] = parameter.clone()
    return loss


def make_fixture(name, block, blocks_per_stage, width_multiplier, batch, image_size, seed):
    classes = 10
    lr = 1e-3
    model, images, labels, tensors = start_fixture(
        lambda: ResNet(BLOCKS[block], blocks_per_stage, classes, width_multiplier),
        classes, batch, image_size, seed)

    model.eval()
    with torch.no_grad():
        tensors["eval_logits"] = model(images)

    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8,
                                 weight_decay=0)
    loss = record_train_step(model, images, labels, nn.CrossEntropyLoss(), optimizer, "adam",
                             tensors)

    architecture = {"block": block, "blocksPerStage": blocks_per_stage,
                    "widthMultiplier": width_multiplier, "classes": classes}
    metadata = {
        "description": "one train step of the book's CIFAR ResNet; see tools/pytorch_fixture.py",
        "architecture": json.dumps(architecture),
        "image_size": str(image_size),
        "batch": str(batch),
        "input_layout": "NCHW",
        "conv_weight_layout": "OIHW",
        "loss": "CrossEntropyLoss(reduction=mean)",
        "batch_norm": "train mode, eps 1e-5, momentum 0.1",
        "optimizer": "Adam",
        "lr": str(lr),
        "betas": "0.9,0.999",
        "eps": "1e-08",
        "weight_decay": "0",
        "seed": str(seed),
        "torch_version": torch.__version__,
    }
    FIXTURE_DIR.mkdir(parents=True, exist_ok=True)
    path = FIXTURE_DIR / f"{name}.safetensors"
    write_safetensors(path, tensors, metadata)
    print(f"{path}: {path.stat().st_size} bytes, loss {loss.item():.6f}")


def max_pool_margin(model, images):
    """The smallest gap, over every window of every max pool in a forward of `images`, between
    the window's largest positive value and the next one. The f64 reference recomputes these
    values with different rounding (about 1e-6 relative, on values of order 1 after batch
    norm); a gap far above that guarantees its backward routes each window's gradient to the
    same element as PyTorch's. Windows whose maximum is 0 (all ReLU outputs zero) do not count:
    whichever zero takes the gradient, the ReLU below it passes none. Only the train-mode
    forward matters: max is continuous, so a near tie cannot change forward values, only the
    backward's routing."""
    gaps = []

    def record(module, inputs, _output):
        x = inputs[0].detach()
        if isinstance(module, nn.MaxPool2d):
            n, c, h, w = x.shape
            windows = x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
            windows = windows.permute(0, 1, 2, 4, 3, 5).reshape(-1, 4)
        else:
            windows = x.flatten(2).reshape(-1, x.shape[2] * x.shape[3])
        top = windows.topk(2, dim=1).values
        positive = top[:, 0] > 0
        gaps.append((top[positive, 0] - top[positive, 1]).min().item())

    hooks = [module.register_forward_hook(record) for module in model.modules()
             if isinstance(module, (nn.MaxPool2d, nn.AdaptiveMaxPool2d))]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return min(gaps)


def make_resnet9_fixture(name, width_multiplier, batch, image_size, seed):
    classes = 10
    label_smoothing = 0.2
    lr, momentum, weight_decay = 0.4, 0.9, 5e-4
    model, images, labels, tensors = start_fixture(
        lambda: ResNet9(classes, width_multiplier), classes, batch, image_size, seed)

    model.eval()
    with torch.no_grad():
        tensors["eval_logits"] = model(images)
        tensors["eval_logits_tta"] = (tensors["eval_logits"] + model(images.flip(3))) / 2

    # The margin check runs its own train-mode forward, which would update the running
    # statistics; it works on a copy so that the recorded step starts from the initial ones.
    # Typical seeds give margins of 1e-5 (tens of thousands of windows); the seed is one of the
    # few whose train forward stays 1e-4 away from any tie.
    train_copy = ResNet9(classes, width_multiplier)
    train_copy.load_state_dict(model.state_dict())
    train_copy.train()
    margin = max_pool_margin(train_copy, images)
    if margin < 1e-4:
        raise RuntimeError(f"{name}: a max-pool window is within {margin:.2e} of a tie")

    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=True,
                                weight_decay=weight_decay)
    loss = record_train_step(model, images, labels,
                             nn.CrossEntropyLoss(label_smoothing=label_smoothing), optimizer, "sgd",
                             tensors)

    architecture = {"kind": "resnet9", "widthMultiplier": width_multiplier, "classes": classes}
    metadata = {
        "description": "one train step of the DAWNBench ResNet-9; see tools/pytorch_fixture.py",
        "architecture": json.dumps(architecture),
        "image_size": str(image_size),
        "batch": str(batch),
        "input_layout": "NCHW",
        "conv_weight_layout": "OIHW",
        "logit_scale": "0.125",
        "loss": f"CrossEntropyLoss(reduction=mean, label_smoothing={label_smoothing})",
        "label_smoothing": str(label_smoothing),
        "eval_logits_tta": "mean of the eval logits of input and input.flip(3)",
        "train_max_pool_margin": f"{margin:.3e}",
        "batch_norm": "train mode, eps 1e-5, momentum 0.1",
        "optimizer": "SGD",
        "lr": str(lr),
        "momentum": str(momentum),
        "nesterov": "true",
        "weight_decay": str(weight_decay),
        "weight_decay_mode": "coupled",
        "seed": str(seed),
        "torch_version": torch.__version__,
    }
    FIXTURE_DIR.mkdir(parents=True, exist_ok=True)
    path = FIXTURE_DIR / f"{name}.safetensors"
    write_safetensors(path, tensors, metadata)
    print(f"{path}: {path.stat().st_size} bytes, loss {loss.item():.6f}, "
          f"max-pool margin {margin:.3e}")


FIXTURES = {
    # 4/8/16/32 channels; conv2_x keeps 4 channels at stride 1, so it has the identity shortcut.
    "pytorch_resnet_tiny": lambda name: make_fixture(
        name, "basic", [1, 1, 1, 1], 1 / 16, batch=3, image_size=32, seed=0),
    # Widths 2/4/8/16 expanding to 8/16/32/64; two blocks in conv2_x give both shortcut kinds.
    "pytorch_resnet_bottleneck_tiny": lambda name: make_fixture(
        name, "bottleneck", [2, 1, 1, 1], 1 / 32, batch=3, image_size=32, seed=1),
    # 4/8/16/32 channels; 32x32 inputs pool to 16, 8 and 4 before the global max pool.
    "pytorch_resnet9_tiny": lambda name: make_resnet9_fixture(
        name, 1 / 16, batch=3, image_size=32, seed=11),
}


if __name__ == "__main__":
    names = sys.argv[1:] or list(FIXTURES)
    unknown = [name for name in names if name not in FIXTURES]
    if unknown:
        sys.exit(f"unknown fixture {', '.join(unknown)}; known: {', '.join(FIXTURES)}")
    for fixture_name in names:
        FIXTURES[fixture_name](fixture_name)
