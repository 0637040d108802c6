// Shared helpers of the backbone tests: random tensors, inference passes that copy their result
// to the host, and comparisons relative to a reference's largest magnitude.
using GRcn.Detection.Autograd;
using GRcn.Kernels;

namespace GRcn.Detection.Tests.Backbones;

internal static class TestUtil
{
    /// <summary>A CPU tensor of standard normal values.</summary>
    public static Tensor Normal(SplitMix64 rng, params int[] shape)
    {
        long n = 1;
        foreach (int d in shape) n *= d;
        var v = new float[n];
        for (long i = 0; i < n; i++) v[i] = (float)rng.NextGaussian();
        return Tensor.FromArray(v, shape);
    }

    /// <summary>Runs <paramref name="forward"/> in an inference graph on a copy of <paramref name="input"/>; returns the values and shape.</summary>
    public static (float[] Values, int[] Shape) Infer(Tensor input, Func<Graph, Variable, Variable> forward)
    {
        using var g = new Graph(input.Device, training: false, recordGradients: false);
        var y = forward(g, g.Constant(input.Clone()));
        return (y.Value.ToArray<float>(), y.Shape.ToArray());
    }

    /// <summary>
    /// Asserts max |got − want| ≤ rtol·max|want| + atol and returns that worst error relative to max|want|.
    /// </summary>
    public static double AssertCloseToMax(float[] want, float[] got, double rtol, double atol, string what)
    {
        Assert.Equal(want.Length, got.Length);
        double maxRef = 0, worst = 0;
        int worstAt = -1;
        foreach (float w in want) maxRef = Math.Max(maxRef, Math.Abs(w));
        for (int i = 0; i < want.Length; i++)
        {
            Assert.False(float.IsNaN(got[i]), $"{what}[{i}] is NaN");
            double err = Math.Abs((double)got[i] - want[i]);
            if (err > worst)
            {
                worst = err;
                worstAt = i;
            }
        }
        Assert.True(maxRef > 0, $"{what}: reference is all zeros, which tests nothing");
        double allowed = rtol * maxRef + atol;
        Assert.True(worst <= allowed,
            $"{what}: max error {worst:G4} at [{worstAt}] (want {want[Math.Max(worstAt, 0)]}, got {got[Math.Max(worstAt, 0)]}) exceeds {allowed:G4} (max |ref| {maxRef:G4})");
        return worst / maxRef;
    }
}
