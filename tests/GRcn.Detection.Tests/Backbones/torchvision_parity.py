#!/usr/bin/python3
"""Reference feature maps of torchvision backbones for the C# parity tests.

Usage: /usr/bin/python3 torchvision_parity.py ARCH OUTDIR   (ARCH: vgg16, resnet50, resnet101)

Builds the torchvision network with a fixed seed and random weights (non-zero conv biases for
VGG; random non-trivial batch-norm weight, bias, running_mean and running_var for ResNet, some
variances close to eps, in eval mode, which is torchvision's FrozenBatchNorm2d with eps 1e-5), and writes to OUTDIR:
  weights.safetensors  the state dict as torchvision names it (ResNet: with fc.* and the int64
                       num_batches_tracked buffers; VGG: features.* plus tiny classifier.* stand-ins)
  io.safetensors       "input" (2, 3, 64, 80) and the reference outputs:
    vgg16:  conv4_3 = features[:23](x), conv5_3 = features[:30](x), pool5 = features(x),
            conv5_3_nopool4 = features[24:30](conv4_3),
            conv5_3_pool4s1 = features[24:30](max_pool2d(conv4_3, 2, stride 1))
    resnet: stem, layer1 .. layer4 (each the output after that stage),
            layer3_s1 = layer3 on layer2's output with layer3[0]'s conv2 and downsample stride 1,
            layer4_s1 = the same for layer4 on layer3's output
Exit status 3 (with a message) when torch/torchvision/numpy cannot be imported.
No safetensors package exists for Debian's torch 1.13, so the file format is written here.
"""
import copy
import json
import struct
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    import torchvision
except ImportError as e:  # pragma: no cover - reported by the C# test
    print(f"cannot import torch/torchvision/numpy ({e}); "
          "install them with: apt-get install python3-torch python3-torchvision", file=sys.stderr)
    sys.exit(3)

SEED = 20240607
DTYPES = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}


def write_safetensors(path, tensors):
    """Minimal safetensors writer: u64 header length, JSON header, little-endian data."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        dtype = DTYPES[a.dtype]
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def vgg16(x):
    # torchvision.models.vgg16().features is exactly make_layers(cfgs["D"]); building it alone
    # skips the 100M-parameter classifier, which the C# loader ignores anyway.
    from torchvision.models.vgg import cfgs, make_layers
    features = make_layers(cfgs["D"], batch_norm=False)
    assert len(features) == 31
    with torch.no_grad():
        for m in features:
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                m.bias.uniform_(-0.1, 0.1)
    features.eval()
    state = {"features." + k: v for k, v in features.state_dict().items()}
    # classifier entries as vgg16() names them (tiny shapes): the loader must skip them
    for i, shape in ((0, (8, 16)), (3, (8, 8)), (6, (10, 8))):
        state[f"classifier.{i}.weight"] = torch.randn(shape)
        state[f"classifier.{i}.bias"] = torch.randn(shape[0])
    with torch.no_grad():
        conv4_3 = features[:23](x)
        refs = {
            "conv4_3": conv4_3,
            "conv5_3": features[:30](x),
            "pool5": features(x),
            "conv5_3_nopool4": features[24:30](conv4_3),
            "conv5_3_pool4s1": features[24:30](F.max_pool2d(conv4_3, 2, stride=1)),
        }
    return state, refs


def stride1(layer):
    """A copy of a ResNet layer whose first block runs at stride 1 (same weights)."""
    layer = copy.deepcopy(layer)
    layer[0].conv2.stride = (1, 1)
    layer[0].downsample[0].stride = (1, 1)
    return layer


def resnet(depth, x):
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                assert m.eps == 1e-5
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                # an eighth of the channels with variances near eps, so eps must match exactly;
                # their weights are scaled down to keep activations O(1)
                k = max(1, m.num_features // 8)
                m.running_var[:k].uniform_(1e-6, 2e-5)
                m.weight[:k] *= torch.sqrt(m.running_var[:k] + m.eps)
                m.num_batches_tracked.fill_(100)
    model.eval()  # batch norm uses the running statistics: FrozenBatchNorm2d(eps=1e-5)
    with torch.no_grad():
        stem = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        c2 = model.layer1(stem)
        c3 = model.layer2(c2)
        c4 = model.layer3(c3)
        c5 = model.layer4(c4)
        refs = {
            "stem": stem, "layer1": c2, "layer2": c3, "layer3": c4, "layer4": c5,
            "layer3_s1": stride1(model.layer3)(c3),
            "layer4_s1": stride1(model.layer4)(c4),
        }
    return model.state_dict(), refs


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("vgg16", "resnet50", "resnet101"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    arch, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(SEED)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    x = torch.randn(2, 3, 64, 80)
    state, refs = vgg16(x) if arch == "vgg16" else resnet(int(arch[len("resnet"):]), x)
    write_safetensors(f"{out}/weights.safetensors", state)
    write_safetensors(f"{out}/io.safetensors", {"input": x, **refs})
    print(json.dumps({"arch": arch, "torch": torch.__version__, "torchvision": torchvision.__version__,
                      "outputs": {k: list(v.shape) for k, v in refs.items()}}))


if __name__ == "__main__":
    main()
