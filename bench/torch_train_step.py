#!/usr/bin/env python3
"""torchvision Faster R-CNN peer of `grcn bench train-step`: the same backbone (VGG16
features[:30] or ResNet C4 / -det, with the same width multiplier), anchors, RoI head widths,
image size and thread count; times one training step (forward, the four losses, backward,
SGD update) and one inference, median over --repeats after --warmup. Prints one JSON line.

Run with Debian's torch: /usr/bin/python3 bench/torch_train_step.py --backbone vgg16 --width 0.25 --size 320
On a GPU (the peer of `grcn bench train-step --device cuda`): --device cuda [--tf32], e.g.
  python3 bench/torch_train_step.py --device cuda --width 1 --size 600 --image-width 1000 --batch 2
(each timed call ends with torch.cuda.synchronize(); TF32 is off unless --tf32).
"""
import argparse, json, statistics, time
import torch, torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.rpn import AnchorGenerator
from torchvision.models.detection.faster_rcnn import TwoMLPHead, FastRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign, misc as misc_ops


def vgg16_trunk(width):
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            o = max(1, round(v * width))
            layers += [nn.Conv2d(c, o, 3, padding=1), nn.ReLU(inplace=True)]
            c = o
    trunk = nn.Sequential(*layers)
    trunk.out_channels = c
    return trunk


class C4Head(nn.Module):
    def __init__(self, layer4):
        super().__init__()
        self.layer4 = layer4

    def forward(self, x):
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.layer4(x), 1), 1)


def resnet(depth, width, det):
    base = max(1, round(64 * width))
    ctor = torchvision.models.resnet50 if depth == 50 else torchvision.models.resnet101
    # width_per_group scales only the 3x3 convs; scale every stage through inplanes/planes instead
    m = ctor(weights=None, norm_layer=misc_ops.FrozenBatchNorm2d)
    if width != 1.0:
        from torchvision.models.resnet import ResNet, Bottleneck
        layers = [3, 4, 6, 3] if depth == 50 else [3, 4, 23, 3]

        class Narrow(ResNet):
            def __init__(self):
                nn.Module.__init__(self)
                self._norm_layer = misc_ops.FrozenBatchNorm2d
                self.inplanes, self.dilation, self.groups, self.base_width = base, 1, 1, 64
                self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
                self.bn1 = misc_ops.FrozenBatchNorm2d(base)
                self.relu = nn.ReLU(inplace=True)
                self.maxpool = nn.MaxPool2d(3, 2, 1)
                self.layer1 = self._make_layer(Bottleneck, base, layers[0])
                self.layer2 = self._make_layer(Bottleneck, base * 2, layers[1], stride=2)
                self.layer3 = self._make_layer(Bottleneck, base * 4, layers[2], stride=2)
                self.layer4 = self._make_layer(Bottleneck, base * 8, layers[3], stride=2)
        m = Narrow()
    trunk = [m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3]
    if det:
        m.layer4[0].conv2.stride = (1, 1)
        m.layer4[0].downsample[0].stride = (1, 1)
        trunk.append(m.layer4)
    f = nn.Sequential(*trunk)
    f.out_channels = base * 4 * (8 if det else 4)
    return f, m.layer4, base * 4 * 8


def build(args, classes):
    anchors = AnchorGenerator(sizes=(tuple(args.anchors),), aspect_ratios=((0.5, 1.0, 2.0),))
    common = dict(min_size=min(args.size, args.image_width), max_size=max(args.size, args.image_width), rpn_anchor_generator=anchors,
                  rpn_pre_nms_top_n_train=12000, rpn_post_nms_top_n_train=2000,
                  rpn_pre_nms_top_n_test=6000, rpn_post_nms_top_n_test=300,
                  box_batch_size_per_image=128, box_score_thresh=0.05, box_nms_thresh=0.3)
    if args.backbone == "vgg16":
        trunk = vgg16_trunk(args.width)
        dim = max(16, round(4096 * args.width))
        pool = MultiScaleRoIAlign(["0"], 7, 2)
        head = TwoMLPHead(trunk.out_channels * 49, dim)
        return FasterRCNN(trunk, box_roi_pool=pool, box_head=head, box_predictor=FastRCNNPredictor(dim, classes + 1), **common)
    depth = 50 if args.backbone == "resnet50" else 101
    det = args.layout == "det"
    trunk, layer4, c5 = resnet(depth, args.width, det)
    if det:
        dim = max(16, round(1024 * args.width))
        return FasterRCNN(trunk, box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
                          box_head=TwoMLPHead(trunk.out_channels * 49, dim),
                          box_predictor=FastRCNNPredictor(dim, classes + 1), **common)
    return FasterRCNN(trunk, box_roi_pool=MultiScaleRoIAlign(["0"], 14, 2), box_head=C4Head(layer4),
                      box_predictor=FastRCNNPredictor(c5, classes + 1), **common)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="vgg16")
    ap.add_argument("--layout", default="c4", choices=["c4", "det"])
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--size", type=int, default=320, help="image height (and width unless --image-width)")
    ap.add_argument("--image-width", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in matmul and cuDNN (CUDA only)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--anchors", type=float, nargs="+", default=[32, 64, 128])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.image_width is None:
        args.image_width = args.size
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = build(args, args.classes).to(dev)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9, weight_decay=5e-4)
    s, sw = args.size, args.image_width
    images = [torch.rand(3, s, sw, device=dev) for _ in range(args.batch)]
    box = torch.tensor([[0.1 * sw, 0.1 * s, 0.4 * sw, 0.5 * s], [0.5 * sw, 0.2 * s, 0.9 * sw, 0.6 * s], [0.3 * sw, 0.6 * s, 0.6 * sw, 0.95 * s]], device=dev)
    targets = [{"boxes": box.clone(), "labels": torch.tensor([1, 2, 3], device=dev)} for _ in range(args.batch)]

    def train_step():
        model.train()
        losses = model(images, targets)
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()

    def infer():
        model.eval()
        with torch.no_grad():
            model(images)
        sync()

    out = {"peer": f"torchvision {torchvision.__version__} (torch {torch.__version__})", "backbone": args.backbone,
           "width": args.width, "size": s, "image_width": sw, "batch": args.batch, "threads": args.threads,
           "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "tf32": bool(args.tf32)}
    for name, fn in (("train_step_ms", train_step), ("inference_ms", infer)):
        for _ in range(args.warmup):
            fn()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
        out[name] = statistics.median(times)
        out[name.replace("_ms", "_min_ms")] = min(times)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
