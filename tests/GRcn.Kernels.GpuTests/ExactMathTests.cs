// ExactMath rounds each operation to float32 separately (no fused multiply-add): the emulator
// runs the plain C# path, and the PTX of a kernel using it holds mul.rn/add.rn, never fma.
using System.Reflection;
using GRcn.Kernels.Gpu;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace GRcn.Kernels.GpuTests;

public class ExactMathTests
{
    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void MultiplyAddRoundsTwice(string name)
    {
        var d = GpuDevices.Get(name);
        // (1 + 2⁻¹²)² − 1 − 2⁻¹¹ = 2⁻²⁴ exactly; rounded after the multiply it is 0.
        float a = 1f + MathF.Pow(2, -12);
        float c = -(1f + MathF.Pow(2, -11));
        using var ta = Tensor.FromSpan<float>(d, [a], 1);
        using var tc = Tensor.FromSpan<float>(d, [c], 1);
        using var y = Tensor.Empty(d, DataType.Float32, 1);
        var k = d.Kernels.Kernel(ref s_slot, "multiply_add_exact",
            acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(MemoryKernels.MultiplyAddExact));
        Assert.Same(k, d.Kernels.Kernel(ref s_slot, "multiply_add_exact", _ => throw new InvalidOperationException("loaded twice")));
        k(1, ta.Floats(), ta.Floats(), tc.Floats(), y.Floats());
        Assert.Equal(0f, y.ToArray<float>()[0]);
        Assert.NotEqual(0f, MathF.FusedMultiplyAdd(a, a, c));
    }

    private static Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>? s_slot;

    [Fact]
    public void PtxHasNoFusedMultiplyAdd()
    {
        var method = typeof(MemoryKernels).GetMethod(nameof(MemoryKernels.MultiplyAddExact), BindingFlags.Static | BindingFlags.Public)!;
        var ptx = PtxCompileTests.Ptx(method, CudaArchitecture.SM_90, CudaInstructionSet.ISA_71);
        Assert.Contains("mul.rn.f32", ptx);
        Assert.Contains("add.rn.f32", ptx);
        Assert.DoesNotContain("fma.", ptx);
    }
}
