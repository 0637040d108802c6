#!/usr/bin/python3
"""Test oracle for GRcn.Detection.Evaluation: COCO bbox evaluation and Pascal VOC AP in numpy.

What it is
    An independent Python re-statement of the reference semantics, used only to produce the
    expected numbers in coco_oracle_cases.json (committed next to this script). pycocotools
    cannot be installed in this environment, so its bbox path is re-implemented here step by
    step, each step following the corresponding statement of the reference:

    * pycocotools COCOeval, iouType='bbox' — cocodataset/cocoapi,
      PythonAPI/pycocotools/cocoeval.py (Piotr Dollar and Tsung-Yi Lin, Simplified BSD):
      Params.setDetParams, _prepare, evaluate, computeIoU, evaluateImg, accumulate, summarize.
    * pycocotools COCO.loadRes (PythonAPI/pycocotools/coco.py): result 'area' = w*h,
      'id' = index+1, 'iscrowd' = 0; result image ids must be ground-truth images.
    * maskApi.c bbIou (cocoapi/common/maskApi.c): xywh boxes, no +1, crowd IoU = inter / dt area.
    * voc_eval.py / voc_ap of py-faster-rcnn (lib/datasets/voc_eval.py, Bharath Hariharan):
      +1 pixel widths, best-overlap ground truth, strict `ovmax > ovthresh`, 11-point and
      all-points AP. One deliberate difference: detections are ordered by a *stable* sort on
      -score (voc_eval.py uses numpy's default, unstable quicksort), which is what the C#
      evaluator documents.

    Names and loop structure mirror the reference so the two can be read side by side; the
    code is written for this project.

Run
    /usr/bin/python3 tests/GRcn.Detection.Tests/Evaluation/cocoeval_oracle.py
    rewrites coco_oracle_cases.json (deterministic: fixed seeds, sorted keys).

Fixture layout (one entry per case)
    name, note,
    gt: a COCO ground-truth dict (images / annotations / categories),
    results: a COCO results list ({image_id, category_id, bbox, score}),
    in_memory: true when every box/score is exactly representable as float32 and areas are
               w*h, so the case can also be fed through the ObjectAnnotation/Detection API,
    expected: stats (pycocotools' 12, in its order), ap70, per_class (by sorted category id:
              ap, ap50, ap70, ap75, ar100, -1 when absent), recall [T][K][A][M],
              precision_mean [T][K][A][M] (mean over the 101 recall thresholds, -1 when absent),
    voc (only some cases): per threshold, per class ap_area / ap_11 (-1 without positives).
"""

import json
import math
import os
import sys

import numpy as np

# ---------------------------------------------------------------------------------------------
# Params.setDetParams
# ---------------------------------------------------------------------------------------------
IOU_THRS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
REC_THRS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
MAX_DETS = [1, 10, 100]
AREA_RNG = [[0 ** 2, 1e5 ** 2], [0 ** 2, 32 ** 2], [32 ** 2, 96 ** 2], [96 ** 2, 1e5 ** 2]]
AREA_LBL = ['all', 'small', 'medium', 'large']


def bb_iou(dts, gts, crowd):
    """maskApi.c bbIou: dts m×4, gts n×4 (x, y, w, h) → m×n; crowd column: inter / dt area."""
    m, n = len(dts), len(gts)
    if m == 0 or n == 0:
        return []  # _mask.pyx iou() returns [] when either side is empty
    out = np.zeros((m, n))
    for g in range(n):
        gx, gy, gw, gh = (float(v) for v in gts[g])
        ga = gw * gh
        for d in range(m):
            dx, dy, dw, dh = (float(v) for v in dts[d])
            da = dw * dh
            w = min(dw + dx, gw + gx) - max(dx, gx)
            if w <= 0:
                continue
            h = min(dh + dy, gh + gy) - max(dy, gy)
            if h <= 0:
                continue
            inter = w * h
            union = da if crowd[g] else da + ga - inter
            out[d, g] = inter / union
    return out


class CocoBboxOracle:
    """COCOeval(cocoGt, cocoGt.loadRes(results), 'bbox') with default Params."""

    def __init__(self, gt, results):
        self.img_ids = sorted(np.unique([im['id'] for im in gt['images']]).tolist()) if gt['images'] else []
        self.cat_ids = sorted(np.unique([c['id'] for c in gt['categories']]).tolist()) if gt['categories'] else []
        img_set, cat_set = set(self.img_ids), set(self.cat_ids)
        # COCO.createIndex + getAnnIds(imgIds, catIds): per image in file order, filtered by category
        img_to_anns = {}
        for ann in gt.get('annotations', []):
            img_to_anns.setdefault(ann['image_id'], []).append(dict(ann))
        # loadRes
        res_img = set(r['image_id'] for r in results)
        assert res_img == (res_img & img_set), 'Results do not correspond to current coco set'
        dts_all = []
        for i, r in enumerate(results):
            r = dict(r)
            bb = r['bbox']
            r['area'] = bb[2] * bb[3]
            r['id'] = i + 1
            r['iscrowd'] = 0
            dts_all.append(r)
        res_to_anns = {}
        for r in dts_all:
            res_to_anns.setdefault(r['image_id'], []).append(r)
        # _prepare
        self.gts, self.dts = {}, {}
        for img in self.img_ids:
            for g in img_to_anns.get(img, []):
                if g['category_id'] not in cat_set:
                    continue
                g['ignore'] = 'iscrowd' in g and g['iscrowd']
                self.gts.setdefault((img, g['category_id']), []).append(g)
            for d in res_to_anns.get(img, []):
                if d['category_id'] not in cat_set:
                    continue
                self.dts.setdefault((img, d['category_id']), []).append(d)

    # evaluate -------------------------------------------------------------------------------
    def evaluate(self):
        self.ious = {(i, c): self.compute_iou(i, c) for i in self.img_ids for c in self.cat_ids}
        max_det = MAX_DETS[-1]
        self.eval_imgs = [self.evaluate_img(i, c, a, max_det)
                          for c in self.cat_ids for a in AREA_RNG for i in self.img_ids]

    def compute_iou(self, img, cat):
        gt = self.gts.get((img, cat), [])
        dt = self.dts.get((img, cat), [])
        if len(gt) == 0 and len(dt) == 0:
            return []
        order = np.argsort([-d['score'] for d in dt], kind='mergesort')
        dt = [dt[i] for i in order][:MAX_DETS[-1]]
        crowd = [int(g['iscrowd']) for g in gt]
        return bb_iou([d['bbox'] for d in dt], [g['bbox'] for g in gt], crowd)

    def evaluate_img(self, img, cat, a_rng, max_det):
        gt = self.gts.get((img, cat), [])
        dt = self.dts.get((img, cat), [])
        if len(gt) == 0 and len(dt) == 0:
            return None
        for g in gt:
            g['_ignore'] = 1 if (g['ignore'] or g['area'] < a_rng[0] or g['area'] > a_rng[1]) else 0
        gt_order = np.argsort([g['_ignore'] for g in gt], kind='mergesort')
        gt = [gt[i] for i in gt_order]
        dt_order = np.argsort([-d['score'] for d in dt], kind='mergesort')
        dt = [dt[i] for i in dt_order[0:max_det]]
        crowd = [int(g['iscrowd']) for g in gt]
        raw = self.ious[img, cat]
        ious = raw[:, gt_order] if len(raw) > 0 else raw
        T, G, D = len(IOU_THRS), len(gt), len(dt)
        gtm = np.zeros((T, G))
        dtm = np.zeros((T, D))
        gt_ig = np.array([g['_ignore'] for g in gt])
        dt_ig = np.zeros((T, D))
        if len(ious) != 0:
            for ti, thr in enumerate(IOU_THRS):
                for di, d in enumerate(dt):
                    best = min([thr, 1 - 1e-10])
                    m = -1
                    for gi in range(G):
                        if gtm[ti, gi] > 0 and not crowd[gi]:
                            continue          # already taken, and not a crowd region
                        if m > -1 and gt_ig[m] == 0 and gt_ig[gi] == 1:
                            break             # holding a regular match; the rest are ignored
                        if ious[di, gi] < best:
                            continue
                        best = ious[di, gi]
                        m = gi
                    if m == -1:
                        continue
                    dt_ig[ti, di] = gt_ig[m]
                    dtm[ti, di] = gt[m]['id']
                    gtm[ti, m] = d['id']
        outside = np.array([d['area'] < a_rng[0] or d['area'] > a_rng[1] for d in dt]).reshape((1, D))
        dt_ig = np.logical_or(dt_ig, np.logical_and(dtm == 0, np.repeat(outside, T, 0)))
        return {'dtMatches': dtm, 'dtScores': [d['score'] for d in dt], 'gtIgnore': gt_ig, 'dtIgnore': dt_ig}

    # accumulate -----------------------------------------------------------------------------
    def accumulate(self):
        T, R, K, A, M = len(IOU_THRS), len(REC_THRS), len(self.cat_ids), len(AREA_RNG), len(MAX_DETS)
        precision = -np.ones((T, R, K, A, M))
        recall = -np.ones((T, K, A, M))
        I0, A0 = len(self.img_ids), len(AREA_RNG)
        for k in range(K):
            Nk = k * A0 * I0
            for a in range(A):
                Na = a * I0
                for m, max_det in enumerate(MAX_DETS):
                    E = [self.eval_imgs[Nk + Na + i] for i in range(I0)]
                    E = [e for e in E if e is not None]
                    if len(E) == 0:
                        continue
                    scores = np.concatenate([e['dtScores'][0:max_det] for e in E])
                    order = np.argsort(-scores, kind='mergesort')
                    dtm = np.concatenate([e['dtMatches'][:, 0:max_det] for e in E], axis=1)[:, order]
                    dt_ig = np.concatenate([e['dtIgnore'][:, 0:max_det] for e in E], axis=1)[:, order]
                    gt_ig = np.concatenate([e['gtIgnore'] for e in E])
                    npig = np.count_nonzero(gt_ig == 0)
                    if npig == 0:
                        continue
                    tps = np.logical_and(dtm, np.logical_not(dt_ig))
                    fps = np.logical_and(np.logical_not(dtm), np.logical_not(dt_ig))
                    tp_sum = np.cumsum(tps, axis=1).astype(dtype=np.float64)
                    fp_sum = np.cumsum(fps, axis=1).astype(dtype=np.float64)
                    for t, (tp, fp) in enumerate(zip(tp_sum, fp_sum)):
                        nd = len(tp)
                        rc = tp / npig
                        pr = tp / (fp + tp + np.spacing(1))
                        q = np.zeros((R,))
                        recall[t, k, a, m] = rc[-1] if nd else 0
                        pr = pr.tolist()
                        q = q.tolist()
                        for i in range(nd - 1, 0, -1):
                            if pr[i] > pr[i - 1]:
                                pr[i - 1] = pr[i]
                        inds = np.searchsorted(rc, REC_THRS, side='left')
                        try:
                            for ri, pi in enumerate(inds):
                                q[ri] = pr[pi]
                        except IndexError:
                            pass
                        precision[t, :, k, a, m] = np.array(q)
        self.precision, self.recall = precision, recall

    # summarize ------------------------------------------------------------------------------
    def _summarize(self, ap=1, iou_thr=None, area='all', max_dets=100):
        aind = [i for i, lbl in enumerate(AREA_LBL) if lbl == area]
        mind = [i for i, md in enumerate(MAX_DETS) if md == max_dets]
        if ap == 1:
            s = self.precision
            if iou_thr is not None:
                s = s[np.where(iou_thr == IOU_THRS)[0]]
            s = s[:, :, :, aind, mind]
        else:
            s = self.recall
            if iou_thr is not None:
                s = s[np.where(iou_thr == IOU_THRS)[0]]
            s = s[:, :, aind, mind]
        return -1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1]))

    def summarize(self):
        md = MAX_DETS
        stats = [
            self._summarize(1),
            self._summarize(1, iou_thr=.5, max_dets=md[2]),
            self._summarize(1, iou_thr=.75, max_dets=md[2]),
            self._summarize(1, area='small', max_dets=md[2]),
            self._summarize(1, area='medium', max_dets=md[2]),
            self._summarize(1, area='large', max_dets=md[2]),
            self._summarize(0, max_dets=md[0]),
            self._summarize(0, max_dets=md[1]),
            self._summarize(0, max_dets=md[2]),
            self._summarize(0, area='small', max_dets=md[2]),
            self._summarize(0, area='medium', max_dets=md[2]),
            self._summarize(0, area='large', max_dets=md[2]),
        ]
        t70 = np.where(.7 == IOU_THRS)[0]
        assert len(t70) == 1, 'IoU 0.70 must be one of the thresholds'
        ap70 = self._summarize(1, iou_thr=.7, max_dets=md[2])
        per_class = []
        for k in range(len(self.cat_ids)):
            def mean_valid(x):
                x = x[x > -1]
                return float(np.mean(x)) if x.size else -1.0
            p = self.precision[:, :, k, 0, 2]
            per_class.append({
                'ap': mean_valid(p),
                'ap50': mean_valid(p[0]),
                'ap70': mean_valid(p[int(t70[0])]),
                'ap75': mean_valid(p[5]),
                'ar100': mean_valid(self.recall[:, k, 0, 2]),
            })
        prec_mean = np.where(self.precision[:, 0] > -1, self.precision.mean(axis=1), -1.0)
        return {'stats': stats, 'ap70': ap70, 'per_class': per_class,
                'recall': self.recall.tolist(), 'precision_mean': prec_mean.tolist()}


def coco_expected(gt, results):
    o = CocoBboxOracle(gt, results)
    o.evaluate()
    o.accumulate()
    return o.summarize()


# ---------------------------------------------------------------------------------------------
# voc_eval.py / voc_ap (py-faster-rcnn), stable score order
# ---------------------------------------------------------------------------------------------
def voc_ap(rec, prec, use_07_metric):
    if use_07_metric:
        ap = 0.
        for t in np.arange(0., 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.
        return float(ap)
    mrec = np.concatenate(([0.], rec, [1.]))
    mpre = np.concatenate(([0.], prec, [0.]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def voc_eval_class(gt, results, cat_id, ovthresh):
    """gt boxes are COCO xywh; converted to x1,y1,x2,y2 (x2 = x + w) as the C# Box holds them.
    difficult := iscrowd (the C# VocEvaluator ignores crowd objects like difficult ones)."""
    class_recs, npos = {}, 0
    for im in gt['images']:
        objs = [a for a in gt['annotations'] if a['image_id'] == im['id'] and a['category_id'] == cat_id]
        bbox = np.array([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2], a['bbox'][1] + a['bbox'][3]]
                         for a in objs]).reshape(-1, 4)
        difficult = np.array([bool(a.get('iscrowd', 0)) for a in objs], dtype=bool)
        npos += int(np.sum(~difficult))
        class_recs[im['id']] = {'bbox': bbox, 'difficult': difficult, 'det': [False] * len(objs)}
    dets = [r for r in results if r['category_id'] == cat_id]
    image_ids = [r['image_id'] for r in dets]
    confidence = np.array([r['score'] for r in dets], dtype=np.float64)
    BB = np.array([[r['bbox'][0], r['bbox'][1], r['bbox'][0] + r['bbox'][2], r['bbox'][1] + r['bbox'][3]]
                   for r in dets]).reshape(-1, 4)
    sorted_ind = np.argsort(-confidence, kind='mergesort')
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]
    nd = len(image_ids)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R['bbox'].astype(float)
        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1., 0.)
            ih = np.maximum(iymax - iymin + 1., 0.)
            inters = iw * ih
            uni = ((bb[2] - bb[0] + 1.) * (bb[3] - bb[1] + 1.) +
                   (BBGT[:, 2] - BBGT[:, 0] + 1.) * (BBGT[:, 3] - BBGT[:, 1] + 1.) - inters)
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax > ovthresh:
            if not R['difficult'][jmax]:
                if not R['det'][jmax]:
                    tp[d] = 1.
                    R['det'][jmax] = 1
                else:
                    fp[d] = 1.
        else:
            fp[d] = 1.
    if npos == 0:
        return -1.0, -1.0
    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(rec, prec, False), voc_ap(rec, prec, True)


def voc_expected(gt, results):
    out = {}
    for thr in (0.5, 0.7):
        rows = []
        for c in sorted(c['id'] for c in gt['categories']):
            area, p11 = voc_eval_class(gt, results, c, thr)
            rows.append({'ap_area': area, 'ap_11': p11})
        out[repr(thr)] = rows
    return out


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------
def f32(x):
    """Rounds to the nearest float32, so the C# Box/score floats hold the same value."""
    return float(np.float32(x))


class CaseBuilder:
    def __init__(self, name, note, categories, images):
        self.name, self.note = name, note
        self.gt = {'images': [{'id': i} for i in images],
                   'annotations': [],
                   'categories': [{'id': c, 'name': n} for c, n in categories]}
        self.results = []
        self.next_ann_id = 1
        self.in_memory = True

    def _check_float32(self, bbox):
        x, y, w, h = bbox
        if any(f32(v) != v for v in (x, y, x + w, y + h)) or (x + w) - x != w or (y + h) - y != h:
            self.in_memory = False

    def add_gt(self, image, cat, bbox, iscrowd=0, area=None, ann_id=None):
        w, h = bbox[2], bbox[3]
        self._check_float32(bbox)
        if area is not None and area != w * h:
            self.in_memory = False
        if ann_id is None:
            ann_id = self.next_ann_id
            self.next_ann_id += 1
        elif ann_id == 0:
            self.in_memory = False
        self.gt['annotations'].append({'id': ann_id, 'image_id': image, 'category_id': cat,
                                       'bbox': [float(v) for v in bbox],
                                       'area': float(w * h if area is None else area), 'iscrowd': iscrowd})

    def add_dt(self, image, cat, bbox, score):
        self._check_float32(bbox)
        self.results.append({'image_id': image, 'category_id': cat,
                             'bbox': [float(v) for v in bbox], 'score': f32(score)})

    def build(self, with_voc=False):
        case = {'name': self.name, 'note': self.note, 'gt': self.gt, 'results': self.results,
                'in_memory': self.in_memory and all(isinstance(i['id'], int) for i in self.gt['images']),
                'expected': coco_expected(self.gt, self.results)}
        if with_voc:
            case['voc'] = voc_expected(self.gt, self.results)
        return case


def crafted_cases():
    cases = []

    b = CaseBuilder('perfect_single', 'one GT, one exact detection: every metric 1 except APs/APm/ARs/ARm (-1)',
                    [(1, 'a')], [1])
    b.add_gt(1, 1, [10, 10, 100, 100])
    b.add_dt(1, 1, [10, 10, 100, 100], 0.9)
    cases.append(b.build(with_voc=True))

    b = CaseBuilder('tp_then_fp', 'one GT; a perfect det at 0.9 and a disjoint det at 0.8', [(1, 'a')], [1])
    b.add_gt(1, 1, [0, 0, 50, 50])
    b.add_dt(1, 1, [0, 0, 50, 50], 0.9)
    b.add_dt(1, 1, [200, 200, 50, 50], 0.8)
    cases.append(b.build(with_voc=True))

    b = CaseBuilder('fp_then_tp', 'one GT; a disjoint det at 0.9, then a perfect det at 0.8', [(1, 'a')], [1])
    b.add_gt(1, 1, [0, 0, 50, 50])
    b.add_dt(1, 1, [200, 200, 50, 50], 0.9)
    b.add_dt(1, 1, [0, 0, 50, 50], 0.8)
    cases.append(b.build(with_voc=True))

    b = CaseBuilder('iou_exactly_at_thresholds',
                    'GT 100x1 strips; dets cover 50, 60, 70, 75, 90, 95 percent: IoU equals the '
                    'threshold exactly (>= matches; 0.9 is 0.8999999999999999 in linspace)',
                    [(1, 'a')], [1, 2, 3, 4, 5, 6, 7])
    for img, frac in zip(range(1, 8), [50, 60, 70, 75, 90, 95, 49.75]):
        b.add_gt(img, 1, [0, 0, 100, 40])
        b.add_dt(img, 1, [0, 0, frac, 40], 0.5 + img / 100)
    cases.append(b.build(with_voc=True))

    b = CaseBuilder('duplicates', 'two identical dets on one GT (TP + FP), and a GT matched by a lower-score dup',
                    [(1, 'a')], [1, 2])
    b.add_gt(1, 1, [10, 10, 40, 40])
    b.add_dt(1, 1, [10, 10, 40, 40], 0.9)
    b.add_dt(1, 1, [10, 10, 40, 40], 0.9)
    b.add_gt(2, 1, [10, 10, 40, 40])
    b.add_gt(2, 1, [12, 12, 40, 40])
    b.add_dt(2, 1, [11, 11, 40, 40], 0.7)
    b.add_dt(2, 1, [11, 11, 40, 40], 0.6)
    b.add_dt(2, 1, [11, 11, 40, 40], 0.5)
    cases.append(b.build(with_voc=True))

    b = CaseBuilder('score_ties', 'equal scores within and across images: mergesort order decides precision',
                    [(1, 'a'), (2, 'b')], [3, 1, 2])
    for img in (1, 2, 3):
        b.add_gt(img, 1, [0, 0, 20, 20])
        b.add_gt(img, 2, [50, 50, 30, 30])
    b.add_dt(1, 1, [100, 100, 20, 20], 0.5)   # FP first in image 1
    b.add_dt(1, 1, [0, 0, 20, 20], 0.5)       # TP, same score
    b.add_dt(2, 1, [0, 0, 20, 20], 0.5)
    b.add_dt(3, 1, [300, 0, 20, 20], 0.5)
    b.add_dt(3, 1, [1, 1, 20, 20], 0.5)
    b.add_dt(1, 2, [50, 50, 30, 30], 0.25)
    b.add_dt(2, 2, [0, 0, 5, 5], 0.25)
    b.add_dt(3, 2, [52, 50, 30, 30], 0.25)
    b.add_dt(2, 2, [50, 52, 30, 30], 0.125)
    cases.append(b.build(with_voc=True))

    b = CaseBuilder('crowd', 'crowd GT: IoU = inter / det area; one crowd region absorbs several dets '
                    '(ignored) ranked above the true positive; crowd GT never counted; regular GT inside the crowd',
                    [(1, 'person')], [1, 2])
    b.add_gt(1, 1, [0, 0, 200, 200], iscrowd=1)
    b.add_gt(1, 1, [10, 10, 30, 60])
    b.add_dt(1, 1, [100, 100, 40, 40], 0.95)   # fully inside the crowd -> ignored
    b.add_dt(1, 1, [120, 120, 30, 30], 0.9)    # inside the same crowd -> ignored again
    b.add_dt(1, 1, [150, 150, 100, 100], 0.85) # 1/4 inside the crowd -> 0.25: FP from t = .5 on
    b.add_dt(1, 1, [10, 10, 30, 60], 0.8)      # matches the regular GT
    b.add_dt(1, 1, [12, 10, 30, 60], 0.75)     # regular GT taken -> crowd (ignored)
    b.add_dt(1, 1, [300, 300, 10, 10], 0.7)    # FP
    b.add_gt(2, 1, [0, 0, 50, 50], iscrowd=1)  # image with only a crowd GT
    b.add_dt(2, 1, [5, 5, 20, 20], 0.6)
    b.add_dt(2, 1, [60, 60, 20, 20], 0.3)
    cases.append(b.build(with_voc=False))

    b = CaseBuilder('break_on_ignored', 'det overlaps a regular GT above threshold and a crowd GT more: '
                    'stays on the regular GT (break); a det with only crowd overlap is ignored',
                    [(1, 'a')], [1])
    b.add_gt(1, 1, [0, 0, 100, 100], iscrowd=1)   # listed first, sorted last (ignored)
    b.add_gt(1, 1, [0, 0, 60, 100])
    b.add_gt(1, 1, [300, 300, 50, 50])
    b.add_dt(1, 1, [0, 0, 70, 100], 0.9)    # IoU regular 60/70=.857, crowd 1.0
    b.add_dt(1, 1, [0, 0, 65, 100], 0.8)    # regular taken -> crowd
    b.add_dt(1, 1, [305, 300, 50, 50], 0.7)
    cases.append(b.build(with_voc=False))

    b = CaseBuilder('equal_iou_tie_exact', 'det [5,0,20,10] vs GTs [0,0,20,10], [10,0,20,10]: IoU 15/25 = 0.6 '
                    'with both; second det fits only GT 1', [(1, 'a')], [1])
    b.add_gt(1, 1, [0, 0, 20, 10])
    b.add_gt(1, 1, [10, 0, 20, 10])
    b.add_dt(1, 1, [5, 0, 20, 10], 0.9)
    b.add_dt(1, 1, [0, 0, 16, 10], 0.8)     # IoU .8 with GT 1, 6/30=.2 with GT 2
    cases.append(b.build(with_voc=True))

    b = CaseBuilder('area_ranges', 'GTs small/medium/large, some with an explicit area field that differs '
                    'from w*h; out-of-range unmatched dets ignored per range', [(1, 'a'), (2, 'b')], [1, 2])
    b.add_gt(1, 1, [0, 0, 20, 20])                    # small (400)
    b.add_gt(1, 1, [100, 100, 50, 50])                # medium (2500)
    b.add_gt(1, 1, [300, 300, 120, 120])              # large (14400)
    b.add_gt(1, 1, [500, 0, 40, 40], area=900)        # box 1600 but area field 900 -> small
    b.add_gt(1, 1, [600, 0, 31, 33], area=1024)       # exactly 32^2 boundary: small and medium
    b.add_gt(1, 1, [700, 0, 96, 96])                  # exactly 96^2: medium and large
    b.add_dt(1, 1, [0, 0, 20, 20], 0.9)
    b.add_dt(1, 1, [101, 100, 50, 50], 0.85)
    b.add_dt(1, 1, [300, 300, 110, 120], 0.8)
    b.add_dt(1, 1, [500, 0, 40, 40], 0.75)
    b.add_dt(1, 1, [600, 0, 31, 33], 0.7)
    b.add_dt(1, 1, [700, 0, 96, 96], 0.65)
    b.add_dt(1, 1, [900, 900, 10, 10], 0.6)           # small FP
    b.add_dt(1, 1, [900, 0, 60, 60], 0.55)            # medium FP
    b.add_dt(1, 1, [1000, 0, 200, 200], 0.5)          # large FP
    b.add_gt(2, 2, [10, 10, 100, 100])
    b.add_dt(2, 2, [10, 10, 20, 20], 0.9)             # small det, IoU .04 -> small-range FP only
    b.add_dt(2, 2, [10, 10, 100, 95], 0.8)
    cases.append(b.build(with_voc=False))

    b = CaseBuilder('more_than_100_dets', '150 dets in one image (top 100 kept per image-category), '
                    'GTs hit by low-ranked dets; AR1/AR10/AR100 differ', [(1, 'a')], [1, 2])
    for j in range(12):
        b.add_gt(1, 1, [j * 50, 0, 40, 40])
    for j in range(150):
        score = f32(1.0 - j / 200.0)
        if j % 13 == 0:
            g = (j // 13) % 12
            b.add_dt(1, 1, [g * 50 + 1, 1, 40, 40], score)
        else:
            b.add_dt(1, 1, [j * 7, 500 + j, 30, 30], score)
    b.add_gt(2, 1, [0, 0, 40, 40])
    for j in range(105):
        b.add_dt(2, 1, [1000 + j, 1000, 10, 10], f32(0.99 - j / 1000.0))
    b.add_dt(2, 1, [0, 0, 40, 40], 0.001)            # 106th: dropped by maxDets
    cases.append(b.build(with_voc=False))

    b = CaseBuilder('no_gt_images_and_missing_categories',
                    'images without GT (dets -> FP), an empty image, a category with GT but no dets (AP 0), '
                    'a category with dets but no GT (-1, excluded), a category with nothing (-1)',
                    [(1, 'a'), (5, 'b'), (9, 'c'), (12, 'd')], [10, 20, 30, 40])
    b.add_gt(10, 1, [0, 0, 30, 30])
    b.add_dt(10, 1, [0, 0, 30, 30], 0.6)
    b.add_dt(20, 1, [0, 0, 30, 30], 0.9)              # image 20 has no GT at all
    b.add_dt(30, 1, [5, 5, 30, 30], 0.7)
    b.add_gt(10, 5, [40, 40, 60, 60])                 # category 5: GT, no detections
    b.add_dt(20, 9, [0, 0, 10, 10], 0.5)              # category 9: detections, no GT
    cases.append(b.build(with_voc=True))

    b = CaseBuilder('gt_id_zero', 'pycocotools quirk: a GT with annotation id 0 stores dtm=0, so a det '
                    'matched to it counts as unmatched (FP unless out of area range)', [(1, 'a')], [1])
    b.add_gt(1, 1, [0, 0, 50, 50], ann_id=0)
    b.add_gt(1, 1, [100, 100, 50, 50], ann_id=7)
    b.add_dt(1, 1, [0, 0, 50, 50], 0.9)
    b.add_dt(1, 1, [100, 100, 50, 50], 0.8)
    cases.append(b.build(with_voc=False))

    b = CaseBuilder('unknown_category_and_empty_results_image',
                    'a result with a category id the GT does not list is dropped; string image ids',
                    [(3, 'a')], ['img_b', 'img_a'])
    b.add_gt('img_a', 3, [0, 0, 10, 10])
    b.add_gt('img_b', 3, [0, 0, 10, 10])
    b.add_dt('img_b', 3, [0, 0, 10, 10], 0.5)
    b.add_dt('img_a', 4, [0, 0, 10, 10], 0.9)
    b.add_dt('img_a', 3, [0, 0, 10, 10], 0.5)
    cases.append(b.build(with_voc=False))

    b = CaseBuilder('degenerate_boxes', 'zero-width and zero-area boxes: IoU 0, area 0 is inside [0, 32^2]',
                    [(1, 'a')], [1])
    b.add_gt(1, 1, [0, 0, 0, 10])
    b.add_gt(1, 1, [20, 20, 10, 10])
    b.add_dt(1, 1, [0, 0, 0, 10], 0.9)
    b.add_dt(1, 1, [20, 20, 10, 10], 0.8)
    b.add_dt(1, 1, [20, 20, 0, 0], 0.7)
    cases.append(b.build(with_voc=False))

    b = CaseBuilder('empty_results', 'no detections at all: AP 0 and AR 0 where GT exists', [(1, 'a'), (2, 'b')], [1, 2])
    b.add_gt(1, 1, [0, 0, 10, 10])
    b.add_gt(2, 1, [0, 0, 100, 100])
    cases.append(b.build(with_voc=True))
    return cases


def random_case(seed=20260112, n_images=50, n_cats=5):
    rng = np.random.RandomState(seed)
    cat_ids = [1, 2, 4, 7, 11]
    b = CaseBuilder('random_50_images', f'seed {seed}: {n_images} images, {n_cats} categories, crowd ~5%, '
                    'jittered true positives, random false positives, scores rounded to 1/64 (ties), '
                    'two images with 120+ detections', [(c, f'class{c}') for c in cat_ids],
                    list(range(1, n_images + 1)))

    def half(x):
        return float(np.round(x * 2) / 2)
    for img in range(1, n_images + 1):
        n_gt = rng.randint(0, 9)
        gts = []
        for _ in range(n_gt):
            c = cat_ids[rng.randint(0, n_cats)]
            scale = [8, 20, 40, 80, 150][rng.randint(0, 5)]
            w = half(max(1.0, rng.uniform(0.5, 1.5) * scale))
            h = half(max(1.0, rng.uniform(0.5, 1.5) * scale))
            x, y = half(rng.uniform(0, 500)), half(rng.uniform(0, 400))
            crowd = 1 if rng.rand() < 0.05 else 0
            b.add_gt(img, c, [x, y, w, h], iscrowd=crowd)
            gts.append((c, x, y, w, h))
        for (c, x, y, w, h) in gts:
            for _ in range(rng.randint(0, 3)):
                jx, jy = half(rng.normal(0, 0.06 * w)), half(rng.normal(0, 0.06 * h))
                jw = half(max(0.5, w * rng.uniform(0.85, 1.15)))
                jh = half(max(0.5, h * rng.uniform(0.85, 1.15)))
                c2 = c if rng.rand() < 0.9 else cat_ids[rng.randint(0, n_cats)]
                b.add_dt(img, c2, [x + jx, y + jy, jw, jh], np.round(rng.uniform(0.3, 1.0) * 64) / 64)
        n_fp = rng.randint(0, 4) if img not in (7, 31) else 125
        for _ in range(n_fp):
            c = cat_ids[rng.randint(0, 2 if img in (7, 31) else n_cats)]
            w, h = half(rng.uniform(4, 160)), half(rng.uniform(4, 160))
            x, y = half(rng.uniform(0, 500)), half(rng.uniform(0, 400))
            b.add_dt(img, c, [x, y, w, h], np.round(rng.uniform(0.0, 0.8) * 64) / 64)
    return b.build(with_voc=True)


def main():
    cases = crafted_cases() + [random_case()]
    doc = {
        'format': 'grcn-coco-oracle/1',
        'generator': 'tests/GRcn.Detection.Tests/Evaluation/cocoeval_oracle.py',
        'numpy': np.__version__,
        'iou_thresholds': [repr(float(t)) for t in IOU_THRS],
        'recall_thresholds': [repr(float(r)) for r in REC_THRS],
        'cases': cases,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'coco_oracle_cases.json')
    with open(path, 'w') as f:
        json.dump(doc, f, sort_keys=True, separators=(',', ':'))
        f.write('\n')
    for c in cases:
        s = c['expected']['stats']
        print(f"{c['name']:45s} AP={s[0]:.4f} AP50={s[1]:.4f} AP75={s[2]:.4f} AR100={s[8]:.4f} "
              f"AP70={c['expected']['ap70']:.4f} in_memory={c['in_memory']}")
    print(f'wrote {path}', file=sys.stderr)


if __name__ == '__main__':
    main()
