// context_attention (G-RCN eq. (1), W_V dropped): for RoI k of image n = batch_index[k], with
// P = p[k] as (Q, C) and V = g[n] as (M, C), per head h (dk = D/H, cv = C/H):
//   Oh = softmax_rows((P·Wq_hᵀ)(V·Wk_hᵀ)ᵀ / √dk) · V[:, h·cv:(h+1)·cv];  y[k] = P + concat_h(Oh).
// Backward gives dp, dg, dWq, dWk. Shapes: p (K, C, Qh, Qw), g (N, C, Mh, Mw), batch_index (K)
// int64, w_q and w_k (D, C), y (K, C, Qh, Qw). Keys are projected once per image. A forward can
// save its queries and attention weights (ContextAttentionSaved) for the backward of the same
// inputs, which then skips recomputing them.
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
    /// <summary>Fills y (K, C, Qh, Qw); with <paramref name="save"/> (<see cref="ContextAttentionSavedFloats"/> floats) also what the backward needs.</summary>
    void ContextAttentionForward(Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk, Tensor y, Tensor? save, in ContextAttentionGeometry geo);

    /// <summary>Overwrites gradP (K, C, Qh, Qw), gradG (N, C, Mh, Mw), gradWq and gradWk (D, C); reads <paramref name="saved"/> when given.</summary>
    void ContextAttentionBackward(Tensor gradY, Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk, Tensor? saved,
        Tensor gradP, Tensor gradG, Tensor gradWq, Tensor gradWk, in ContextAttentionGeometry geo);

    /// <summary>Size of the saved block for this geometry, in floats.</summary>
    long ContextAttentionSavedFloats(in ContextAttentionGeometry geo);
}

/// <summary>
/// What a forward of <see cref="ContextAttention"/> saves for the backward of the same call (the
/// queries and every head's attention weights, K·Q·(D + H·M) floats), so the backward does not
/// recompute them. Pass it to <see cref="ContextAttention.Forward(Tensor, Tensor, Tensor, Tensor, Tensor, int, ContextAttentionSaved)"/>,
/// then to the matching Backward with the same tensors, unchanged in between. Reusable: each
/// forward overwrites it, keeping its memory while the sizes stay the same. Dispose to release.
/// </summary>
public sealed class ContextAttentionSaved : IDisposable
{
    private Tensor? _buffer;
    private ContextAttentionGeometry _geometry;
    private Tensor? _p, _g, _batchIndex, _wq, _wk;

    /// <summary>The block for a forward of this geometry on this device (reallocated when the size or device differs).</summary>
    internal Tensor Prepare(Device device, long floats, in ContextAttentionGeometry geo)
    {
        Forget();
        if (_buffer is null || _buffer.Device != device || _buffer.Length != floats)
        {
            _buffer?.Dispose();
            _buffer = null;
            _buffer = Tensor.Empty(device, DataType.Float32, checked((int)floats));
        }
        _geometry = geo;
        return _buffer;
    }

    /// <summary>Records the inputs of the forward that filled the block.</summary>
    internal void Filled(Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk) => (_p, _g, _batchIndex, _wq, _wk) = (p, g, batchIndex, wq, wk);

    /// <summary>The block, when a forward with exactly these inputs and geometry filled it; else null.</summary>
    internal Tensor? For(Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk, in ContextAttentionGeometry geo) =>
        _buffer is not null && _p == p && _g == g && _batchIndex == batchIndex && _wq == wq && _wk == wk && _geometry == geo ? _buffer : null;

    /// <summary>Marks the block as not filled (it no longer matches any inputs).</summary>
    internal void Forget() => _p = _g = _batchIndex = _wq = _wk = null;

    /// <inheritdoc/>
    public void Dispose()
    {
        Forget();
        _buffer?.Dispose();
        _buffer = null;
    }
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
    public static Tensor Forward(Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk, int heads) =>
        Forward(p, g, batchIndex, wq, wk, heads, null);

    /// <summary>
    /// Computes y = p + attention(p, g) (K, C, Qh, Qw) and, when <paramref name="save"/> is not
    /// null, keeps in it what the backward of these same inputs needs (the values of y are the same).
    /// </summary>
    /// <param name="p">RoI features, the queries (K, C, Qh, Qw).</param>
    /// <param name="g">Context maps, one per image, the keys and values (N, C, Mh, Mw).</param>
    /// <param name="batchIndex">Image of each RoI (K), int64 in [0, N).</param>
    /// <param name="wq">Query projection (D, C).</param>
    /// <param name="wk">Key projection (D, C).</param>
    /// <param name="heads">Heads H; D and C must be divisible by H.</param>
    /// <param name="save">Filled for <see cref="Backward(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, int, ContextAttentionSaved)"/>, or null.</param>
    public static Tensor Forward(Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk, int heads, ContextAttentionSaved? save)
    {
        var geo = Resolve(p, g, batchIndex, wq, wk, heads);
        save?.Forget();
        var y = Tensor.Empty(p.Device, DataType.Float32, geo.K, geo.C, geo.Qh, geo.Qw);
        if (geo.K == 0) return y;
        try
        {
            var backend = p.Device.Kernels<IContextAttentionBackend>("context_attention");
            long floats = backend.ContextAttentionSavedFloats(geo);
            // a block too large for one tensor is not kept; the backward then recomputes
            var block = save is not null && floats <= int.MaxValue ? save.Prepare(p.Device, floats, geo) : null;
            backend.ContextAttentionForward(p, g, batchIndex, wq, wk, y, block, geo);
            if (block is not null) save!.Filled(p, g, batchIndex, wq, wk);
            return y;
        }
        catch
        {
            y.Dispose();
            throw;
        }
    }

    /// <summary>Gradients with respect to p, g, w_q and w_k, given dL/dy (K, C, Qh, Qw).</summary>
    public static ContextAttentionGradients Backward(Tensor gradY, Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk, int heads) =>
        Backward(gradY, p, g, batchIndex, wq, wk, heads, null);

    /// <summary>
    /// Gradients with respect to p, g, w_q and w_k, given dL/dy (K, C, Qh, Qw), reading the
    /// queries and attention weights from <paramref name="saved"/> (filled by the forward of these
    /// same tensors) instead of recomputing them; with null, or a block from other inputs, they
    /// are recomputed. The tensors must not have changed since that forward.
    /// </summary>
    public static ContextAttentionGradients Backward(Tensor gradY, Tensor p, Tensor g, Tensor batchIndex, Tensor wq, Tensor wk, int heads,
        ContextAttentionSaved? saved)
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
                    gradY, p, g, batchIndex, wq, wk, saved?.For(p, g, batchIndex, wq, wk, geo), grads.P, grads.G, grads.Wq, grads.Wk, geo);
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
