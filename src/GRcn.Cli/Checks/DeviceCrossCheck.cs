// Runs every op, forward and backward, on the CPU backend and on another device with the same
// seeded inputs and compares the results: float outputs by the golden fixtures' rule
// (|got − want| ≤ atol + rtol·|want| with atol scaled by the tensor's largest magnitude),
// integer outputs (NMS keep lists, pooling argmax) exactly. Two scales: `small` (seconds on the
// emulator, for CI) and `large` (the detector's real sizes: VGG16 convolutions, 2000 RoIs,
// 12000 boxes; for a GPU).
using System.Diagnostics;
using GRcn.Kernels;

namespace GRcn.Cli.Checks;

/// <summary>The outcome of one compared tensor.</summary>
/// <param name="Case">The case, e.g. <c>roi_align_2000_fwdbwd</c>.</param>
/// <param name="Tensor">The compared output, e.g. <c>grad_x</c>.</param>
/// <param name="Passed">Whether every element is within tolerance (exactly equal for integers).</param>
/// <param name="MaxAbsError">Largest absolute difference.</param>
/// <param name="WorstRatio">Largest error / tolerance (0 for exact integer matches; mismatches count for integers).</param>
/// <param name="Seconds">Wall time of the case on the device, transfers included.</param>
public sealed record CrossCheckResult(string Case, string Tensor, bool Passed, double MaxAbsError, double WorstRatio, double Seconds);

/// <summary>The op cross-checks between the CPU backend and a device.</summary>
public static class DeviceCrossCheck
{
    /// <summary>Relative tolerance (the golden fixtures' rtol).</summary>
    public const double Rtol = 1e-4;

    /// <summary>Absolute tolerance as a fraction of the tensor's largest magnitude (sums of thousands of terms in another order).</summary>
    public const double AtolScale = 1e-4;

    /// <summary>The case names at a scale.</summary>
    public static IReadOnlyList<string> CaseNames(bool large) => Cases(large).Select(c => c.Name).ToList();

    /// <summary>Runs the cases whose name contains a filter (all without filters) and reports every compared tensor.</summary>
    public static IEnumerable<CrossCheckResult> Run(Device device, bool large, IReadOnlyCollection<string> filters)
    {
        foreach (var c in Cases(large))
        {
            if (filters.Count > 0 && !filters.Any(f => c.Name.Contains(f, StringComparison.OrdinalIgnoreCase))) continue;
            var rng = new Random(StableHash(c.Name));
            var cpu = new Outputs();
            var dev = new Outputs();
            c.Run(Device.Cpu, rng, cpu, null);
            var watch = Stopwatch.StartNew();
            c.Run(device, new Random(StableHash(c.Name)), dev, cpu);
            device.Synchronize();
            double seconds = watch.Elapsed.TotalSeconds;
            foreach (var (name, want) in cpu.Items)
            {
                var got = dev.Items.Single(i => i.Name == name).Value;
                yield return Compare(c.Name, name, want, got, seconds);
            }
        }
    }

    private static CrossCheckResult Compare(string caseName, string name, Array want, Array got, double seconds)
    {
        if (want is long[] wl)
        {
            var gl = (long[])got;
            int mismatches = Math.Abs(wl.Length - gl.Length);
            for (int i = 0; i < Math.Min(wl.Length, gl.Length); i++) if (wl[i] != gl[i]) mismatches++;
            return new CrossCheckResult(caseName, name, mismatches == 0, mismatches, mismatches, seconds);
        }
        var w = (float[])want;
        var g = (float[])got;
        if (w.Length != g.Length) return new CrossCheckResult(caseName, name, false, double.NaN, double.PositiveInfinity, seconds);
        double maxAbs = 0;
        foreach (float v in w) maxAbs = Math.Max(maxAbs, Math.Abs(v));
        double atol = Math.Max(AtolScale * maxAbs, 1e-6);
        double worstErr = 0, worstRatio = 0;
        for (int i = 0; i < w.Length; i++)
        {
            double err = Math.Abs((double)g[i] - w[i]);
            if (double.IsNaN(err)) err = float.IsNaN(w[i]) && float.IsNaN(g[i]) ? 0 : double.PositiveInfinity;
            worstErr = Math.Max(worstErr, err);
            worstRatio = Math.Max(worstRatio, err / (atol + Rtol * Math.Abs(w[i])));
        }
        return new CrossCheckResult(caseName, name, worstRatio <= 1, worstErr, worstRatio, seconds);
    }

    private static int StableHash(string s)
    {
        unchecked
        {
            int h = (int)2166136261;
            foreach (char ch in s) h = (h ^ ch) * 16777619;
            return h & int.MaxValue;
        }
    }

    /// <summary>Host copies of a case's outputs, in the order the case produced them.</summary>
    private sealed class Outputs
    {
        public List<(string Name, Array Value)> Items { get; } = [];

        public void Add(string name, Tensor t) =>
            Items.Add((name, t.DataType == DataType.Int64 ? t.ToArray<long>() : t.ToArray<float>()));
    }

    /// <param name="Run">Makes the inputs from the generator on the device, runs the op and records its outputs.</param>
    private sealed record Case(string Name, Action<Device, Random, Outputs, Outputs?> Run);

    private static Tensor Normal(Device d, Random r, params int[] shape)
    {
        long n = 1;
        foreach (int s in shape) n *= s;
        var a = new float[n];
        for (long i = 0; i < n; i++)
        {
            // Box–Muller
            double u1 = 1.0 - r.NextDouble(), u2 = r.NextDouble();
            a[i] = (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return Tensor.FromSpan<float>(d, a, shape);
    }

    /// <summary>k RoIs [batch, x1, y1, x2, y2] in an image of w×h pixels; a tenth reach outside it.</summary>
    private static Tensor Rois(Device d, Random r, int k, int batch, float w, float h)
    {
        var a = new float[k * 5];
        for (int i = 0; i < k; i++)
        {
            float bw = 8 + r.NextSingle() * w / 2, bh = 8 + r.NextSingle() * h / 2;
            float x1 = r.NextSingle() * (w - bw), y1 = r.NextSingle() * (h - bh);
            if (i % 10 == 9) (x1, y1) = (x1 - w / 4, y1 + h / 3);
            a[i * 5] = r.Next(batch);
            a[i * 5 + 1] = x1;
            a[i * 5 + 2] = y1;
            a[i * 5 + 3] = x1 + bw;
            a[i * 5 + 4] = y1 + bh;
        }
        return Tensor.FromSpan<float>(d, a, k, 5);
    }

    private static Tensor Boxes(Device d, Random r, int k, float size)
    {
        var a = new float[k * 4];
        for (int i = 0; i < k; i++)
        {
            float x = r.NextSingle() * size, y = r.NextSingle() * size;
            float bw = 4 + r.NextSingle() * size / 8, bh = 4 + r.NextSingle() * size / 8;
            (a[i * 4], a[i * 4 + 1], a[i * 4 + 2], a[i * 4 + 3]) = (x, y, x + bw, y + bh);
        }
        return Tensor.FromSpan<float>(d, a, k, 4);
    }

    private static Tensor Scores(Device d, Random r, int k)
    {
        var a = new float[k];
        // quantised scores: many exact ties, as detectors' scores have
        for (int i = 0; i < k; i++) a[i] = MathF.Round(r.NextSingle() * 1000) / 1000;
        return Tensor.FromSpan<float>(d, a, k);
    }

    private static IEnumerable<Case> Cases(bool large)
    {
        int s = large ? 1 : 0;
        int Pick(int small, int big) => s == 1 ? big : small;

        yield return new($"gemm_{Pick(67, 1024)}", (d, r, o, _) =>
        {
            int n = Pick(67, 1024);
            using var a = Normal(d, r, n, n + 3);
            using var b = Normal(d, r, n + 3, n - 1);
            using var c = Gemm.MatMul(a, b);
            o.Add("c", c);
        });

        foreach (var (name, c, oc, h, w, k, stride, pad) in new[]
        {
            ("conv3x3", Pick(8, 512), Pick(12, 512), Pick(9, 38), Pick(11, 50), 3, 1, 1),
            ("conv3x3_first_layer", 3, Pick(8, 64), Pick(13, 300), Pick(10, 400), 3, 1, 1),
            ("conv2x2s2", Pick(6, 512), Pick(5, 512), Pick(10, 76), Pick(9, 100), 2, 2, 0),
        })
        {
            yield return new($"{name}_fwdbwd", (d, r, o, _) =>
            {
                using var x = Normal(d, r, 2, c, h, w);
                using var wt = Normal(d, r, oc, c, k, k);
                using var b = Normal(d, r, oc);
                var options = new Conv2dOptions(stride, stride, pad, pad, 1, 1);
                using var y = Conv2d.Forward(x, wt, b, options);
                o.Add("y", y);
                using var gy = Normal(d, r, y.Shape.ToArray());
                using var gx = Tensor.Empty(d, DataType.Float32, x.Shape);
                using var gw = Tensor.Empty(d, DataType.Float32, wt.Shape);
                using var gb = Tensor.Empty(d, DataType.Float32, b.Shape);
                Conv2d.Backward(gy, x, wt, gx, gw, gb, options);
                o.Add("grad_x", gx);
                o.Add("grad_weight", gw);
                o.Add("grad_bias", gb);
            });
        }

        foreach (var (name, kk, ss) in new[] { ("max_pool2x2s1", 2, 1), ("max_pool2x2s2", 2, 2), ("max_pool3x3s2", 3, 2) })
        {
            yield return new($"{name}_fwdbwd", (d, r, o, _) =>
            {
                using var x = Normal(d, r, 2, Pick(5, 512), Pick(9, 76), Pick(13, 100));
                var options = new MaxPool2dOptions(kk, kk, ss, ss, kk == 3 ? 1 : 0, kk == 3 ? 1 : 0, CeilMode: kk == 3);
                using var res = MaxPool2d.Forward(x, options);
                o.Add("y", res.Output);
                o.Add("indices", res.Indices);
                using var gy = Normal(d, r, res.Output.Shape.ToArray());
                using var gx = MaxPool2d.Backward(gy, res.Indices, x.Dim(2), x.Dim(3), options);
                o.Add("grad_x", gx);
            });
        }

        int rois = Pick(37, 2000), channels = Pick(6, 512), fh = Pick(9, 38), fw = Pick(11, 50);
        foreach (bool aligned in new[] { true, false })
        foreach (int sampling in new[] { 2, 0 })
        {
            yield return new($"roi_align_{rois}{(aligned ? "_aligned" : "")}_s{sampling}_fwdbwd", (d, r, o, _) =>
            {
                using var x = Normal(d, r, 2, channels, fh, fw);
                using var boxes = Rois(d, r, rois, 2, fw * 16, fh * 16);
                var options = new RoiAlignOptions(7, 7, 1.0 / 16, sampling, aligned);
                using var y = RoiAlign.Forward(x, boxes, options);
                o.Add("y", y);
                using var gy = Normal(d, r, y.Shape.ToArray());
                using var gx = RoiAlign.Backward(gy, boxes, x.Shape, options);
                o.Add("grad_x", gx);
            });
        }

        yield return new($"roi_pool_{rois}_fwdbwd", (d, r, o, _) =>
        {
            using var x = Normal(d, r, 2, channels, fh, fw);
            using var boxes = Rois(d, r, rois, 2, fw * 16, fh * 16);
            var options = new RoiPoolOptions(7, 7, 1.0 / 16);
            using var res = RoiPool.Forward(x, boxes, options);
            o.Add("y", res.Output);
            o.Add("argmax", res.Argmax);
            using var gy = Normal(d, r, res.Output.Shape.ToArray());
            using var gx = RoiPool.Backward(gy, boxes, res.Argmax, x.Shape, options);
            o.Add("grad_x", gx);
        });

        yield return new($"context_attention_{Pick(5, 256)}_fwdbwd", (d, r, o, _) =>
        {
            int k = Pick(5, 256), c = Pick(8, 512), dd = Pick(8, 256), heads = Pick(2, 8), m = Pick(3, 14);
            using var p = Normal(d, r, k, c, 7, 7);
            using var g = Normal(d, r, 2, c, m, m);
            var bi = new long[k];
            for (int i = 0; i < k; i++) bi[i] = r.Next(2);
            using var batchIndex = Tensor.FromSpan<long>(d, bi, k);
            using var wq = Normal(d, r, dd, c);
            using var wk = Normal(d, r, dd, c);
            wq.CopyFrom(Scaled(wq, 1f / MathF.Sqrt(c)));
            wk.CopyFrom(Scaled(wk, 1f / MathF.Sqrt(c)));
            using var y = ContextAttention.Forward(p, g, batchIndex, wq, wk, heads);
            o.Add("y", y);
            using var gy = Normal(d, r, y.Shape.ToArray());
            using var grads = ContextAttention.Backward(gy, p, g, batchIndex, wq, wk, heads);
            o.Add("grad_p", grads.P);
            o.Add("grad_g", grads.G);
            o.Add("grad_w_q", grads.Wq);
            o.Add("grad_w_k", grads.Wk);
        });

        yield return new($"group_norm_{Pick(16, 512)}_fwdbwd", (d, r, o, _) =>
        {
            int c = Pick(16, 512);
            using var x = Normal(d, r, 2, c, Pick(5, 38), Pick(7, 50));
            using var wt = Normal(d, r, c);
            using var b = Normal(d, r, c);
            using var res = GroupNorm.Forward(x, Pick(4, 32), wt, b);
            o.Add("y", res.Output);
            using var gy = Normal(d, r, x.Shape.ToArray());
            using var gx = Tensor.Empty(d, DataType.Float32, x.Shape);
            using var gw = Tensor.Empty(d, DataType.Float32, c);
            using var gb = Tensor.Empty(d, DataType.Float32, c);
            GroupNorm.Backward(gy, x, res.Mean, res.Rstd, Pick(4, 32), wt, gx, gw, gb);
            o.Add("grad_x", gx);
            o.Add("grad_weight", gw);
            o.Add("grad_bias", gb);
        });

        int boxes = Pick(300, 12000);
        yield return new($"nms_{boxes}", (d, r, o, _) =>
        {
            using var b = Boxes(d, r, boxes, 800);
            using var sc = Scores(d, r, boxes);
            using var keep = Nms.Forward(b, sc, 0.7);
            o.Add("keep", keep);
        });
        yield return new($"batched_nms_{boxes}_80cls", (d, r, o, _) =>
        {
            using var b = Boxes(d, r, boxes, 800);
            using var sc = Scores(d, r, boxes);
            var ids = new long[boxes];
            for (int i = 0; i < boxes; i++) ids[i] = r.Next(80);
            using var idxs = Tensor.FromSpan<long>(d, ids, boxes);
            using var keep = BatchedNms.Forward(b, sc, idxs, 0.5);
            o.Add("keep", keep);
        });
        yield return new($"box_iou_{Pick(40, 2000)}", (d, r, o, _) =>
        {
            using var a = Boxes(d, r, Pick(40, 2000), 800);
            using var b = Boxes(d, r, Pick(30, 300), 800);
            using var iou = BoxIou.Forward(a, b);
            o.Add("iou", iou);
        });
    }

    private static float[] Scaled(Tensor t, float factor)
    {
        var a = t.ToArray<float>();
        for (int i = 0; i < a.Length; i++) a[i] *= factor;
        return a;
    }
}
