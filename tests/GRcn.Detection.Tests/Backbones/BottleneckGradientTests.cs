// Finite-difference check of a Bottleneck's backward pass: the gradient of a random projection
// L = Σ r·y of its output with respect to a few input elements and a few weights of every conv,
// at the block's own stride and with the stride overridden. The block is piecewise linear in any
// one scalar, so central differences are exact away from ReLU kinks (detected by one-sided
// slopes that disagree, and skipped); the loss is summed in double.
using GRcn.Detection.Autograd;
using GRcn.Detection.Backbones;
using GRcn.Detection.Nn;
using GRcn.Kernels;

namespace GRcn.Detection.Tests.Backbones;

public sealed class BottleneckGradientTests
{
    /// <summary>Finite-difference step (float32 values of order 1).</summary>
    private const float Step = 1e-3f;

    /// <summary>
    /// Allowed |analytic − numeric| relative to max(1, |numeric|): float32 rounding of L (≈1e-6 over
    /// hundreds of outputs) divided by the step.
    /// </summary>
    private const double Tolerance = 3e-3;

    [Theory]
    [InlineData(null)]
    [InlineData(1)]
    public void Gradients_MatchFiniteDifferences(int? strideOverride)
    {
        var rng = new SplitMix64(21);
        using var block = new Bottleneck(Device.Cpu, rng, inChannels: 8, planes: 4, stride: 2, downsample: true);
        BackboneTests.RandomiseBatchNorm(block, rng);
        using var x = TestUtil.Normal(rng, 2, 8, 7, 6);
        int outH = strideOverride == 1 ? 7 : 4, outW = strideOverride == 1 ? 6 : 3;
        var r = new float[2 * 16 * outH * outW];
        for (int i = 0; i < r.Length; i++) r[i] = (float)rng.NextGaussian();

        // analytic gradients
        block.ZeroGrad();
        var input = new Variable(x.Clone(), requiresGrad: true);
        float[] gradX;
        using (var g = new Graph(Device.Cpu, training: true, recordGradients: true))
        {
            var y = block.Forward(g, input, strideOverride);
            Assert.Equal([2, 16, outH, outW], y.Shape.ToArray());
            g.Backward(g.HostLoss(y, (values, grad) =>
            {
                r.AsSpan().CopyTo(grad);
                return Projection(values, r);
            }));
            gradX = input.Grad!.ToArray<float>();
        }
        input.Value.Dispose();
        input.Grad?.Dispose();

        var checks = new List<(string What, Tensor Value, float Analytic, int Index)>();
        var pick = new SplitMix64(22);
        for (int k = 0; k < 6; k++)
        {
            int i = pick.NextInt((int)x.Length);
            checks.Add(($"x[{i}]", x, gradX[i], i));
        }
        foreach (var conv in new[] { block.Conv1, block.Conv2, block.Conv3, block.DownsampleConv! })
        {
            var gw = conv.Weight.Grad!.ToArray<float>();
            for (int k = 0; k < 3; k++)
            {
                int i = pick.NextInt(gw.Length);
                checks.Add(($"{Name(block, conv.Weight)}[{i}]", conv.Weight.Value, gw[i], i));
            }
        }

        int smooth = 0;
        foreach (var (what, value, analytic, index) in checks)
        {
            var host = value.ToArray<float>();
            float saved = host[index];
            double center = Loss(block, x, r, strideOverride);
            host[index] = saved + Step;
            value.CopyFrom<float>(host);
            double plus = Loss(block, x, r, strideOverride);
            host[index] = saved - Step;
            value.CopyFrom<float>(host);
            double minus = Loss(block, x, r, strideOverride);
            host[index] = saved;
            value.CopyFrom<float>(host);
            double numeric = (plus - minus) / (2 * Step);
            double scale = Math.Max(1, Math.Abs(numeric));
            // one-sided slopes that disagree mean a ReLU kink lies within ±Step: no exact reference there
            if (Math.Abs((plus - center) / Step - (center - minus) / Step) > 2 * Tolerance * scale) continue;
            smooth++;
            Assert.True(Math.Abs(analytic - numeric) <= Tolerance * scale, $"dL/d{what}: analytic {analytic}, numeric {numeric}");
        }
        Assert.True(smooth >= checks.Count * 3 / 4, $"only {smooth} of {checks.Count} checks were away from ReLU kinks");
    }

    private static string Name(Module m, Parameter p) => m.NamedParameters().First(e => ReferenceEquals(e.Parameter, p)).Name;

    private static double Projection(ReadOnlySpan<float> values, float[] r)
    {
        double sum = 0;
        for (int i = 0; i < values.Length; i++) sum += (double)values[i] * r[i];
        return sum;
    }

    private static double Loss(Bottleneck block, Tensor x, float[] r, int? strideOverride)
    {
        var y = TestUtil.Infer(x, (g, v) => block.Forward(g, v, strideOverride));
        return Projection(y.Values, r);
    }
}
