// Weight initialisation as detection code does it: Kaiming normal (fan_out, ReLU gain) for
// backbone convolutions, N(0, σ²) for heads (0.01 classifier, 0.001 box deltas), zeros for
// biases. Values are drawn on the host from a seeded generator, so a seed fixes every weight.
using GRcn.Detection.Autograd;
using GRcn.Kernels;

namespace GRcn.Detection.Nn;

/// <summary>How a weight tensor is initialised.</summary>
public abstract record Init
{
    /// <summary>Kaiming (He) normal: σ = √(2 / fan), fan_out = out·kh·kw by default (torchvision's detection backbones).</summary>
    public sealed record KaimingNormal(bool FanOut = true) : Init;

    /// <summary>Normal with mean 0 and standard deviation <paramref name="Std"/>.</summary>
    public sealed record Normal(float Std) : Init;

    /// <summary>Kaiming uniform with a = √5 (PyTorch's default for Linear/Conv layers).</summary>
    public sealed record TorchDefault : Init;

    /// <summary>All zeros.</summary>
    public sealed record Zeros : Init;

    /// <summary>Draws a tensor of <paramref name="shape"/> (dimension 0 = outputs, 1 = inputs, rest = kernel).</summary>
    public Tensor Create(Device device, SplitMix64 rng, params int[] shape)
    {
        long n = 1;
        foreach (var d in shape) n *= d;
        var host = new float[n];
        long receptive = 1;
        for (int i = 2; i < shape.Length; i++) receptive *= shape[i];
        long fanIn = shape.Length > 1 ? shape[1] * receptive : shape[0];
        long fanOut = shape[0] * receptive;
        switch (this)
        {
            case KaimingNormal k:
                Gaussian(host, rng, Math.Sqrt(2.0 / (k.FanOut ? fanOut : fanIn)));
                break;
            case Normal nm:
                Gaussian(host, rng, nm.Std);
                break;
            case TorchDefault:
                double bound = 1.0 / Math.Sqrt(fanIn);
                for (long i = 0; i < n; i++) host[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
                break;
            case Zeros:
                break;
        }
        var t = Tensor.Empty(device, DataType.Float32, shape);
        t.CopyFrom<float>(host);
        return t;
    }

    private static void Gaussian(float[] host, SplitMix64 rng, double std)
    {
        for (long i = 0; i < host.LongLength; i++) host[i] = (float)(rng.NextGaussian() * std);
    }
}
