// Differentiable ops over graph variables, each a kernel-library call forward and its
// gradient backward: convolution, linear, ReLU, max pooling, per-channel affine (frozen batch
// norm), group norm, add, scale, dropout, reshape, concatenation and slicing along dimension 0, global
// average pooling, RoI pooling/align and context attention. Parameter gradients accumulate
// (a weight used twice gets the sum); input gradients are produced only where needed.
using GRcn.Kernels;

namespace GRcn.Detection.Autograd;

/// <summary>Differentiable ops recorded on a <see cref="Graph"/>.</summary>
public static class GraphOps
{
    /// <summary>y = conv2d(x, w) + b: x (N, C, H, W), w (O, C, kh, kw), b (O) or null.</summary>
    public static Variable Conv2d(this Graph g, Variable x, Variable w, Variable? b, Conv2dOptions options)
    {
        var y = g.Result(Kernels.Conv2d.Forward(x.Value, w.Value, b?.Value, options), x, w, b ?? x);
        g.Record(y, gy =>
        {
            Tensor? gx = x.RequiresGrad ? Tensor.Empty(g.Device, DataType.Float32, x.Shape) : null;
            Tensor? gw = w.RequiresGrad ? Tensor.Empty(g.Device, DataType.Float32, w.Shape) : null;
            Tensor? gb = b is { RequiresGrad: true } ? Tensor.Empty(g.Device, DataType.Float32, b.Shape) : null;
            if (gw is null && gx is null)
            {
                // only the bias needs a gradient
                gb ??= Tensor.Empty(g.Device, DataType.Float32, b!.Shape);
                Elementwise.ChannelSum(gy, gb);
            }
            else Kernels.Conv2d.Backward(gy, x.Value, w.Value, gx, gw, gb, options);
            if (gx is not null) g.Accumulate(x, gx);
            if (gw is not null) g.Accumulate(w, gw);
            if (gb is not null) g.Accumulate(b!, gb);
        });
        return y;
    }

    /// <summary>y = x·wᵀ + b: x (N, F), w (O, F), b (O) or null → (N, O).</summary>
    public static Variable Linear(this Graph g, Variable x, Variable w, Variable? b)
    {
        if (x.Value.Rank != 2 || w.Value.Rank != 2 || x.Dim(1) != w.Dim(1))
            throw new ArgumentException($"x must be (N, F) and w (O, F) with the same F; got x {x.Value.ShapeString}, w {w.Value.ShapeString}", nameof(x));
        var yv = Tensor.Empty(g.Device, DataType.Float32, x.Dim(0), w.Dim(0));
        Gemm.Multiply(x.Value, false, w.Value, true, yv);
        if (b is not null) Elementwise.ChannelAffine(yv, null, b.Value, yv);
        var y = g.Result(yv, x, w, b ?? x);
        g.Record(y, gy =>
        {
            if (x.RequiresGrad)
            {
                var gx = Tensor.Empty(g.Device, DataType.Float32, x.Shape);
                Gemm.Multiply(gy, false, w.Value, false, gx);
                g.Accumulate(x, gx);
            }
            if (w.RequiresGrad)
            {
                var gw = Tensor.Empty(g.Device, DataType.Float32, w.Shape);
                Gemm.Multiply(gy, true, x.Value, false, gw);
                g.Accumulate(w, gw);
            }
            if (b is { RequiresGrad: true })
            {
                var gb = Tensor.Empty(g.Device, DataType.Float32, b.Shape);
                Elementwise.ChannelSum(gy, gb);
                g.Accumulate(b, gb);
            }
        });
        return y;
    }

    /// <summary>y = max(x, 0).</summary>
    public static Variable Relu(this Graph g, Variable x)
    {
        var yv = Tensor.Empty(g.Device, DataType.Float32, x.Shape);
        Elementwise.Relu(x.Value, yv);
        var y = g.Result(yv, x);
        g.Record(y, gy =>
        {
            var gx = Tensor.Empty(g.Device, DataType.Float32, x.Shape);
            Elementwise.ReluBackward(gy, yv, gx);
            g.Accumulate(x, gx);
        });
        return y;
    }

    /// <summary>Max pooling of x (N, C, H, W).</summary>
    public static Variable MaxPool2d(this Graph g, Variable x, MaxPool2dOptions options)
    {
        var r = Kernels.MaxPool2d.Forward(x.Value, options);
        var indices = g.Keep(r.Indices);
        var y = g.Result(r.Output, x);
        g.Record(y, gy => g.Accumulate(x, Kernels.MaxPool2d.Backward(gy, indices, x.Dim(2), x.Dim(3), options)));
        return y;
    }

    /// <summary>y[n, c, ...] = x[n, c, ...]·scale[c] + shift[c] with constant scale and shift (frozen batch norm).</summary>
    public static Variable ChannelAffine(this Graph g, Variable x, Tensor scale, Tensor shift)
    {
        var yv = Tensor.Empty(g.Device, DataType.Float32, x.Shape);
        Elementwise.ChannelAffine(x.Value, scale, shift, yv);
        var y = g.Result(yv, x);
        g.Record(y, gy =>
        {
            var gx = Tensor.Empty(g.Device, DataType.Float32, x.Shape);
            Elementwise.ChannelAffine(gy, scale, null, gx);
            g.Accumulate(x, gx);
        });
        return y;
    }

    /// <summary>y = a + b (same shape).</summary>
    public static Variable Add(this Graph g, Variable a, Variable b)
    {
        if (!a.Shape.SequenceEqual(b.Shape))
            throw new ArgumentException($"b must have a's shape {a.Value.ShapeString}; got {b.Value.ShapeString}", nameof(b));
        var yv = Tensor.Empty(g.Device, DataType.Float32, a.Shape);
        Elementwise.Add(a.Value, b.Value, yv);
        var y = g.Result(yv, a, b);
        g.Record(y, gy =>
        {
            if (a.RequiresGrad) g.Accumulate(a, gy.Clone());
            if (b.RequiresGrad) g.Accumulate(b, gy.Clone());
        });
        return y;
    }

    /// <summary>y = alpha·x.</summary>
    public static Variable Scale(this Graph g, Variable x, float alpha)
    {
        var yv = Tensor.Empty(g.Device, DataType.Float32, x.Shape);
        Elementwise.Scale(x.Value, alpha, yv);
        var y = g.Result(yv, x);
        g.Record(y, gy =>
        {
            var gx = Tensor.Empty(g.Device, DataType.Float32, x.Shape);
            Elementwise.Scale(gy, alpha, gx);
            g.Accumulate(x, gx);
        });
        return y;
    }

    /// <summary>Inverted dropout: in training, zeroes each element with probability p and scales the rest by 1/(1−p); identity otherwise.</summary>
    public static Variable Dropout(this Graph g, Variable x, float p)
    {
        if (p is < 0f or >= 1f) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must be in [0, 1)");
        if (!g.Training || p == 0f) return x;
        // the mask is drawn on the device from the graph's SplitMix64 stream, one output per element
        var mask = g.Keep(Tensor.Empty(g.Device, DataType.Float32, x.Shape));
        Elementwise.DropoutMask(mask, g.Random.Skip(mask.Length), p);
        var yv = Tensor.Empty(g.Device, DataType.Float32, x.Shape);
        Elementwise.Multiply(x.Value, mask, yv);
        var y = g.Result(yv, x);
        g.Record(y, gy =>
        {
            var gx = Tensor.Empty(g.Device, DataType.Float32, x.Shape);
            Elementwise.Multiply(gy, mask, gx);
            g.Accumulate(x, gx);
        });
        return y;
    }

    /// <summary>A view of x with another shape (same element count).</summary>
    public static Variable Reshape(this Graph g, Variable x, params int[] shape)
    {
        var y = g.Result(x.Value.Reshape(shape), x);
        g.Record(y, gy => g.Accumulate(x, gy.Reshape(x.Shape)));
        return y;
    }

    /// <summary>Concatenation along dimension 0 (other dimensions equal).</summary>
    public static Variable Concat(this Graph g, IReadOnlyList<Variable> parts)
    {
        if (parts.Count == 0) throw new ArgumentException("need at least one part", nameof(parts));
        if (parts.Count == 1) return parts[0];
        var shape = parts[0].Shape.ToArray();
        int rows = 0;
        foreach (var p in parts)
        {
            if (p.Value.Rank != shape.Length || !p.Shape[1..].SequenceEqual(shape.AsSpan(1)))
                throw new ArgumentException($"every part must have shape (*, {string.Join(", ", shape[1..])}); got {p.Value.ShapeString}", nameof(parts));
            rows += p.Dim(0);
        }
        shape[0] = rows;
        var yv = Tensor.Empty(g.Device, DataType.Float32, shape);
        long offset = 0;
        foreach (var p in parts)
        {
            yv.CopyFrom(p.Value, 0, offset, p.Value.Length);
            offset += p.Value.Length;
        }
        var y = g.Result(yv, [.. parts]);
        g.Record(y, gy =>
        {
            long off = 0;
            foreach (var p in parts)
            {
                if (p.RequiresGrad)
                {
                    var gp = Tensor.Empty(g.Device, DataType.Float32, p.Shape);
                    gp.CopyFrom(gy, off, 0, gp.Length);
                    g.Accumulate(p, gp);
                }
                off += p.Value.Length;
            }
        });
        return y;
    }

    /// <summary>Rows [start, start + count) of x along dimension 0.</summary>
    public static Variable Slice(this Graph g, Variable x, int start, int count)
    {
        if (start < 0 || count < 0 || start + count > x.Dim(0))
            throw new ArgumentOutOfRangeException(nameof(count), $"rows [{start}, {start + count}) are outside x {x.Value.ShapeString}");
        var shape = x.Shape.ToArray();
        shape[0] = count;
        long row = x.Dim(0) == 0 ? 0 : x.Value.Length / x.Dim(0);
        var yv = Tensor.Empty(g.Device, DataType.Float32, shape);
        yv.CopyFrom(x.Value, start * row, 0, count * row);
        var y = g.Result(yv, x);
        g.Record(y, gy =>
        {
            var gx = Tensor.Zeros(g.Device, x.Shape);
            gx.CopyFrom(gy, 0, start * row, gy.Length);
            g.Accumulate(x, gx);
        });
        return y;
    }

    /// <summary>Mean over the spatial positions: x (N, C, H, W) → (N, C).</summary>
    public static Variable GlobalAveragePool(this Graph g, Variable x)
    {
        var yv = Tensor.Empty(g.Device, DataType.Float32, x.Dim(0), x.Dim(1));
        Elementwise.GlobalAveragePool(x.Value, yv);
        var y = g.Result(yv, x);
        g.Record(y, gy =>
        {
            var gx = Tensor.Empty(g.Device, DataType.Float32, x.Shape);
            Elementwise.GlobalAveragePoolBackward(gy, gx);
            g.Accumulate(x, gx);
        });
        return y;
    }

    /// <summary>Group normalisation of x (N, C, ...) in <paramref name="groups"/> groups with per-channel weight and bias (C).</summary>
    public static Variable GroupNorm(this Graph g, Variable x, int groups, Variable weight, Variable bias, float epsilon = 1e-5f)
    {
        var r = Kernels.GroupNorm.Forward(x.Value, groups, weight.Value, bias.Value, epsilon);
        var mean = g.Keep(r.Mean);
        var rstd = g.Keep(r.Rstd);
        var y = g.Result(r.Output, x, weight, bias);
        g.Record(y, gy =>
        {
            Tensor? gx = x.RequiresGrad ? Tensor.Empty(g.Device, DataType.Float32, x.Shape) : null;
            Tensor? gw = weight.RequiresGrad ? Tensor.Empty(g.Device, DataType.Float32, weight.Shape) : null;
            Tensor? gb = bias.RequiresGrad ? Tensor.Empty(g.Device, DataType.Float32, bias.Shape) : null;
            Kernels.GroupNorm.Backward(gy, x.Value, mean, rstd, groups, weight.Value, gx, gw, gb);
            if (gx is not null) g.Accumulate(x, gx);
            if (gw is not null) g.Accumulate(weight, gw);
            if (gb is not null) g.Accumulate(bias, gb);
        });
        return y;
    }

    /// <summary>RoI max pooling of x (N, C, H, W) over rois (K, 5) = [batch, x1, y1, x2, y2] → (K, C, oh, ow).</summary>
    public static Variable RoiPool(this Graph g, Variable x, Tensor rois, RoiPoolOptions options)
    {
        var r = Kernels.RoiPool.Forward(x.Value, rois, options);
        var argmax = g.Keep(r.Argmax);
        var y = g.Result(r.Output, x);
        g.Record(y, gy => g.Accumulate(x, Kernels.RoiPool.Backward(gy, rois, argmax, x.Shape, options)));
        return y;
    }

    /// <summary>RoI Align of x (N, C, H, W) over rois (K, 5) → (K, C, oh, ow).</summary>
    public static Variable RoiAlign(this Graph g, Variable x, Tensor rois, RoiAlignOptions options)
    {
        var y = g.Result(Kernels.RoiAlign.Forward(x.Value, rois, options), x);
        g.Record(y, gy => g.Accumulate(x, Kernels.RoiAlign.Backward(gy, rois, x.Shape, options)));
        return y;
    }

    /// <summary>
    /// y = p + attention(p, context): see <see cref="Kernels.ContextAttention"/>. With <paramref name="saved"/>, a pass that
    /// records gradients keeps the forward's queries and attention weights there for its backward instead of recomputing
    /// them (a later forward with the same block makes an earlier backward recompute: results are the same either way).
    /// </summary>
    public static Variable ContextAttention(this Graph g, Variable p, Variable context, Tensor batchIndex, Variable wq, Variable wk, int heads,
        ContextAttentionSaved? saved = null)
    {
        var keep = g.NeedsGradient(p, context, wq, wk) ? saved : null;
        var y = g.Result(Kernels.ContextAttention.Forward(p.Value, context.Value, batchIndex, wq.Value, wk.Value, heads, keep), p, context, wq, wk);
        g.Record(y, gy =>
        {
            var grads = Kernels.ContextAttention.Backward(gy, p.Value, context.Value, batchIndex, wq.Value, wk.Value, heads, keep);
            g.Accumulate(p, grads.P);
            g.Accumulate(context, grads.G);
            g.Accumulate(wq, grads.Wq);
            g.Accumulate(wk, grads.Wk);
        });
        return y;
    }

    /// <summary>Sum of scalar variables (each one element) as a (1,) variable, each weighted; computed on the device in term order.</summary>
    public static Variable WeightedSum(this Graph g, IReadOnlyList<(Variable Term, float Weight)> terms)
    {
        var parts = new Variable[terms.Count];
        for (int i = 0; i < terms.Count; i++)
        {
            if (terms[i].Term.Value.Length != 1)
                throw new ArgumentException($"term {i} must have one element; got {terms[i].Term.Value.ShapeString}", nameof(terms));
            parts[i] = terms[i].Term;
        }
        // total = 0, then total += wᵢ·termᵢ in order (float32, as a host loop would add them)
        var yv = Tensor.Zeros(g.Device, DataType.Float32, 1);
        for (int i = 0; i < terms.Count; i++) Elementwise.AddScaled(yv, terms[i].Term.Value, terms[i].Weight);
        var y = g.Result(yv, parts);
        g.Record(y, gy =>
        {
            for (int i = 0; i < terms.Count; i++)
            {
                if (!parts[i].RequiresGrad) continue;
                var gi = Tensor.Empty(g.Device, DataType.Float32, 1);
                Elementwise.Scale(gy, terms[i].Weight, gi);
                g.Accumulate(parts[i], gi.Reshape(parts[i].Shape));
                gi.Dispose();
            }
        });
        return y;
    }

    /// <summary>
    /// A scalar loss whose value <paramref name="loss"/> (1,) and gradient <paramref name="grad"/> (dLoss/dx, x's
    /// shape) a <see cref="Kernels.Loss"/> op computed on x's device; the graph takes ownership of both.
    /// Backward scales the saved gradient by the upstream gradient on the device (no host copy).
    /// </summary>
    public static Variable LossResult(this Graph g, Variable x, Tensor loss, Tensor grad)
    {
        g.Keep(grad);
        var y = g.Result(loss, x);
        g.Record(y, gy =>
        {
            var gx = Tensor.Empty(g.Device, DataType.Float32, x.Shape);
            Kernels.Loss.Backward(grad, gy, gx);
            g.Accumulate(x, gx);
        });
        return y;
    }

    /// <summary>
    /// A custom scalar loss computed on the host from x's values (for tests and user losses; the
    /// engine's losses are device ops, <see cref="LossResult"/>): <paramref name="loss"/> fills the
    /// gradient dLoss/dx (same length as x) and returns the loss. Backward scales that
    /// gradient by the upstream gradient.
    /// </summary>
    public static Variable HostLoss(this Graph g, Variable x, HostLossFunction loss)
    {
        // host copy: x, x.Length floats (the caller names which tensor); the gradient goes back as x.Length floats
        var values = x.Value.ToArray<float>();
        var grad = new float[values.Length];
        double l = loss(values, grad);
        var yv = Tensor.Empty(g.Device, DataType.Float32, 1);
        yv.CopyFrom<float>([(float)l]);
        var y = g.Result(yv, x);
        g.Record(y, gy =>
        {
            // host copy: the upstream gradient, 1 float
            float up = gy.ToArray<float>()[0];
            if (up != 1f)
                for (int i = 0; i < grad.Length; i++) grad[i] *= up;
            var gx = Tensor.Empty(g.Device, DataType.Float32, x.Shape);
            gx.CopyFrom<float>(grad);
            g.Accumulate(x, gx);
        });
        return y;
    }
}

/// <summary>Computes a loss from <paramref name="values"/> and writes dLoss/dvalues into <paramref name="grad"/>.</summary>
public delegate double HostLossFunction(ReadOnlySpan<float> values, Span<float> grad);
