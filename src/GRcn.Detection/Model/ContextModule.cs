// Global-context attention of G-RCN (eq. (1), W_V dropped): the whole image's feature map is
// RoI-pooled to s×s (V, the keys and values), each RoI's pooled feature P (the queries)
// attends over its own image's V, and P + attention(P, V) replaces P.
using GRcn.Detection.Autograd;
using GRcn.Detection.Nn;
using GRcn.Kernels;

namespace GRcn.Detection.Model;

/// <summary>The attention's projections w_q, w_k (D, C) and its forward pass.</summary>
public sealed class ContextModule : Module
{
    /// <summary>Creates projections for <paramref name="channels"/>-channel features (D = C).</summary>
    public ContextModule(Device device, SplitMix64 rng, int channels, int heads, int contextSize) : base(device)
    {
        if (channels % heads != 0)
            throw new ArgumentException($"context attention needs channels ({channels}) divisible by heads ({heads})", nameof(heads));
        Heads = heads;
        ContextSize = contextSize;
        WQ = AddParameter("w_q", new Init.TorchDefault().Create(device, rng, channels, channels));
        WK = AddParameter("w_k", new Init.TorchDefault().Create(device, rng, channels, channels));
    }

    /// <summary>Heads.</summary>
    public int Heads { get; }

    /// <summary>Side of the pooled context map V.</summary>
    public int ContextSize { get; }

    /// <summary>Query projection (D, C).</summary>
    public Parameter WQ { get; }

    /// <summary>Key projection (D, C).</summary>
    public Parameter WK { get; }

    /// <summary>
    /// P + attention(P, V): pooled (R, C, s, s) RoI features, the feature map (N, C, H, W),
    /// <paramref name="wholeImages"/> (N, 5) = [n, 0, 0, width, height] per image, and the image of each RoI (R) int64.
    /// </summary>
    public Variable Forward(Graph g, Variable pooled, Variable map, Tensor wholeImages, Tensor batchIndex, Func<Graph, Variable, Tensor, int, Variable> pool)
    {
        var context = pool(g, map, wholeImages, ContextSize);
        return g.ContextAttention(pooled, context, batchIndex, WQ, WK, Heads, _saved ??= new ContextAttentionSaved());
    }

    /// <inheritdoc/>
    protected override void DisposeState() => _saved?.Dispose();

    // the training forward's queries and attention weights, read by its backward; reused every step
    private ContextAttentionSaved? _saved;
}
