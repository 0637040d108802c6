// The optimisers' update rules against closed forms computed in double, and the schedules.
using GRcn.Detection.Autograd;
using GRcn.Detection.Training;
using GRcn.Kernels;

namespace GRcn.Detection.Tests.Nn;

public sealed class OptimizerTests
{
    /// <summary>Allowed relative error of float32 updates against the double-precision closed form.</summary>
    private const double UpdateTol = 1e-5;

    [Fact]
    public void AdamWFollowsTorchsUpdateOverSeveralSteps()
    {
        float[] w0 = [0.5f, -1.25f, 2f, 0f, 3e-3f, -0.7f, 1.1f, 0.9f, -2.2f];
        var p = new Parameter(Tensor.FromArray((float[])w0.Clone(), 3, 3), trainable: true, weightDecay: true);
        var options = new TrainingOptions { Optimizer = OptimizerKind.AdamW, LearningRate = 0.01, WeightDecay = 0.1, Beta1 = 0.8, Beta2 = 0.95, Epsilon = 1e-6 };
        using var opt = new Optimizer([("w", p)], options);
        double[] w = [.. w0.Select(v => (double)v)], m = new double[9], v = new double[9];
        for (int t = 1; t <= 4; t++)
        {
            var g = w0.Select((x, i) => (float)Math.Sin(t * 1.7 + i) * (i + 1)).ToArray();
            p.Grad!.CopyFrom<float>(g);
            double lr = options.LearningRate * (1 + t) / 2; // any lr per step
            opt.Step(lr, t);
            for (int i = 0; i < 9; i++)
            {
                w[i] *= 1 - lr * options.WeightDecay;
                m[i] = options.Beta1 * m[i] + (1 - options.Beta1) * g[i];
                v[i] = options.Beta2 * v[i] + (1 - options.Beta2) * g[i] * g[i];
                double mHat = m[i] / (1 - Math.Pow(options.Beta1, t));
                double denom = Math.Sqrt(v[i]) / Math.Sqrt(1 - Math.Pow(options.Beta2, t)) + options.Epsilon;
                w[i] -= lr * mHat / denom;
            }
            var got = p.Value.ToArray<float>();
            for (int i = 0; i < 9; i++)
                Assert.True(Math.Abs(got[i] - w[i]) <= UpdateTol * Math.Max(1, Math.Abs(w[i])), $"step {t}, w[{i}]: got {got[i]}, want {w[i]}");
            Assert.All(p.Grad!.ToArray<float>(), x => Assert.Equal(0f, x)); // gradients are zeroed
        }
        Assert.Equal(["exp_avg.w", "exp_avg_sq.w"], opt.State.Keys.Order(StringComparer.Ordinal));
        p.Value.Dispose();
        p.Grad!.Dispose();
    }

    [Fact]
    public void CosineScheduleDecaysToZeroAfterTheWarmup()
    {
        var o = new TrainingOptions { LearningRate = 0.2, CosineIterations = 100, WarmupIterations = 10, WarmupFactor = 0.1, Steps = [50] };
        Assert.Equal(0.2 * 0.1, o.LearningRateAt(0), 12);
        Assert.Equal(0.2 * 0.5 * (1 + Math.Cos(Math.PI * 5 / 100)) * (0.1 * 0.5 + 0.5), o.LearningRateAt(5), 12);
        Assert.Equal(0.1, o.LearningRateAt(50), 12); // the step milestone is ignored under cosine
        Assert.Equal(0.0, o.LearningRateAt(100), 12);
        Assert.Equal(0.0, o.LearningRateAt(150), 12);
    }

    [Fact]
    public void AdamWUpdateRejectsABadStep()
    {
        using var a = Tensor.Zeros(Device.Cpu, 4);
        using var b = Tensor.Zeros(Device.Cpu, 4);
        using var c = Tensor.Zeros(Device.Cpu, 4);
        using var d = Tensor.Zeros(Device.Cpu, 5);
        var step = new AdamWStep(0.1f, 0.9f, 0.999f, 1e-8f, 0f, 1);
        Assert.Equal("expAvgSq", Assert.Throws<ArgumentException>(() => Elementwise.AdamWUpdate(a, b, c, d, step)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => Elementwise.AdamWUpdate(a, b, c, c, step with { Step = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Elementwise.AdamWUpdate(a, b, c, c, step with { Beta2 = 1f }));
    }
}
