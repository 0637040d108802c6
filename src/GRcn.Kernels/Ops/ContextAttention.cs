// context_attention (G-RCN eq. (1), W_V dropped): for RoI k of image n = batch_index[k], with
// P = p[k] as (Q, C) and V = g[n] as (M, C), per head h (dk = D/H, cv = C/H):
//   Oh = softmax_rows((P·Wq_hᵀ)(V·Wk_hᵀ)ᵀ / √dk) · V[:, h·cv:(h+1)·cv];  y[k] = P + concat_h(Oh).
// Backward gives dp, dg, dWq, dWk. Shapes: p (K, C, Qh, Qw), g (N, C, Mh, Mw), batch_index (K)
// int64, w_q and w_k (D, C), y (K, C, Qh, Qw). Keys are projected once per image.
namespace GRcn.Kernels;

/// <summary>Every size of one context-attention call, resolved and validated.</summary>
internal readonly record struct ContextAttentionGeometry(int K, int C, int Q, int Qh, int Qw, int N, int M, int Mh, int Mw, int D, int Heads)
{
    public int Dk => D / Heads;
    public int Cv => C / Heads;
}

/// <summary>Device kernels of <see cref="ContextAttention"/>.</summary>
internal interface IContextAttentionBackend
{
    /// <summary>Fills y (K, C, Qh, Qw).</summary>
    void ContextAttentionForward(Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk, Tensor y, in ContextAttentionGeometry geo);

    /// <summary>Overwrites gradP (K, C, Qh, Qw), gradG (N, C, Mh, Mw), gradWq and gradWk (D, C).</summary>
    void ContextAttentionBackward(Tensor gradY, Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk,
        Tensor gradP, Tensor gradG, Tensor gradWq, Tensor gradWk, in ContextAttentionGeometry geo);
}

/// <summary>Gradients of <see cref="ContextAttention"/>; dispose to release them.</summary>
/// <param name="P">dL/dp (K, C, Qh, Qw).</param>
/// <param name="G">dL/dg (N, C, Mh, Mw).</param>
/// <param name="Wq">dL/dw_q (D, C).</param>
/// <param name="Wk">dL/dw_k (D, C).</param>
public sealed record ContextAttentionGradients(Tensor P, Tensor G, Tensor Wq, Tensor Wk) : IDisposable
{
    /// <inheritdoc/>
    public void Dispose()
    {
        P.Dispose();
        G.Dispose();
        Wq.Dispose();
        Wk.Dispose();
    }
}

/// <summary>
/// Dot-product global-context attention of G-RCN: each RoI's pooled feature attends over its
/// image's context map and adds the result (residual), multi-head, forward and backward.
/// </summary>
public static class ContextAttention
{
    /// <summary>Computes y = p + attention(p, g) (K, C, Qh, Qw).</summary>
    /// <param name="p">RoI features, the queries (K, C, Qh, Qw).</param>
    /// <param name="g">Context maps, one per image, the keys and values (N, C, Mh, Mw).</param>
    /// <param name="batchIndex">Image of each RoI (K), int64 in [0, N).</param>
    /// <param name="wq">Query projection (D, C).</param>
    /// <param name="wk">Key projection (D, C).</param>
    /// <param name="heads">Heads H; D and C must be divisible by H.</param>
    public static Tensor Forward(Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk, int heads)
    {
        var geo = Resolve(p, g, batchIndex, wq, wk, heads);
        var y = Tensor.Empty(p.Device, DataType.Float32, geo.K, geo.C, geo.Qh, geo.Qw);
        if (geo.K == 0) return y;
        try
        {
            p.Device.Kernels<IContextAttentionBackend>("context_attention").ContextAttentionForward(p, g, batchIndex, wq, wk, y, geo);
            return y;
        }
        catch
        {
            y.Dispose();
            throw;
        }
    }

    /// <summary>Gradients with respect to p, g, w_q and w_k, given dL/dy (K, C, Qh, Qw).</summary>
    public static ContextAttentionGradients Backward(Tensor gradY, Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk, int heads)
    {
        var geo = Resolve(p, g, batchIndex, wq, wk, heads);
        Check.Tensor(gradY, nameof(gradY), 4, "(K, C, Qh, Qw)");
        Check.SameDevice(p, nameof(p), gradY, nameof(gradY));
        Check.Shape(gradY, nameof(gradY), "(K, C, Qh, Qw)", geo.K, geo.C, geo.Qh, geo.Qw);
        var d = p.Device;
        var grads = new ContextAttentionGradients(
            Tensor.Empty(d, DataType.Float32, p.Shape),
            Tensor.Empty(d, DataType.Float32, g.Shape),
            Tensor.Empty(d, DataType.Float32, wq.Shape),
            Tensor.Empty(d, DataType.Float32, wk.Shape));
        try
        {
            if (geo.K == 0)
            {
                grads.P.Clear();
                grads.G.Clear();
                grads.Wq.Clear();
                grads.Wk.Clear();
            }
            else
            {
                d.Kernels<IContextAttentionBackend>("context_attention").ContextAttentionBackward(
                    gradY, p, g, batchIndex, wq, wk, grads.P, grads.G, grads.Wq, grads.Wk, geo);
            }
            return grads;
        }
        catch
        {
            grads.Dispose();
            throw;
        }
    }

    private static ContextAttentionGeometry Resolve(Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk, int heads)
    {
        Check.Tensor(p, nameof(p), 4, "(K, C, Qh, Qw)");
        Check.Tensor(g, nameof(g), 4, "(N, C, Mh, Mw)");
        int c = p.Dim(1);
        if (g.Dim(1) != c)
            throw new ArgumentException($"g must have shape (N, {c}, Mh, Mw) to match p {p.ShapeString}; got {g.ShapeString}", nameof(g));
        Check.Tensor(wq, nameof(wq), 2, "(D, C) with C as in p");
        Check.Tensor(wk, nameof(wk), 2, "(D, C) with C as in p");
        int dd = wq.Dim(0);
        Check.Shape(wq, nameof(wq), "(D, C)", dd, c);
        Check.Shape(wk, nameof(wk), "(D, C) like w_q", dd, c);
        Check.SameDevice(p, nameof(p), g, nameof(g));
        Check.SameDevice(p, nameof(p), wq, nameof(wq));
        Check.SameDevice(p, nameof(p), wk, nameof(wk));
        Check.SameDevice(p, nameof(p), batchIndex, nameof(batchIndex));
        Check.Positive(heads, nameof(heads));
        if (dd % heads != 0 || c % heads != 0)
            throw new ArgumentException($"heads = {heads} must divide both D = {dd} (w_q {wq.ShapeString}) and C = {c} (p {p.ShapeString})", nameof(heads));
        if (dd == 0 || c == 0)
            throw new ArgumentException($"w_q must have shape (D, C) with D, C ≥ 1; got {wq.ShapeString}", nameof(wq));
        int m = g.Dim(2) * g.Dim(3);
        if (m == 0 && p.Dim(0) > 0)
            throw new ArgumentException($"g must have at least one position (N, C, Mh, Mw) with Mh·Mw ≥ 1; got {g.ShapeString}", nameof(g));
        Check.BatchIndex(batchIndex, nameof(batchIndex), p.Dim(0), g.Dim(0), "g (N, C, Mh, Mw)");
        return new ContextAttentionGeometry(p.Dim(0), c, p.Dim(2) * p.Dim(3), p.Dim(2), p.Dim(3), g.Dim(0), m, g.Dim(2), g.Dim(3), dd, heads);
    }
}
