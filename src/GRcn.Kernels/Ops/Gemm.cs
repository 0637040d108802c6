// GEMM: C = alpha * op(A) * op(B) + beta * C on row-major float32 matrices, op(X) = X or Xᵀ.
// The matrix product that convolution and context attention rest on.
namespace GRcn.Kernels;

/// <summary>Device kernels of <see cref="Gemm"/>.</summary>
internal interface IGemmBackend
{
    /// <summary>C (m×n) = alpha·op(A)·op(B) + beta·C; A is m×k (k×m if transposed), B is k×n (n×k if transposed); all row-major, contiguous.</summary>
    void Gemm(bool transposeA, bool transposeB, int m, int n, int k, float alpha, Tensor a, Tensor b, float beta, Tensor c);
}

/// <summary>General matrix multiply on float32 tensors.</summary>
public static class Gemm
{
    /// <summary>
    /// Computes <c>C = alpha·op(A)·op(B) + beta·C</c> in place, where op transposes when asked.
    /// </summary>
    /// <remarks>
    /// Shapes: op(A) is (M, K), op(B) is (K, N), C is (M, N); all row-major 2-D float32 tensors on
    /// one device. With <paramref name="beta"/> = 0 the prior contents of C are ignored (NaN
    /// included).
    /// </remarks>
    /// <exception cref="ArgumentException">Shapes do not agree; the message names the tensor and the expected shape.</exception>
    public static void Multiply(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c, float alpha = 1f, float beta = 0f)
    {
        Check.Tensor(a, nameof(a), 2, transposeA ? "(K, M)" : "(M, K)");
        Check.Tensor(b, nameof(b), 2, transposeB ? "(N, K)" : "(K, N)");
        Check.Tensor(c, nameof(c), 2, "(M, N)");
        Check.SameDevice(a, nameof(a), b, nameof(b));
        Check.SameDevice(a, nameof(a), c, nameof(c));
        int m = transposeA ? a.Dim(1) : a.Dim(0);
        int k = transposeA ? a.Dim(0) : a.Dim(1);
        int kb = transposeB ? b.Dim(1) : b.Dim(0);
        int n = transposeB ? b.Dim(0) : b.Dim(1);
        if (kb != k)
            throw new ArgumentException($"b must have shape {(transposeB ? $"(N, {k})" : $"({k}, N)")} to match a {a.ShapeString}{(transposeA ? "ᵀ" : "")}; got {b.ShapeString}", nameof(b));
        Check.Shape(c, nameof(c), "(M, N)", m, n);
        if (m == 0 || n == 0) return;
        a.Device.Kernels<IGemmBackend>("gemm").Gemm(transposeA, transposeB, m, n, k, alpha, a, b, beta, c);
    }

    /// <summary>Returns <c>A·B</c> for 2-D float32 tensors A (M, K) and B (K, N).</summary>
    public static Tensor MatMul(Tensor a, Tensor b)
    {
        Check.Tensor(a, nameof(a), 2, "(M, K)");
        Check.Tensor(b, nameof(b), 2, "(K, N)");
        var c = Tensor.Empty(a.Device, DataType.Float32, a.Dim(0), b.Dim(1));
        try
        {
            Multiply(a, false, b, false, c);
            return c;
        }
        catch
        {
            c.Dispose();
            throw;
        }
    }
}
