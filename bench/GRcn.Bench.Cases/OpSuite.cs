// The op benchmark suite: the fixed list of cases (names, shapes, FLOP counts) that
// `grcn bench ops`, the BenchmarkDotNet project and bench/torch_ops.py all measure.
// Shapes are those of a VGG16 Faster R-CNN / G-RCN on a 600×800 image (stride-16 features
// 38×50, stride-8 features 76×100). Inputs are standard normal unless stated; RoIs and boxes
// lie inside the image. Keep this list and torch_ops.py in step.
using GRcn.Kernels;

namespace GRcn.Bench.Cases;

/// <summary>The op benchmark cases.</summary>
public static class OpSuite
{
    /// <summary>Image width (pixels) of the RoI cases; the 38×50 feature map is its stride-16 map.</summary>
    public const float ImageWidth = 800;

    /// <summary>Image height (pixels) of the RoI cases.</summary>
    public const float ImageHeight = 600;

    /// <summary>RoI sides are uniform in [<see cref="RoiMinSide"/>, <see cref="RoiMaxSide"/>] pixels.</summary>
    public const float RoiMinSide = 16;

    /// <summary>Largest RoI side in pixels.</summary>
    public const float RoiMaxSide = 400;

    /// <summary>Every case, in run order.</summary>
    public static IReadOnlyList<OpCase> All { get; } = Create();

    /// <summary>
    /// The cases whose name contains any of <paramref name="filters"/> (case-insensitive), in
    /// suite order; every case when no filter is given.
    /// </summary>
    public static IReadOnlyList<OpCase> Select(IReadOnlyCollection<string>? filters)
    {
        if (filters is null || filters.Count == 0) return All;
        return All.Where(c => filters.Any(f => c.Name.Contains(f, StringComparison.OrdinalIgnoreCase))).ToList();
    }

    /// <summary>The case named <paramref name="name"/> (exact match).</summary>
    /// <exception cref="ArgumentException">No case has that name.</exception>
    public static OpCase Get(string name) =>
        All.FirstOrDefault(c => c.Name == name) ?? throw new ArgumentException($"no benchmark case named '{name}'", nameof(name));

    private static List<OpCase> Create() =>
    [
        new("gemm_1024", "C (1024×1024) = A·B, K = 1024", FlopCount.Gemm(1024, 1024, 1024), inp =>
        {
            var a = inp.Normal(1024, 1024);
            var b = inp.Normal(1024, 1024);
            return () =>
            {
                using var c = Gemm.MatMul(a, b);
            };
        }),

        Conv("conv3x3_512_38x50_fwd", 512, 512, 38, 50, 3, 1, 1, backward: false),
        Conv("conv3x3_512_38x50_fwdbwd", 512, 512, 38, 50, 3, 1, 1, backward: true),
        Conv("conv3x3_64_150x200_fwd", 64, 64, 150, 200, 3, 1, 1, backward: false),
        Conv("conv3x3_3_64_300x400_fwd", 3, 64, 300, 400, 3, 1, 1, backward: false),
        Conv("conv2x2s2_512_76x100_fwdbwd", 512, 512, 76, 100, 2, 2, 0, backward: true),

        MaxPool("maxpool_2s2_512_76x100_fwdbwd", stride: 2),
        MaxPool("maxpool_2s1_512_76x100_fwdbwd", stride: 1),

        RoiAlignCase("roi_align_2000_fwd", 2000, backward: false),
        RoiAlignCase("roi_align_128_fwdbwd", 128, backward: true),
        RoiPoolCase("roi_pool_2000_fwd", 2000, backward: false),
        RoiPoolCase("roi_pool_128_fwdbwd", 128, backward: true),

        Attention("attention_128_fwdbwd", rois: 128, channels: 512, dim: 512, heads: 8, roiSide: 7, contextSide: 14),

        new("nms_12000", "NMS of 12000 boxes in a 600×600 image, sides uniform in [1, 100] px, uniform scores, IoU 0.7", null, inp =>
        {
            var boxes = inp.Boxes(12000, 600, 600, 1, 100);
            var scores = inp.Uniform(12000);
            return () =>
            {
                using var keep = Nms.Forward(boxes, scores, 0.7);
            };
        }),
    ];

    /// <summary>Conv x (1, C, H, W) * w (O, C, k, k) + bias; forward, or forward then backward (dx, dw, db).</summary>
    private static OpCase Conv(string name, int c, int o, int h, int w, int k, int stride, int pad, bool backward)
    {
        var options = Conv2dOptions.Create(stride, pad);
        var (oh, ow) = Kernels.Conv2d.OutputSize(h, w, k, k, options);
        string what = $"x (1,{c},{h},{w}), w ({o},{c},{k},{k}), bias, stride {stride}, pad {pad}" + (backward ? "; forward then backward (dx, dw, db)" : "; forward");
        return new OpCase(name, what, FlopCount.Conv2d(1, c, o, oh, ow, k, k, backward), inp =>
        {
            var x = inp.Normal(1, c, h, w);
            var weight = inp.Normal(o, c, k, k);
            var bias = inp.Normal(o);
            if (!backward)
            {
                return () =>
                {
                    using var y = Kernels.Conv2d.Forward(x, weight, bias, options);
                };
            }
            var gradY = inp.Normal(1, o, oh, ow);
            return () =>
            {
                using var y = Kernels.Conv2d.Forward(x, weight, bias, options);
                using var grads = Kernels.Conv2d.Backward(gradY, x, weight, withBias: true, options);
            };
        });
    }

    /// <summary>2×2 max pooling of x (1, 512, 76, 100), forward (with indices) then backward.</summary>
    private static OpCase MaxPool(string name, int stride)
    {
        const int c = 512, h = 76, w = 100;
        var options = MaxPool2dOptions.Create(2, stride);
        int oh = MaxPool2d.OutputSize(h, 2, stride, 0, false), ow = MaxPool2d.OutputSize(w, 2, stride, 0, false);
        return new OpCase(name, $"max pool 2×2 stride {stride} of x (1,{c},{h},{w}); forward then backward", null, inp =>
        {
            var x = inp.Normal(1, c, h, w);
            var gradY = inp.Normal(1, c, oh, ow);
            return () =>
            {
                using var r = MaxPool2d.Forward(x, options);
                using var dx = MaxPool2d.Backward(gradY, r.Indices, h, w, options);
            };
        });
    }

    /// <summary>RoIAlign 7×7, scale 1/16, sampling 2, aligned, of x (1, 512, 38, 50).</summary>
    private static OpCase RoiAlignCase(string name, int rois, bool backward)
    {
        var options = new RoiAlignOptions(7, 7, 1.0 / 16, SamplingRatio: 2, Aligned: true);
        return new OpCase(name, $"RoIAlign of {rois} RoIs on x (1,512,38,50), 7×7, scale 1/16, sampling 2, aligned" + (backward ? "; forward then backward" : ""), null, inp =>
        {
            var x = inp.Normal(1, 512, 38, 50);
            var r = inp.Rois(rois, ImageWidth, ImageHeight, RoiMinSide, RoiMaxSide);
            if (!backward)
            {
                return () =>
                {
                    using var y = RoiAlign.Forward(x, r, options);
                };
            }
            var gradY = inp.Normal(rois, 512, 7, 7);
            return () =>
            {
                using var y = RoiAlign.Forward(x, r, options);
                using var dx = RoiAlign.Backward(gradY, r, x.Shape, options);
            };
        });
    }

    /// <summary>RoIPool 7×7, scale 1/16, of x (1, 512, 38, 50).</summary>
    private static OpCase RoiPoolCase(string name, int rois, bool backward)
    {
        var options = new RoiPoolOptions(7, 7, 1.0 / 16);
        return new OpCase(name, $"RoIPool of {rois} RoIs on x (1,512,38,50), 7×7, scale 1/16" + (backward ? "; forward then backward" : ""), null, inp =>
        {
            var x = inp.Normal(1, 512, 38, 50);
            var r = inp.Rois(rois, ImageWidth, ImageHeight, RoiMinSide, RoiMaxSide);
            if (!backward)
            {
                return () =>
                {
                    using var y = RoiPool.Forward(x, r, options);
                };
            }
            var gradY = inp.Normal(rois, 512, 7, 7);
            return () =>
            {
                using var y = RoiPool.Forward(x, r, options);
                using var dx = RoiPool.Backward(gradY, r, y.Argmax, x.Shape, options);
            };
        });
    }

    /// <summary>
    /// Context attention of p (K, C, s, s) over one image's g (1, C, t, t), D = C, forward then
    /// backward (dp, dg, dw_q, dw_k), the backward reading the queries and attention weights the
    /// forward saved. w_q and w_k are N(0, 1/C) so the logits stay O(1).
    /// </summary>
    private static OpCase Attention(string name, int rois, int channels, int dim, int heads, int roiSide, int contextSide)
    {
        int q = roiSide * roiSide, m = contextSide * contextSide;
        return new OpCase(name, $"context attention p ({rois},{channels},{roiSide},{roiSide}), g (1,{channels},{contextSide},{contextSide}), D = {dim}, {heads} heads; forward then backward",
            FlopCount.ContextAttention(rois, q, 1, m, channels, dim, backward: true), inp =>
            {
                var p = inp.Normal(rois, channels, roiSide, roiSide);
                var g = inp.Normal(1, channels, contextSide, contextSide);
                var batchIndex = inp.Int64Zeros(rois);
                float scale = 1f / MathF.Sqrt(channels);
                var wq = inp.Normal(scale, dim, channels);
                var wk = inp.Normal(scale, dim, channels);
                var gradY = inp.Normal(rois, channels, roiSide, roiSide);
                // the forward keeps its queries and attention weights for the backward, as autograd does
                var saved = inp.Track(new ContextAttentionSaved());
                return () =>
                {
                    using var y = ContextAttention.Forward(p, g, batchIndex, wq, wk, heads, saved);
                    using var grads = ContextAttention.Backward(gradY, p, g, batchIndex, wq, wk, heads, saved);
                };
            });
    }
}
