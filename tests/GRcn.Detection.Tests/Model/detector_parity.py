#!/usr/bin/python3
"""Reference detections of torchvision's FasterRCNN for the C# whole-detector parity test.

Usage: /usr/bin/python3 detector_parity.py SPEC.json OUTDIR

SPEC.json (written by DetectorParityTests from the engine's own DetectorConfig) names the layout
and every setting torchvision needs: backbone ("vgg16" or "resnet50") and width multiplier,
pooler ("roi_pool", "roi_align" = MultiScaleRoIAlign(["0"], P, sampling_ratio=2), which calls
roi_align with aligned=False, or "roi_align_v2" = roi_align aligned=True), pool size, fc width,
classes (with background), anchors, the transform (min/max size, mean, std, size_divisible), the
RPN and box test settings, a seed and the images (raw 8-bit RGB files, row-major).

Builds torchvision 0.14's FasterRCNN of that layout, with the engine's channel widths:
  vgg16:    backbone = VGG16 features[:30] (make_layers of the scaled "D" config),
            box_head = TwoMLPHead(C·P·P, fc), box_predictor = FastRCNNPredictor(fc, K+1)
  resnet50: backbone = Sequential(conv1, bn1, relu, maxpool, layer1, layer2, layer3), the C4 box
            head = Sequential(layer4, AdaptiveAvgPool2d(1), Flatten), FrozenBatchNorm2d(eps 1e-5)
fills it with seeded random weights spread so that proposals and class scores differ clearly
(many detections, few near-ties), runs it in eval mode on each image alone and writes to OUTDIR:
  weights.safetensors     model.state_dict() with torchvision's key names
  detections.safetensors  per image i: boxes_i (N, 4) in original pixels, scores_i (N,),
                          labels_i (N,) int64 (1-based, torchvision's)
Exit status 3 when torch/torchvision/numpy cannot be imported.
"""
import json
import math
import os
import struct
import sys
from collections import OrderedDict

try:
    import numpy as np
    import torch
    import torchvision
    from torch import nn
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign, misc
except ImportError as e:  # pragma: no cover - reported by the C# test
    print(f"cannot import torch/torchvision/numpy ({e}); "
          "install them with: apt-get install python3-torch python3-torchvision", file=sys.stderr)
    sys.exit(3)

DTYPES = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}
VGG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def write_safetensors(path, tensors):
    """Minimal safetensors writer (Debian's torch 1.13 has no safetensors package)."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": DTYPES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def scaled(c, width):
    """The engine's channel rule: round(c · width) half away from zero, at least 1."""
    return max(1, int(math.floor(c * width + 0.5)))


class RoiPooler(nn.Module):
    """torchvision.ops.roi_pool / roi_align on the single feature map "0" (FasterRCNN's box_roi_pool call)."""

    def __init__(self, kind, size, scale):
        super().__init__()
        self.kind, self.size, self.scale = kind, size, scale

    def forward(self, features, proposals, image_shapes):
        x = features["0"]
        if self.kind == "roi_pool":
            return torchvision.ops.roi_pool(x, proposals, self.size, self.scale)
        return torchvision.ops.roi_align(x, proposals, self.size, self.scale, sampling_ratio=2, aligned=True)


def vgg_backbone(width):
    layers, c = [], 3
    for v in VGG_D[:-1]:  # features[:30]: conv5_3 and its ReLU, no pool5
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            o = scaled(v, width)
            layers += [nn.Conv2d(c, o, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c = o
    body = nn.Sequential(*layers)
    assert len(body) == 30
    body.out_channels = c
    return body, c


def resnet_c4(width):
    from torchvision.models.resnet import Bottleneck
    norm = misc.FrozenBatchNorm2d
    stem = scaled(64, width)
    conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
    layers, c = [], stem
    for k, n in enumerate([3, 4, 6, 3]):
        planes, stride = scaled(64 << k, width), (1 if k == 0 else 2)
        blocks = []
        for m in range(n):
            s = stride if m == 0 else 1
            down = None
            if m == 0 and (s != 1 or c != planes * 4):
                down = nn.Sequential(nn.Conv2d(c, planes * 4, 1, stride=s, bias=False), norm(planes * 4))
            blocks.append(Bottleneck(c, planes, s, down, norm_layer=norm))
            c = planes * 4
        layers.append(nn.Sequential(*blocks))
    trunk = nn.Sequential(conv1, norm(stem), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1), *layers[:3])
    trunk.out_channels = layers[2][-1].conv3.out_channels
    head = nn.Sequential(layers[3], nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return trunk, head, c


def randomise(model):
    """Seeded weights with spread: conv trunks kaiming (fan_out), RPN and predictor wide enough that
    objectness, class scores and box deltas differ clearly between boxes."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d) and (name.startswith("backbone") or name.startswith("roi_heads.box_head")):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    m.bias.uniform_(-0.1, 0.1)
            if isinstance(m, misc.FrozenBatchNorm2d):
                m.weight.uniform_(0.5, 1.0)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
        head = model.rpn.head
        conv = head.conv[0][0] if isinstance(head.conv, nn.Sequential) else head.conv
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        conv.bias.uniform_(-0.1, 0.1)
        nn.init.normal_(head.cls_logits.weight, std=0.5 / math.sqrt(conv.out_channels))
        head.cls_logits.bias.uniform_(-0.5, 0.5)
        nn.init.normal_(head.bbox_pred.weight, std=0.1 / math.sqrt(conv.out_channels))
        head.bbox_pred.bias.uniform_(-0.1, 0.1)
        pred = model.roi_heads.box_predictor
        fan = pred.cls_score.in_features
        nn.init.normal_(pred.cls_score.weight, std=2.0 / math.sqrt(fan))
        pred.cls_score.bias.uniform_(-1.0, 1.0)
        nn.init.normal_(pred.bbox_pred.weight, std=0.5 / math.sqrt(fan))
        pred.bbox_pred.bias.uniform_(-0.2, 0.2)


def build(spec):
    k1 = spec["classes_with_background"]
    pool = spec["pool_size"]
    if spec["pooler"] == "roi_align":
        pooler = MultiScaleRoIAlign(featmap_names=["0"], output_size=pool, sampling_ratio=2)
    else:
        pooler = RoiPooler(spec["pooler"], pool, 1.0 / 16)
    if spec["backbone"] == "vgg16":
        backbone, c = vgg_backbone(spec["width"])
        box_head = TwoMLPHead(c * pool * pool, spec["fc_dim"])
        predictor = FastRCNNPredictor(spec["fc_dim"], k1)
    else:
        backbone, box_head, c5 = resnet_c4(spec["width"])
        predictor = FastRCNNPredictor(c5, k1)
    anchors = AnchorGenerator(sizes=(tuple(spec["anchor_sizes"]),), aspect_ratios=(tuple(spec["aspect_ratios"]),))
    model = FasterRCNN(
        backbone, num_classes=None, min_size=spec["min_size"], max_size=spec["max_size"],
        image_mean=spec["mean"], image_std=spec["std"], size_divisible=spec["size_divisible"],
        rpn_anchor_generator=anchors, rpn_pre_nms_top_n_test=spec["rpn_pre_nms_test"],
        rpn_post_nms_top_n_test=spec["rpn_post_nms_test"], rpn_nms_thresh=spec["rpn_nms"],
        rpn_score_thresh=spec["rpn_score_thresh"], box_roi_pool=None, box_head=box_head,
        box_predictor=predictor, box_score_thresh=spec["box_score_thresh"], box_nms_thresh=spec["box_nms"],
        box_detections_per_img=spec["detections_per_img"], bbox_reg_weights=tuple(spec["box_weights"]))
    # FasterRCNN's constructor accepts only MultiScaleRoIAlign; the RoIHeads call any module
    model.roi_heads.box_roi_pool = pooler
    assert abs(model.rpn.min_size - spec["rpn_min_size"]) < 1e-9  # 1e-3 (the engine sends float32 1e-3)
    return model


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    out = sys.argv[2]
    torch.manual_seed(spec["seed"])
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    model = build(spec)
    randomise(model)
    model.eval()
    results = OrderedDict()
    counts = []
    with torch.no_grad():
        for i, img in enumerate(spec["images"]):
            raw = np.fromfile(img["path"], dtype=np.uint8).reshape(img["height"], img["width"], 3)
            x = torch.from_numpy(raw).permute(2, 0, 1).float().div(255)
            d = model([x])[0]
            results[f"boxes_{i}"] = d["boxes"]
            results[f"scores_{i}"] = d["scores"]
            results[f"labels_{i}"] = d["labels"].to(torch.int64)
            counts.append(int(d["boxes"].shape[0]))
    write_safetensors(os.path.join(out, "weights.safetensors"), model.state_dict())
    write_safetensors(os.path.join(out, "detections.safetensors"), results)
    print(json.dumps({"torch": torch.__version__, "torchvision": torchvision.__version__, "detections": counts}))


if __name__ == "__main__":
    main()
