#!/usr/bin/python3
"""Reference values of the box utilities and the RPN from torchvision 0.14.

Run with Debian's interpreter (torch 1.13 / torchvision 0.14):
    /usr/bin/python3 tests/GRcn.Detection.Tests/Rpn/Fixtures/make_rpn_fixtures.py
It rewrites the JSON files next to it: box_coder.json, anchors.json, matcher.json and
rpn_forward.json. Tensors are stored flattened (row-major) with their shape.
"""
import json
import math
import os

import torch
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import concat_box_prediction_layers, RegionProposalNetwork, RPNHead
from torchvision.ops import boxes as box_ops

HERE = os.path.dirname(os.path.abspath(__file__))


def t(x):
    x = x.detach().contiguous()
    return {"shape": list(x.shape), "data": x.reshape(-1).tolist()}


def save(name, obj):
    with open(os.path.join(HERE, name), "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")


def random_boxes(g, k, lo=0.0, hi=100.0, min_side=1.0, max_side=80.0):
    xy = torch.rand(k, 2, generator=g) * (hi - lo) + lo
    wh = torch.rand(k, 2, generator=g) * (max_side - min_side) + min_side
    return torch.cat([xy, xy + wh], dim=1)


def box_coder():
    g = torch.Generator().manual_seed(1)
    k = 40
    ref = random_boxes(g, k)
    gt = random_boxes(g, k)
    deltas = torch.randn(k, 4, generator=g) * 0.5
    # a few dw/dh beyond the clamp log(1000/16) ≈ 4.135
    deltas[0, 2] = 6.0
    deltas[1, 3] = 10.0
    deltas[2, 2:] = 4.2
    classes = 3
    deltas_c = torch.randn(k, 4 * classes, generator=g)
    deltas_c[3, 6] = 50.0
    cases = []
    for w in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        coder = det_utils.BoxCoder(w)
        scaled = deltas * torch.tensor(w)
        cases.append({
            "weights": list(w),
            "encode": t(coder.encode_single(gt, ref)),
            "deltas": t(scaled),
            "decode": t(coder.decode_single(scaled, ref)),
            "classes": classes,
            "deltas_per_class": t(deltas_c),
            "decode_per_class": t(coder.decode_single(deltas_c, ref)),
        })
    save("box_coder.json", {"reference": t(ref), "gt": t(gt), "cases": cases})


def anchors():
    cases = []
    for sizes, ratios, fh, fw, sh, sw in [
        ((128, 256, 512), (0.5, 1.0, 2.0), 3, 4, 16, 16),
        ((24.0, 45.0, 90.5), (0.7, 1.3), 2, 5, 8, 12),
        ((32,), (0.5, 1.0, 2.0), 1, 1, 16, 16),
    ]:
        gen = AnchorGenerator((sizes,), (ratios,))
        strides = [[torch.tensor(sh, dtype=torch.int64), torch.tensor(sw, dtype=torch.int64)]]
        a = gen.grid_anchors([[fh, fw]], strides)[0]
        cases.append({
            "sizes": [float(s) for s in sizes], "ratios": list(ratios),
            "feat_h": fh, "feat_w": fw, "stride_h": sh, "stride_w": sw,
            "cell": t(gen.cell_anchors[0]), "anchors": t(a),
        })
    save("anchors.json", {"cases": cases})


def matcher():
    g = torch.Generator().manual_seed(2)
    gen = AnchorGenerator(((16.0, 32.0),), ((0.5, 1.0, 2.0),))
    strides = [[torch.tensor(8), torch.tensor(8)]]
    anchors = gen.grid_anchors([[5, 6]], strides)[0]
    gt = random_boxes(g, 4, lo=0.0, hi=36.0, min_side=6.0, max_side=30.0)
    # an anchor copied exactly (IoU 1) and one box far away (its best IoU 0: every anchor ties)
    gt = torch.cat([gt, anchors[37:38], torch.tensor([[500.0, 500.0, 510.0, 510.0]])])
    iou = box_ops.box_iou(gt, anchors)
    cases = []
    for hi, lo, allow in [(0.7, 0.3, True), (0.7, 0.3, False), (0.5, 0.5, False), (0.5, 0.1, True)]:
        m = det_utils.Matcher(hi, lo, allow)(iou.clone())
        cases.append({"high": hi, "low": lo, "allow_low_quality": allow, "matches": m.tolist()})
    # the same without the far-away box (the far box makes every IoU-0 anchor a low-quality match)
    iou_near = iou[:-1]
    for hi, lo, allow in [(0.7, 0.3, True)]:
        m = det_utils.Matcher(hi, lo, allow)(iou_near.clone())
        cases.append({"high": hi, "low": lo, "allow_low_quality": allow, "drop_last_gt": True, "matches": m.tolist()})
    save("matcher.json", {"anchors": t(anchors), "gt": t(gt), "iou": t(iou), "cases": cases})


def rpn_forward():
    torch.manual_seed(3)
    g = torch.Generator().manual_seed(3)
    n, c, fh, fw, stride = 2, 8, 5, 6, 8
    sizes, ratios = (16.0, 32.0), (0.5, 1.0, 2.0)
    a = len(sizes) * len(ratios)
    features = torch.randn(n, c, fh, fw, generator=g)
    head = RPNHead(c, a)
    with torch.no_grad():
        head.conv[0][0].weight.copy_(torch.randn(c, c, 3, 3, generator=g) * 0.3)
        # a positive bias keeps the ReLU from zeroing whole locations (tied logits = bias)
        head.conv[0][0].bias.copy_(0.5 + torch.randn(c, generator=g) * 0.1)
        head.cls_logits.weight.copy_(torch.randn(a, c, 1, 1, generator=g) * 0.4)
        head.cls_logits.bias.copy_(torch.randn(a, generator=g) * 0.1)
        head.bbox_pred.weight.copy_(torch.randn(4 * a, c, 1, 1, generator=g) * 0.15)
        head.bbox_pred.bias.copy_(torch.randn(4 * a, generator=g) * 0.1)
    image_sizes = [(40, 48), (33, 41)]
    images = ImageList(torch.zeros(n, 3, fh * stride, fw * stride), image_sizes)
    gt = [
        torch.tensor([[2.0, 3.0, 20.0, 17.0], [10.0, 12.0, 42.0, 38.0], [30.0, 1.0, 47.0, 9.5]]),
        torch.zeros(0, 4),
    ]
    # image 1's last two boxes nearly coincide with anchors, so some anchors pass IoU 0.7 outright
    gt_two = [gt[0], torch.tensor([[5.0, 5.0, 21.0, 30.0], [22.0, 18.0, 40.0, 33.0], [9.0, 1.0, 25.0, 17.0], [10.0, 1.0, 41.0, 33.0]])]
    cases = []
    for name, training, targets, pre, post, score_thresh in [
        ("eval", False, None, 40, 8, 0.0),
        ("eval_score_thresh", False, None, 60, 40, 0.9),
        ("train_empty_gt", True, gt, 60, 100, 0.0),
        ("train", True, gt_two, 70, 40, 0.0),
    ]:
        rpn = RegionProposalNetwork(
            AnchorGenerator((sizes,), (ratios,)), head,
            fg_iou_thresh=0.7, bg_iou_thresh=0.3,
            # every labelled anchor is sampled, so the losses are deterministic
            batch_size_per_image=100000, positive_fraction=0.5,
            pre_nms_top_n={"training": pre, "testing": pre},
            post_nms_top_n={"training": post, "testing": post},
            nms_thresh=0.7, score_thresh=score_thresh)
        rpn.train(training)
        objectness, deltas = head([features])
        # the top-k selection and order must not hinge on float rounding: an image's first pre + 1
        # logits at least 1e-4 apart
        for o in concat_box_prediction_layers(objectness, deltas)[0].view(n, -1):
            s = o.sort(descending=True)[0][: pre + 1]
            assert (s[:-1] - s[1:]).min().item() > 1e-4, (name, (s[:-1] - s[1:]).min().item())
        boxes, losses = rpn(images, {"0": features}, [{"boxes": b} for b in targets] if targets is not None else None)
        scores = []
        # scores of the kept proposals, recomputed by filter_proposals (same path as forward)
        obj_flat, del_flat = concat_box_prediction_layers(objectness, deltas)
        anchors_list = rpn.anchor_generator(images, [features])
        props = rpn.box_coder.decode(del_flat.detach(), anchors_list).view(n, -1, 4)
        b2, s2 = rpn.filter_proposals(props, obj_flat, image_sizes, [obj_flat.shape[0] // n])
        for x, y in zip(boxes, b2):
            assert torch.equal(x, y)
        case = {
            "name": name, "training": training, "pre_nms_top_n": pre, "post_nms_top_n": post,
            "score_thresh": score_thresh,
            "proposals": [t(b) for b in boxes], "scores": [t(s) for s in s2],
        }
        if targets is not None:
            case["gt"] = [t(b) for b in targets]
            case["loss_objectness"] = losses["loss_objectness"].item()
            case["loss_rpn_box_reg"] = losses["loss_rpn_box_reg"].item()
            labels, _ = rpn.assign_targets_to_anchors(anchors_list, [{"boxes": b} for b in targets])
            case["labels"] = [t(l) for l in labels]
        cases.append(case)
        print(name, [len(b) for b in boxes], {k: v.item() for k, v in losses.items()})
    save("rpn_forward.json", {
        "n": n, "c": c, "feat_h": fh, "feat_w": fw, "stride": stride,
        "sizes": list(sizes), "ratios": list(ratios), "image_sizes": [list(s) for s in image_sizes],
        "features": t(features),
        "conv_weight": t(head.conv[0][0].weight), "conv_bias": t(head.conv[0][0].bias),
        "cls_weight": t(head.cls_logits.weight), "cls_bias": t(head.cls_logits.bias),
        "bbox_weight": t(head.bbox_pred.weight), "bbox_bias": t(head.bbox_pred.bias),
        "objectness": t(objectness[0]), "deltas": t(deltas[0]),
        "anchors": t(anchors_list[0]),
        "cases": cases,
    })


if __name__ == "__main__":
    box_coder()
    anchors()
    matcher()
    rpn_forward()
