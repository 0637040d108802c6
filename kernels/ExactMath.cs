// Float32 arithmetic that the PTX compiler may not contract. ILGPU emits a*b+c as mul.f32 and
// add.f32, which ptxas may fuse into one fma (one rounding instead of two), so a GPU result can
// differ in the last bit from the emulator, the CPU backend and torchvision's CPU kernels. Where a
// last bit decides something discrete (which cell a RoI bin starts at, where RoIAlign samples,
// whether an IoU exceeds the NMS threshold) the kernels use these: on CUDA they emit
// mul.rn.f32 / add.rn.f32 / sub.rn.f32 / div.rn.f32 (an explicit rounding mode forbids
// contraction); elsewhere (the emulator) plain C# float arithmetic, which is never contracted.
using ILGPU.Runtime.Cuda;

namespace GRcn.Kernels.Gpu;

internal static class ExactMath
{
    /// <summary>a·b rounded to float32, never fused with a following add.</summary>
    public static float Mul(float a, float b)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("mul.rn.f32 %0, %1, %2;", out float r, a, b);
            return r;
        }
        return a * b;
    }

    /// <summary>a·b rounded to float64, never fused with a following add (the NMS IoU is computed in double, as the CPU backend).</summary>
    public static double Mul(double a, double b)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("mul.rn.f64 %0, %1, %2;", out double r, a, b);
            return r;
        }
        return a * b;
    }

    /// <summary>a + b rounded to float32, never fused with a preceding multiply.</summary>
    public static float Add(float a, float b)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("add.rn.f32 %0, %1, %2;", out float r, a, b);
            return r;
        }
        return a + b;
    }

    /// <summary>a − b rounded to float32, never fused with a preceding multiply.</summary>
    public static float Sub(float a, float b)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("sub.rn.f32 %0, %1, %2;", out float r, a, b);
            return r;
        }
        return a - b;
    }

    /// <summary>a / b correctly rounded to float32 (IEEE division, not the approximate div.full).</summary>
    public static float Div(float a, float b)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("div.rn.f32 %0, %1, %2;", out float r, a, b);
            return r;
        }
        return a / b;
    }
}
