// Device-memory utilities. Fill: y[i] = value, one thread per element (implicitly grouped).
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

internal static class MemoryKernels
{
    [Kernel]
    public static void Fill(Index1D i, ArrayView<float> y, float value) => y[i] = value;

    /// <summary>y[i] = a[i]·b[i] + c[i] without contraction: exercises <see cref="ExactMath"/> in the PTX compile test and on the emulator.</summary>
    [Kernel]
    public static void MultiplyAddExact(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> y) =>
        y[i] = ExactMath.Add(ExactMath.Mul(a[i], b[i]), c[i]);
}
