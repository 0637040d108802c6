// Device-memory utilities. Fill: y[i] = value, one thread per element (implicitly grouped).
using ILGPU;
using ILGPU.Runtime;

namespace GRcn.Kernels.Gpu;

internal static class MemoryKernels
{
    [Kernel]
    public static void Fill(Index1D i, ArrayView<float> y, float value) => y[i] = value;
}
