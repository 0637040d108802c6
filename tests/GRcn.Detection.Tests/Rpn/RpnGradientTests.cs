using GRcn.Detection.Autograd;
using GRcn.Detection.Rpn;
using GRcn.Kernels;

namespace GRcn.Detection.Tests.Rpn;

public class RpnGradientTests
{
    // central differences of a float32 loss: step and tolerance sized for its ~1e-7 relative rounding
    private const float Step = 3e-3f;
    private const double GradAtol = 1e-4, GradRtol = 1e-2;

    [Fact]
    public void HeadAndLossGradientsMatchFiniteDifferences()
    {
        var options = new RpnOptions { AnchorSizes = [8f, 16f], AspectRatios = [1f, 2f], BatchSizePerImage = 24 };
        using var rpn = new RegionProposalNetwork(Device.Cpu, new SplitMix64(1), 3, options);
        var rng = new SplitMix64(2);
        // larger weights than the N(0, 0.01²) initialisation, so every term has a visible gradient
        foreach (var (name, p) in rpn.NamedParameters())
        {
            var v = new float[p.Value.Length];
            for (int i = 0; i < v.Length; i++) v[i] = (float)(rng.NextGaussian() * (name.EndsWith("bias") ? 0.1 : 0.4));
            p.Load(v);
        }
        var fv = new float[2 * 3 * 3 * 4];
        for (int i = 0; i < fv.Length; i++) fv[i] = (float)rng.NextGaussian();
        var features = new Parameter(Tensor.FromSpan<float>(Device.Cpu, fv, 2, 3, 3, 4), trainable: true, weightDecay: false);
        try
        {
            Check(rpn, features);
        }
        finally
        {
            features.Value.Dispose();
            features.Grad?.Dispose();
        }
    }

    private static void Check(RegionProposalNetwork rpn, Parameter features)
    {
        (int, int)[] sizes = [(12, 16), (11, 14)];
        float[][] gt = [[1, 1, 9, 9, 6, 2, 15, 11], [2, 3, 10, 10]];

        double Loss(bool backward)
        {
            using var g = new Graph(Device.Cpu, training: true, recordGradients: backward);
            // the same seed each time, so the sampled anchors are the same in every evaluation
            var o = rpn.Forward(g, features, 4, 4, sizes, gt, new SplitMix64(3));
            var total = g.WeightedSum([(o.ObjectnessLoss!, 1f), (o.BoxLoss!, 1f)]);
            if (backward) g.Backward(total);
            return total.Value.ToArray<float>()[0];
        }

        rpn.ZeroGrad();
        features.ZeroGrad();
        Loss(backward: true);
        var checkedParams = rpn.NamedParameters().Append(("features", features)).ToList();
        int nonZero = 0;
        foreach (var (name, p) in checkedParams)
        {
            var grad = p.Grad!.ToArray<float>();
            var values = p.Value.AsSpan<float>();
            // every element of small tensors, a spread of elements of the larger ones
            int stepBy = Math.Max(1, values.Length / 24);
            for (int i = 0; i < values.Length; i += stepBy)
            {
                float orig = values[i];
                values[i] = orig + Step;
                double up = Loss(false);
                values[i] = orig - Step;
                double down = Loss(false);
                values[i] = orig;
                double fd = (up - down) / (2 * Step);
                double err = Math.Abs(fd - grad[i]);
                Assert.True(err <= GradAtol + GradRtol * Math.Abs(fd), $"{name}[{i}]: finite difference {fd}, backward {grad[i]}");
                if (Math.Abs(grad[i]) > 10 * GradAtol) nonZero++;
            }
        }
        // the check is not vacuous: many gradients are clearly non-zero
        Assert.True(nonZero > 50, $"only {nonZero} clearly non-zero gradients");
    }
}
