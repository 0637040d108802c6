// Gradient checks of every differentiable op and layer against central finite differences.
using GRcn.Detection.Autograd;
using GRcn.Detection.Nn;
using GRcn.Kernels;
using static GRcn.Detection.Tests.GradientCheck;

namespace GRcn.Detection.Tests.Nn;

public sealed class LayerGradientTests
{
    private static Variable In(Graph g, Tensor t) => g.Input(t, requiresGrad: true, owned: false);

    [Fact]
    public void Conv2dWithStridePaddingAndBias()
    {
        using var x = Random(1, 1f, 2, 3, 7, 6);
        using var w = Random(2, 0.5f, 4, 3, 3, 3);
        using var b = Random(3, 0.5f, 4);
        var o = Conv2dOptions.Create(stride: 2, padding: 1);
        Check(g =>
        {
            var (xv, wv, bv) = (In(g, x), In(g, w), In(g, b));
            return (Project(g, g.Conv2d(xv, wv, bv, o)), [xv, wv, bv]);
        });
    }

    [Fact]
    public void LinearLayer()
    {
        using var x = Random(4, 1f, 5, 6);
        using var w = Random(5, 0.5f, 3, 6);
        using var b = Random(6, 0.5f, 3);
        Check(g =>
        {
            var (xv, wv, bv) = (In(g, x), In(g, w), In(g, b));
            return (Project(g, g.Linear(xv, wv, bv)), [xv, wv, bv]);
        });
    }

    [Fact]
    public void ReluAndMaxPoolStride1And2()
    {
        using var x = Random(7, 1f, 2, 2, 6, 5);
        foreach (var opt in new[] { MaxPool2dOptions.Create(2, 2), MaxPool2dOptions.Create(2, 1), MaxPool2dOptions.Create(3, 2, 1) })
            Check(g =>
            {
                var xv = In(g, x);
                return (Project(g, g.MaxPool2d(g.Relu(xv), opt)), [xv]);
            }, eps: 1e-3f);
    }

    [Fact]
    public void GroupNormAllInputs()
    {
        using var x = Random(31, 1f, 2, 6, 4, 3);
        using var w = Random(32, 0.5f, 6);
        using var b = Random(33, 0.5f, 6);
        Check(g =>
        {
            var (xv, wv, bv) = (In(g, x), In(g, w), In(g, b));
            // the ReLU after the norm makes the projection's gradient depend on x̂ nonlinearly, as in the backbone
            return (Project(g, g.Relu(g.GroupNorm(xv, 3, wv, bv))), [xv, wv, bv]);
        }, eps: 1e-3f);
    }

    [Fact]
    public void FrozenBatchNormPassesScaledGradient()
    {
        using var bn = new FrozenBatchNorm2d(Device.Cpu, 3);
        bn.Weight.Load([2f, -1f, 0.5f]);
        bn.Bias.Load([0.1f, 0.2f, 0.3f]);
        bn.RunningMean.Load([1f, 0f, -1f]);
        bn.RunningVar.Load([4f, 1f, 0.25f]);
        bn.Invalidate();
        using var x = Random(8, 1f, 2, 3, 4, 4);
        Check(g =>
        {
            var xv = In(g, x);
            return (Project(g, bn.Forward(g, xv)), [xv]);
        });
        using var g2 = new Graph(Device.Cpu, false, false);
        using var one = Tensor.Zeros(Device.Cpu, 1, 3, 1, 1);
        one.CopyFrom<float>([1f, 0f, -1f]);
        var y = bn.Forward(g2, g2.Constant(one, owned: false)).Value.ToArray<float>();
        // (x − mean)/√(var + 1e-5)·w + b
        Assert.Equal(0f * 2f + 0.1f, y[0], 5);
        Assert.Equal(0f * -1f + 0.2f, y[1], 5);
        Assert.Equal(0f * 0.5f + 0.3f, y[2], 5);
    }

    [Fact]
    public void AddScaleReshapeConcatSliceAndAveragePool()
    {
        using var a = Random(9, 1f, 2, 3, 2, 2);
        using var b = Random(10, 1f, 2, 3, 2, 2);
        using var c = Random(11, 1f, 1, 3, 2, 2);
        Check(g =>
        {
            var (av, bv, cv) = (In(g, a), In(g, b), In(g, c));
            var sum = g.Scale(g.Add(av, bv), 0.5f);
            var cat = g.Concat([sum, cv]);
            var mid = g.Slice(cat, 1, 2);
            var pooled = g.GlobalAveragePool(mid);
            return (Project(g, g.Reshape(pooled, 6)), [av, bv, cv]);
        });
    }

    [Fact]
    public void DropoutUsesOneMaskForwardAndBackward()
    {
        using var x = Random(12, 1f, 4, 8);
        Check(g =>
        {
            var xv = In(g, x);
            return (Project(g, g.Dropout(xv, 0.5f)), [xv]);
        }, probes: 12);
        using var g2 = new Graph(Device.Cpu, training: true, recordGradients: false, seed: 5);
        var y = g2.Dropout(g2.Constant(x, owned: false), 0.5f).Value.ToArray<float>();
        var xs = x.ToArray<float>();
        int zeros = 0;
        for (int i = 0; i < y.Length; i++)
        {
            if (y[i] == 0f) zeros++;
            else Assert.Equal(2 * xs[i], y[i], 5);
        }
        Assert.InRange(zeros, 6, 26);
        using var g3 = new Graph(Device.Cpu, training: false, recordGradients: false);
        Assert.Equal(xs, g3.Dropout(g3.Constant(x, owned: false), 0.5f).Value.ToArray<float>());
    }

    [Fact]
    public void RoiPoolAndRoiAlign()
    {
        using var x = Random(13, 1f, 2, 3, 8, 8);
        using var rois = Tensor.FromArray(new float[] { 0, 1, 1, 12, 10, 1, 0, 2, 15, 15, 0, 4, 4, 9, 14 }, 3, 5);
        Check(g =>
        {
            var xv = In(g, x);
            return (Project(g, g.RoiPool(xv, rois, new RoiPoolOptions(3, 3, 0.5))), [xv]);
        }, eps: 1e-3f, probes: 16);
        Check(g =>
        {
            var xv = In(g, x);
            return (Project(g, g.RoiAlign(xv, rois, new RoiAlignOptions(3, 3, 0.5, 2, true))), [xv]);
        }, probes: 16);
    }

    [Fact]
    public void ContextAttentionAllInputs()
    {
        using var p = Random(14, 1f, 3, 4, 2, 2);
        using var ctx = Random(15, 1f, 2, 4, 3, 3);
        using var idx = Tensor.FromArray(new long[] { 0, 1, 1 }, 3);
        using var wq = Random(16, 0.5f, 4, 4);
        using var wk = Random(17, 0.5f, 4, 4);
        Check(g =>
        {
            var (pv, cv, qv, kv) = (In(g, p), In(g, ctx), In(g, wq), In(g, wk));
            return (Project(g, g.ContextAttention(pv, cv, idx, qv, kv, heads: 2)), [pv, cv, qv, kv]);
        });
        // with a saved block the backward reads the forward's queries and weights: the same gradients, bit for bit
        using var saved = new ContextAttentionSaved();
        var recomputed = ContextAttentionGradients(p, ctx, idx, wq, wk, null);
        for (int pass = 0; pass < 2; pass++)
        {
            var kept = ContextAttentionGradients(p, ctx, idx, wq, wk, saved);
            for (int i = 0; i < kept.Length; i++) Assert.Equal(recomputed[i], kept[i]);
        }
        Check(g =>
        {
            var (pv, cv, qv, kv) = (In(g, p), In(g, ctx), In(g, wq), In(g, wk));
            return (Project(g, g.ContextAttention(pv, cv, idx, qv, kv, heads: 2, saved)), [pv, cv, qv, kv]);
        });
    }

    private static float[][] ContextAttentionGradients(Tensor p, Tensor ctx, Tensor idx, Tensor wq, Tensor wk, ContextAttentionSaved? saved)
    {
        using var g = new Graph(Device.Cpu, training: true, recordGradients: true);
        var inputs = new[] { In(g, p), In(g, ctx), In(g, wq), In(g, wk) };
        g.Backward(Project(g, g.ContextAttention(inputs[0], inputs[1], idx, inputs[2], inputs[3], heads: 2, saved)));
        return inputs.Select(v => v.Grad!.ToArray<float>()).ToArray();
    }

    [Fact]
    public void LossesMatchClosedFormsAndGradients()
    {
        using var logits = Random(18, 2f, 4, 3);
        int[] labels = [0, 2, 1, 2];
        float[] weights = [1f, 0.5f, 2f, 1f];
        Check(g =>
        {
            var lv = In(g, logits);
            return (Losses.SoftmaxCrossEntropy(g, lv, labels, weights), [lv]);
        });
        using var pred = Random(19, 1f, 3, 8);
        int[] rows = [0, 2];
        int[] classes = [1, 0];
        float[] targets = [0.1f, -0.2f, 0.9f, 0.05f, -1f, 0.3f, 0.02f, 0.5f];
        Check(g =>
        {
            var pv = In(g, pred);
            return (Losses.SmoothL1(g, pv, rows, classes, targets, 1f / 9, 4, [1f, 3f]), [pv]);
        }, eps: 1e-3f);
        using var z = Random(20, 3f, 10);
        Check(g =>
        {
            var zv = In(g, z);
            return (Losses.BinaryCrossEntropyWithLogits(g, zv, [0, 3, 4, 9], [1f, 0f, 1f, 0f], 4), [zv]);
        });

        // closed forms: CE of uniform logits is log K; BCE(0, t) = log 2; smooth-L1(d=2, β=1) = 1.5
        using var g2 = new Graph(Device.Cpu, false, false);
        using var zeros = Tensor.Zeros(Device.Cpu, 2, 4);
        Assert.Equal(Math.Log(4), g2.Const(Losses.SoftmaxCrossEntropy(g2, g2.Constant(zeros, false), [1, 3])), 5);
        Assert.Equal(Math.Log(2), g2.Const(Losses.BinaryCrossEntropyWithLogits(g2, g2.Constant(zeros, false), [0, 5], [1f, 0f], 2)), 5);
        Assert.Equal(1.5, g2.Const(Losses.SmoothL1(g2, g2.Constant(zeros, false), [1], [0], [2f, 0f, 0f, 0f], 1f, 1)), 5);
    }
}

internal static class GraphTestExtensions
{
    public static double Const(this Graph _, Variable v) => v.Value.ToArray<float>()[0];
}
