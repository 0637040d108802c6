// What the GPU tests share: the devices they run on (the emulator always, cuda:0 where one
// opens), [CudaFact] for tests that need a real GPU (skipped with the reason elsewhere),
// seeded random data, and an element-wise comparison that names the worst element.
using System.Runtime.CompilerServices;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace GRcn.Kernels.GpuTests;

/// <summary>The devices every GPU kernel test runs on.</summary>
public static class GpuDevices
{
    private static readonly Lazy<(GpuDevice? Device, string? Reason)> s_cuda = new(() =>
    {
        try
        {
            return (Device.Cuda(0), null);
        }
        catch (PlatformNotSupportedException e)
        {
            return (null, "no CUDA device: " + e.Message);
        }
    });

    /// <summary>cuda:0, or null with <see cref="CudaReason"/> saying why not.</summary>
    public static GpuDevice? Cuda => s_cuda.Value.Device;

    /// <summary>Why there is no CUDA device, or null.</summary>
    public static string? CudaReason => s_cuda.Value.Reason;

    /// <summary>Device names for [MemberData]: "emulator", and "cuda:0" where a GPU is present.</summary>
    public static TheoryData<string> Names
    {
        get
        {
            var data = new TheoryData<string> { "emulator" };
            if (Cuda is not null) data.Add("cuda:0");
            return data;
        }
    }

    /// <summary>The device of a name from <see cref="Names"/>.</summary>
    public static GpuDevice Get(string name) => (GpuDevice)Device.Parse(name);

    /// <summary>Runs <paramref name="body"/> with <see cref="GpuDevice.DeterministicBackward"/> set as given, then restores it.</summary>
    public static T WithDeterminism<T>(GpuDevice d, bool deterministic, Func<T> body)
    {
        bool before = d.DeterministicBackward;
        d.DeterministicBackward = deterministic;
        try
        {
            return body();
        }
        finally
        {
            d.DeterministicBackward = before;
        }
    }

    /// <inheritdoc cref="WithDeterminism{T}(GpuDevice, bool, Func{T})"/>
    public static void WithDeterminism(GpuDevice d, bool deterministic, Action body) =>
        WithDeterminism(d, deterministic, () => { body(); return 0; });
}

/// <summary>A fact that needs a real NVIDIA GPU; skipped, with the reason, where none opens.</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    public CudaFactAttribute()
    {
        if (GpuDevices.Cuda is null) Skip = GpuDevices.CudaReason;
    }
}

/// <summary>Seeded test data.</summary>
public static class TestData
{
    /// <summary>n floats uniform in [lo, hi).</summary>
    public static float[] Uniform(int seed, int n, float lo = -1f, float hi = 1f)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = lo + (hi - lo) * r.NextSingle();
        return a;
    }

    /// <summary>A tensor on <paramref name="device"/> holding <paramref name="data"/>.</summary>
    public static Tensor On<T>(Device device, T[] data, params int[] shape) where T : unmanaged => Tensor.FromSpan<T>(device, data, shape);
}

/// <summary>Comparisons of GPU results with CPU results.</summary>
public static class Close
{
    /// <summary>
    /// Asserts |got − want| ≤ atol + rtol·|want| element by element (NaN only where want is NaN);
    /// the failure names the worst element.
    /// </summary>
    public static void Assert(ReadOnlySpan<float> want, ReadOnlySpan<float> got, double rtol, double atol,
        [CallerArgumentExpression(nameof(got))] string what = "")
    {
        Xunit.Assert.True(want.Length == got.Length, $"{what}: {got.Length} elements, expected {want.Length}");
        int worst = -1;
        double worstRatio = 0;
        for (int i = 0; i < want.Length; i++)
        {
            if (float.IsNaN(want[i]) && float.IsNaN(got[i])) continue;
            double err = Math.Abs((double)got[i] - want[i]);
            double ratio = err == 0 ? 0 : err / (atol + rtol * Math.Abs(want[i]));
            if (double.IsNaN(ratio) || ratio > worstRatio)
            {
                worstRatio = double.IsNaN(ratio) ? double.PositiveInfinity : ratio;
                worst = i;
            }
        }
        Xunit.Assert.True(worstRatio <= 1,
            $"{what}: element {worst} is {(worst >= 0 ? got[worst] : 0)}, expected {(worst >= 0 ? want[worst] : 0)} (error {worstRatio:0.##}× the tolerance rtol {rtol}, atol {atol})");
    }

    /// <summary>The tensors (any device) compared as <see cref="Assert(ReadOnlySpan{float}, ReadOnlySpan{float}, double, double, string)"/>, shapes included.</summary>
    public static void Tensors(Tensor want, Tensor got, double rtol, double atol, [CallerArgumentExpression(nameof(got))] string what = "")
    {
        Xunit.Assert.Equal(want.ShapeString, got.ShapeString);
        Assert(want.ToArray<float>(), got.ToArray<float>(), rtol, atol, what);
    }
}
