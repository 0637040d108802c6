namespace GRcn.Kernels.Tests;

/// <summary>Random inputs and value comparisons shared by the op tests.</summary>
internal static class TestData
{
    /// <summary>Standard normal values (Box–Muller); with <paramref name="ties"/> &gt; 0 they are rounded to multiples of it, so many values tie.</summary>
    public static float[] Normal(Random rng, int count, double ties = 0)
    {
        var v = new float[count];
        for (int i = 0; i < v.Length; i++)
        {
            double g = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
            v[i] = ties > 0 ? (float)(Math.Round(g / ties) * ties) : (float)g;
        }
        return v;
    }

    /// <summary>Asserts |got − want| ≤ atol + rtol·|want| elementwise; a NaN in want must meet a NaN.</summary>
    public static void AssertClose(double[] want, float[] got, double rtol, double atol, string what)
    {
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < want.Length; i++)
        {
            if (double.IsNaN(want[i]))
            {
                Assert.True(float.IsNaN(got[i]), $"{what}[{i}]: want NaN, got {got[i]}");
                continue;
            }
            double err = Math.Abs(got[i] - want[i]);
            Assert.True(err <= atol + rtol * Math.Abs(want[i]), $"{what}[{i}]: want {want[i]}, got {got[i]} (error {err})");
        }
    }
}
