// Variables of the layer-level reverse-mode autodiff: a value tensor, an optional gradient
// tensor, and (for results of recorded ops) the node that made it. Parameters are variables
// that outlive a graph: they hold a named, persistent value and an accumulated gradient.
using GRcn.Kernels;

namespace GRcn.Detection.Autograd;

/// <summary>A tensor in a <see cref="Graph"/>, with its gradient once <see cref="Graph.Backward"/> has run.</summary>
public class Variable
{
    internal Variable(Tensor value, bool requiresGrad)
    {
        Value = value;
        RequiresGradFlag = requiresGrad;
    }

    /// <summary>The value.</summary>
    public Tensor Value { get; internal set; }

    /// <summary>dLoss/dValue after <see cref="Graph.Backward"/>; null when nothing flowed here.</summary>
    public Tensor? Grad { get; internal set; }

    private protected bool RequiresGradFlag;

    /// <summary>Whether gradients flow to this variable.</summary>
    public virtual bool RequiresGrad => RequiresGradFlag;

    /// <summary>Shape of the value.</summary>
    public ReadOnlySpan<int> Shape => Value.Shape;

    /// <summary>Size of dimension <paramref name="dim"/> of the value.</summary>
    public int Dim(int dim) => Value.Dim(dim);

    /// <inheritdoc/>
    public override string ToString() => $"Variable{Value.ShapeString}";
}

/// <summary>A learnable (or frozen) tensor of a <see cref="Nn.Module"/>, with a persistent gradient.</summary>
public sealed class Parameter : Variable
{
    internal Parameter(Tensor value, bool trainable, bool weightDecay) : base(value, trainable)
    {
        WeightDecay = weightDecay;
        Grad = trainable ? Tensor.Zeros(value.Device, value.Shape) : null;
    }

    /// <summary>Whether the optimiser updates it (false for frozen layers and statistics).</summary>
    public bool Trainable
    {
        get => RequiresGradFlag;
        set
        {
            if (value == RequiresGradFlag) return;
            RequiresGradFlag = value;
            if (value) Grad ??= Tensor.Zeros(Value.Device, Value.Shape);
            else
            {
                Grad?.Dispose();
                Grad = null;
            }
        }
    }

    /// <summary>Whether weight decay applies (false for biases and normalisation terms, as detection code does).</summary>
    public bool WeightDecay { get; }

    /// <summary>Whether it is a buffer (running statistics), never trainable.</summary>
    public bool IsBuffer { get; init; }

    /// <summary>Sets the gradient to zero.</summary>
    public void ZeroGrad() => Grad?.Clear();

    /// <summary>Replaces the value's elements (same shape) from host data.</summary>
    public void Load(ReadOnlySpan<float> values) => Value.CopyFrom(values);
}
