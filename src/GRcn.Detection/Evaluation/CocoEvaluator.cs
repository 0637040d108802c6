// COCO-style bbox evaluation reproducing pycocotools COCOeval(iouType='bbox') with default
// Params: evaluate() → evaluateImg per (image, category, area range) with maxDets[-1] = 100,
// accumulate() → precision [T=10, R=101, K, A=4, M=3] and recall [T, K, A, M] (−1 where a
// setting has no non-ignored ground truth), summarize() → the 12 stats, plus AP70.
//
// Semantics kept from pycocotools (each is deliberate):
// * boxes are xywh doubles; IoU as maskApi.c bbIou, no +1; a crowd GT's IoU is
//   intersection / detection area; crowd GTs are "ignore" and may absorb many detections;
// * per image and category, detections sorted by a stable descending score (numpy mergesort on
//   −score) and cut to the first 100; AR1/AR10 reuse those matches, cut to 1 or 10;
// * GTs are ignored outside the area range (GT area = the annotation's area field, w·h for
//   ObjectAnnotation); the matcher visits GTs non-ignored first, takes a GT whose IoU is
//   ≥ min(t, 1 − 1e−10) and ≥ the best so far (so an equal IoU moves the match to the later
//   GT), skips taken non-crowd GTs and stops at the first ignored GT once it holds a regular
//   match; unmatched detections outside the area range are ignored;
// * a match stores the GT's annotation id and accumulate() tests it for non-zero, so a GT whose
//   id is 0 (possible only in a COCO JSON file) counts its matches as unmatched;
// * accumulate concatenates the per-image lists in image order and re-sorts them stably by
//   score; precision = tp / (tp + fp + 2^−52), made monotone from the right, sampled at the
//   recall thresholds by searchsorted(side='left'); thresholds past the last recall stay 0.
// Images play the role of pycocotools' sorted image ids in the order they were added; classes
// are categories in label order (a COCO file's categories sorted by id).
//
// Parallelism: Evaluate() runs categories in parallel (Parallel.For), each with its own scratch;
// every category writes a disjoint slice of the precision/recall arrays.
using System.Runtime.InteropServices;
using GRcn.Detection.Data;

namespace GRcn.Detection.Evaluation;

/// <summary>One ground-truth object as pycocotools sees it: xywh box, annotation area, category index.</summary>
internal readonly record struct CocoGtEntry(double X, double Y, double W, double H, double Area, int Category, bool IsCrowd, bool IdIsZero);

/// <summary>One detection as pycocotools sees it (its area is W·H).</summary>
internal readonly record struct CocoDtEntry(double X, double Y, double W, double H, double Score, int Category);

/// <summary>
/// Collects ground truth and detections image by image and evaluates them exactly as pycocotools'
/// COCOeval (bbox). Not thread-safe while adding; <see cref="Evaluate()"/> may be called repeatedly.
/// </summary>
public sealed class CocoEvaluator
{
    private readonly string[] _names;
    private readonly long[] _categoryIds;
    private readonly bool _difficultAsCrowd;
    private readonly List<CocoGtEntry> _gt = [];
    private readonly List<CocoDtEntry> _dt = [];
    private readonly List<int> _gtEnd = [];
    private readonly List<int> _dtEnd = [];

    /// <summary>
    /// An evaluator for <paramref name="classNames"/>.Count classes (labels 0..K−1, reported with
    /// category ids 0..K−1). COCO has no "difficult" flag: by default
    /// <see cref="ObjectAnnotation.Difficult"/> is not looked at; with
    /// <paramref name="difficultAsCrowd"/> a difficult object is evaluated like a crowd region
    /// (ignored, may absorb detections).
    /// </summary>
    public CocoEvaluator(IReadOnlyList<string> classNames, bool difficultAsCrowd = false)
        : this(classNames, null)
    {
        _difficultAsCrowd = difficultAsCrowd;
    }

    internal CocoEvaluator(IReadOnlyList<string> classNames, IReadOnlyList<long>? categoryIds)
    {
        ArgumentNullException.ThrowIfNull(classNames);
        if (classNames.Count == 0) throw new ArgumentException("expected at least one class name", nameof(classNames));
        if (categoryIds is not null && categoryIds.Count != classNames.Count)
            throw new ArgumentException($"expected {classNames.Count} category ids, got {categoryIds.Count}", nameof(categoryIds));
        _names = [.. classNames];
        _categoryIds = new long[_names.Length];
        for (int k = 0; k < _categoryIds.Length; k++) _categoryIds[k] = categoryIds is null ? k : categoryIds[k];
    }

    /// <summary>Number of classes K.</summary>
    public int ClassCount => _names.Length;

    /// <summary>Number of images added.</summary>
    public int ImageCount => _gtEnd.Count;

    /// <summary>
    /// Adds one image: its ground truth and its detections (any order, any count; only the 100
    /// best-scoring per class are evaluated, as pycocotools does). Boxes are converted to xywh in
    /// double: x = X1, w = X2 − X1; the GT area is w·h.
    /// </summary>
    public void AddImage(IReadOnlyList<ObjectAnnotation> groundTruth, IReadOnlyList<DetectedObject> detections)
    {
        EvaluationInput.Validate(groundTruth, detections, _names.Length);
        foreach (var o in groundTruth)
        {
            double w = (double)o.Box.X2 - o.Box.X1, h = (double)o.Box.Y2 - o.Box.Y1;
            _gt.Add(new CocoGtEntry(o.Box.X1, o.Box.Y1, w, h, w * h, o.Label, o.IsCrowd || (_difficultAsCrowd && o.Difficult), false));
        }
        foreach (var d in detections)
            _dt.Add(new CocoDtEntry(d.Box.X1, d.Box.Y1, (double)d.Box.X2 - d.Box.X1, (double)d.Box.Y2 - d.Box.Y1, d.Score, d.Label));
        _gtEnd.Add(_gt.Count);
        _dtEnd.Add(_dt.Count);
    }

    /// <summary>Adds one image from already-validated COCO entries (the JSON path).</summary>
    internal void AddEntries(ReadOnlySpan<CocoGtEntry> groundTruth, ReadOnlySpan<CocoDtEntry> detections)
    {
        foreach (var g in groundTruth) _gt.Add(g);
        foreach (var d in detections) _dt.Add(d);
        _gtEnd.Add(_gt.Count);
        _dtEnd.Add(_dt.Count);
    }

    /// <summary>Runs evaluate + accumulate + summarize over everything added so far.</summary>
    public CocoEvaluationResult Evaluate() => Evaluate(droppedDetections: 0);

    internal CocoEvaluationResult Evaluate(int droppedDetections)
    {
        int K = _names.Length, T = CocoParameters.IouThresholds.Length, R = CocoParameters.RecallThresholds.Length;
        int A = CocoParameters.AreaRanges.Length, M = CocoParameters.MaxDetections.Length;
        var precision = new double[T * R * K * A * M];
        var recall = new double[T * K * A * M];
        precision.AsSpan().Fill(-1);
        recall.AsSpan().Fill(-1);

        // Bucket entries by category, keeping (image, insertion) order inside each bucket.
        var gtSpan = CollectionsMarshal.AsSpan(_gt);
        var dtSpan = CollectionsMarshal.AsSpan(_dt);
        var gtImage = ImageOf(CollectionsMarshal.AsSpan(_gtEnd), gtSpan.Length);
        var dtImage = ImageOf(CollectionsMarshal.AsSpan(_dtEnd), dtSpan.Length);
        var gtStart = new int[K + 1];
        var dtStart = new int[K + 1];
        foreach (var g in gtSpan) gtStart[g.Category + 1]++;
        foreach (var d in dtSpan) dtStart[d.Category + 1]++;
        for (int k = 0; k < K; k++) { gtStart[k + 1] += gtStart[k]; dtStart[k + 1] += dtStart[k]; }
        var gtByCat = new int[gtSpan.Length];
        var dtByCat = new int[dtSpan.Length];
        var fill = (int[])gtStart.Clone();
        for (int i = 0; i < gtSpan.Length; i++) gtByCat[fill[gtSpan[i].Category]++] = i;
        fill = (int[])dtStart.Clone();
        for (int i = 0; i < dtSpan.Length; i++) dtByCat[fill[dtSpan[i].Category]++] = i;

        var gtCount = new int[K];
        var dtCount = new int[K];
        var gtArr = _gt.ToArray();
        var dtArr = _dt.ToArray();
        Parallel.For(0, K, () => new Scratch(), (k, _, s) =>
        {
            var job = new CategoryJob(gtArr, dtArr, gtImage, dtImage,
                gtByCat.AsSpan(gtStart[k], gtStart[k + 1] - gtStart[k]),
                dtByCat.AsSpan(dtStart[k], dtStart[k + 1] - dtStart[k]));
            gtCount[k] = EvaluateCategory(job, k, K, s, precision, recall);
            dtCount[k] = dtStart[k + 1] - dtStart[k];
            return s;
        }, _ => { });

        return new CocoEvaluationResult(_names, _categoryIds, gtCount, dtCount, precision, recall, ImageCount, droppedDetections);
    }

    private static int[] ImageOf(ReadOnlySpan<int> ends, int count)
    {
        var image = new int[count];
        int start = 0;
        for (int i = 0; i < ends.Length; i++)
        {
            image.AsSpan(start, ends[i] - start).Fill(i);
            start = ends[i];
        }
        return image;
    }

    private readonly ref struct CategoryJob(CocoGtEntry[] gt, CocoDtEntry[] dt, int[] gtImage, int[] dtImage, ReadOnlySpan<int> gtIdx, ReadOnlySpan<int> dtIdx)
    {
        public readonly CocoGtEntry[] Gt = gt;
        public readonly CocoDtEntry[] Dt = dt;
        public readonly int[] GtImage = gtImage;
        public readonly int[] DtImage = dtImage;
        public readonly ReadOnlySpan<int> GtIdx = gtIdx;
        public readonly ReadOnlySpan<int> DtIdx = dtIdx;
    }

    /// <summary>Per-thread buffers, grown on demand and reused across categories.</summary>
    private sealed class Scratch
    {
        // per image-category
        public int[] DetOrder = new int[128];
        public double[] Iou = new double[1024];
        public int[] GtOrder = new int[64];
        public bool[] GtIgnoreOriginal = new bool[64];
        public bool[] GtIgnore = new bool[64];
        public bool[] GtCrowd = new bool[64];
        public bool[] GtIdZero = new bool[64];
        public bool[] GtMatched = new bool[64];
        public bool[] DtOutside = new bool[128];
        // per category: kept detections (≤ 100 per image) in image order
        public readonly List<double> Scores = [];
        public readonly List<int> FlagBase = [];   // index of this det's t = 0 flag in Flags[a]
        public readonly List<int> FlagStride = [];  // D of its image: flag(t) = Flags[a][base + t·D]
        public readonly List<int> LocalRank = [];   // its rank inside its image (0 = best)
        public readonly List<byte>[] Flags = [[], [], [], []];
        public int[] Npig = new int[4];
        // accumulate
        public int[] Sorted = new int[256];
        public double[] Rc = new double[256];
        public double[] Pr = new double[256];

        public static T[] Ensure<T>(ref T[] a, int n)
        {
            if (a.Length < n) a = new T[Math.Max(n, a.Length * 2)];
            return a;
        }
    }

    private const byte FlagMatched = 1;   // dtm ≠ 0: matched to a GT with a non-zero id
    private const byte FlagIgnored = 2;   // dtIg

    /// <summary>evaluateImg for every image of category k and area range, then accumulate. Returns the non-crowd GT count.</summary>
    private static int EvaluateCategory(CategoryJob job, int k, int K, Scratch s, double[] precision, double[] recall)
    {
        var iouThr = CocoParameters.IouThresholds;
        var areas = CocoParameters.AreaRanges;
        int T = iouThr.Length, A = areas.Length;
        int maxDet = CocoParameters.MaxDetections[^1];
        s.Scores.Clear(); s.FlagBase.Clear(); s.FlagStride.Clear(); s.LocalRank.Clear();
        for (int a = 0; a < A; a++) { s.Flags[a].Clear(); s.Npig[a] = 0; }

        int gi = 0, di = 0, nonCrowd = 0;
        while (gi < job.GtIdx.Length || di < job.DtIdx.Length)
        {
            // The next image holding a GT or a detection of this category (pycocotools skips the others: evaluateImg → None).
            int img = Math.Min(gi < job.GtIdx.Length ? job.GtImage[job.GtIdx[gi]] : int.MaxValue,
                               di < job.DtIdx.Length ? job.DtImage[job.DtIdx[di]] : int.MaxValue);
            int g0 = gi, d0 = di;
            while (gi < job.GtIdx.Length && job.GtImage[job.GtIdx[gi]] == img) gi++;
            while (di < job.DtIdx.Length && job.DtImage[job.DtIdx[di]] == img) di++;
            var gts = job.GtIdx[g0..gi];
            var dts = job.DtIdx[d0..di];
            int G = gts.Length;

            // Detections: stable descending score, first maxDet.
            var order = Scratch.Ensure(ref s.DetOrder, dts.Length);
            for (int i = 0; i < dts.Length; i++) order[i] = dts[i];
            order.AsSpan(0, dts.Length).Sort(new DescendingScore(job.Dt));
            int D = Math.Min(dts.Length, maxDet);

            // IoU [D, G] against GTs in their original order (maskApi.c bbIou).
            var iou = Scratch.Ensure(ref s.Iou, D * G);
            for (int d = 0; d < D; d++)
            {
                ref readonly var dt = ref job.Dt[order[d]];
                for (int g = 0; g < G; g++) iou[d * G + g] = BbIou(dt, job.Gt[gts[g]]);
            }
            foreach (int g in gts) if (!job.Gt[g].IsCrowd) nonCrowd++;

            int flagOffset = s.Flags[0].Count;
            for (int d = 0; d < D; d++)
            {
                s.Scores.Add(job.Dt[order[d]].Score);
                s.FlagBase.Add(flagOffset + d);
                s.FlagStride.Add(D);
                s.LocalRank.Add(d);
            }

            var gtOrder = Scratch.Ensure(ref s.GtOrder, G);
            var ignOrig = Scratch.Ensure(ref s.GtIgnoreOriginal, G);
            var gtIg = Scratch.Ensure(ref s.GtIgnore, G);
            var crowd = Scratch.Ensure(ref s.GtCrowd, G);
            var idZero = Scratch.Ensure(ref s.GtIdZero, G);
            var taken = Scratch.Ensure(ref s.GtMatched, G);
            var outside = Scratch.Ensure(ref s.DtOutside, D);
            for (int a = 0; a < A; a++)
            {
                var rng = areas[a];
                // _ignore = iscrowd or area outside the range; gtind = argsort(_ignore, mergesort):
                // non-ignored first, each group in original order. gtIg/crowd/idZero below are in gtind order.
                for (int g = 0; g < G; g++)
                {
                    ref readonly var e = ref job.Gt[gts[g]];
                    ignOrig[g] = e.IsCrowd || e.Area < rng.Min || e.Area > rng.Max;
                }
                int n = 0;
                for (int g = 0; g < G; g++) if (!ignOrig[g]) gtOrder[n++] = g;
                s.Npig[a] += n;
                for (int g = 0; g < G; g++) if (ignOrig[g]) gtOrder[n++] = g;
                for (int j = 0; j < G; j++)
                {
                    ref readonly var e = ref job.Gt[gts[gtOrder[j]]];
                    gtIg[j] = ignOrig[gtOrder[j]];
                    crowd[j] = e.IsCrowd;
                    idZero[j] = e.IdIsZero;
                }
                for (int d = 0; d < D; d++)
                {
                    var e = job.Dt[order[d]];
                    double area = e.W * e.H;
                    outside[d] = area < rng.Min || area > rng.Max;
                }

                var flags = s.Flags[a];
                for (int t = 0; t < T; t++)
                {
                    Array.Clear(taken, 0, G);
                    for (int d = 0; d < D; d++)
                    {
                        int m = -1;
                        if (G > 0)
                        {
                            double best = Math.Min(iouThr[t], 1 - 1e-10);
                            for (int j = 0; j < G; j++)
                            {
                                int g = gtOrder[j];
                                if (taken[j] && !crowd[j]) continue;
                                if (m > -1 && !gtIg[m] && gtIg[j]) break;
                                double v = iou[d * G + g];
                                if (v < best) continue;
                                best = v;
                                m = j;
                            }
                        }
                        byte f = 0;
                        bool dtmNonZero = false;
                        if (m >= 0)
                        {
                            taken[m] = true;
                            if (gtIg[m]) f |= FlagIgnored;
                            dtmNonZero = !idZero[m];
                            if (dtmNonZero) f |= FlagMatched;
                        }
                        if (!dtmNonZero && outside[d]) f |= FlagIgnored;
                        flags.Add(f);
                    }
                }
            }
        }

        Accumulate(k, K, s, precision, recall);
        return nonCrowd;
    }

    /// <summary>maskApi.c bbIou for one pair: xywh, no +1; crowd → intersection / detection area.</summary>
    private static double BbIou(in CocoDtEntry d, in CocoGtEntry g)
    {
        double w = Math.Min(d.W + d.X, g.W + g.X) - Math.Max(d.X, g.X);
        if (w <= 0) return 0;
        double h = Math.Min(d.H + d.Y, g.H + g.Y) - Math.Max(d.Y, g.Y);
        if (h <= 0) return 0;
        double i = w * h;
        double da = d.W * d.H;
        double u = g.IsCrowd ? da : da + g.W * g.H - i;
        return i / u;
    }

    /// <summary>accumulate() for category k: every area range and detection cap.</summary>
    private static void Accumulate(int k, int K, Scratch s, double[] precision, double[] recall)
    {
        var recThr = CocoParameters.RecallThresholds;
        var maxDets = CocoParameters.MaxDetections;
        int T = CocoParameters.IouThresholds.Length, R = recThr.Length, A = CocoParameters.AreaRanges.Length, M = maxDets.Length;
        int total = s.Scores.Count;
        var scores = CollectionsMarshal.AsSpan(s.Scores);
        var rank = CollectionsMarshal.AsSpan(s.LocalRank);
        var fbase = CollectionsMarshal.AsSpan(s.FlagBase);
        var fstride = CollectionsMarshal.AsSpan(s.FlagStride);
        for (int m = 0; m < M; m++)
        {
            // Concatenate each image's first maxDets[m] detections (image order), then a stable
            // descending sort: ties keep concatenation order, i.e. ascending global index.
            var sorted = Scratch.Ensure(ref s.Sorted, total);
            int nd = 0;
            for (int i = 0; i < total; i++) if (rank[i] < maxDets[m]) sorted[nd++] = i;
            sorted.AsSpan(0, nd).Sort(new DescendingIndexScore(s.Scores));
            var rc = Scratch.Ensure(ref s.Rc, nd);
            var pr = Scratch.Ensure(ref s.Pr, nd);
            for (int a = 0; a < A; a++)
            {
                int npig = s.Npig[a];
                if (npig == 0) continue;   // also covers "no image has this category" (E empty)
                var flags = CollectionsMarshal.AsSpan(s.Flags[a]);
                for (int t = 0; t < T; t++)
                {
                    double tp = 0, fp = 0;
                    for (int i = 0; i < nd; i++)
                    {
                        int n = sorted[i];
                        byte f = flags[fbase[n] + t * fstride[n]];
                        if ((f & FlagIgnored) == 0)
                        {
                            if ((f & FlagMatched) != 0) tp++;
                            else fp++;
                        }
                        rc[i] = tp / npig;
                        pr[i] = tp / (fp + tp + Eps);
                    }
                    recall[((t * K + k) * A + a) * M + m] = nd > 0 ? rc[nd - 1] : 0;
                    for (int i = nd - 1; i > 0; i--)
                        if (pr[i] > pr[i - 1]) pr[i - 1] = pr[i];
                    // searchsorted(rc, recThrs, 'left'): first i with rc[i] ≥ threshold; past the end → 0.
                    int p = 0;
                    for (int r = 0; r < R; r++)
                    {
                        while (p < nd && rc[p] < recThr[r]) p++;
                        precision[(((t * R + r) * K + k) * A + a) * M + m] = p < nd ? pr[p] : 0;
                    }
                }
            }
        }
    }

    /// <summary>np.spacing(1) = 2^−52.</summary>
    private const double Eps = 2.220446049250313e-16;

    /// <summary>Orders detection indices by descending score, ties by ascending index (= a stable sort on −score).</summary>
    private readonly struct DescendingScore(CocoDtEntry[] dt) : IComparer<int>
    {
        public int Compare(int x, int y)
        {
            int c = dt[y].Score.CompareTo(dt[x].Score);
            return c != 0 ? c : x.CompareTo(y);
        }
    }

    private readonly struct DescendingIndexScore(List<double> scores) : IComparer<int>
    {
        public int Compare(int x, int y)
        {
            int c = scores[y].CompareTo(scores[x]);
            return c != 0 ? c : x.CompareTo(y);
        }
    }
}
