// Floating-point operation counts behind the GFLOP/s column (a multiply-add counts as 2).
// Only the matrix products are counted; bias, softmax and other element-wise work is not.
namespace GRcn.Bench.Cases;

/// <summary>FLOP formulas of the benchmarked ops.</summary>
public static class FlopCount
{
    /// <summary>GEMM C (M×N) = A (M×K) · B (K×N): <c>2·M·N·K</c>.</summary>
    public static double Gemm(long m, long n, long k) => 2.0 * m * n * k;

    /// <summary>
    /// Convolution forward: <c>2·N·O·OH·OW·C·kh·kw</c>. The backward pass (dx and dw) is two more
    /// products of the same size, so forward + backward is 3× that.
    /// </summary>
    public static double Conv2d(long n, long c, long o, long outH, long outW, long kh, long kw, bool backward) =>
        (backward ? 3.0 : 1.0) * 2.0 * n * o * outH * outW * c * kh * kw;

    /// <summary>
    /// Context attention (ops.md), the matrix products of the forward pass:
    /// keys <c>2·N·M·C·D</c> (once per image), queries <c>2·K·Q·C·D</c>, logits <c>2·K·Q·M·D</c>
    /// (Σ over heads of Q·M·dk), values <c>2·K·Q·M·C</c> (Σ over heads of Q·M·cv).
    /// Backward needs two products per forward product (one per operand), so forward + backward is 3×.
    /// </summary>
    public static double ContextAttention(long k, long q, long n, long m, long c, long d, bool backward) =>
        (backward ? 3.0 : 1.0) * (2.0 * n * m * c * d + 2.0 * k * q * c * d + 2.0 * k * q * m * d + 2.0 * k * q * m * c);
}
