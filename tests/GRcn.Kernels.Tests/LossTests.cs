// The CPU losses against plain definitions (log-sum-exp, Huber, the stable BCE) and central
// differences of their own loss, the backward's upstream scaling, the sum of squares, the dropout
// mask against SplitMix64 drawn one output at a time, and the argument checks.
namespace GRcn.Kernels.Tests;

public class LossTests
{
    private static float[] Random(int seed, int n, float lo, float hi)
    {
        var r = new System.Random(seed);
        return Enumerable.Range(0, n).Select(_ => lo + (float)r.NextDouble() * (hi - lo)).ToArray();
    }

    private static (double Loss, float[] Grad) Run(float[] x, Action<Tensor, Tensor, Tensor> op)
    {
        using var t = Tensor.FromArray(x, x.Length);
        using var loss = Tensor.Empty(Device.Cpu, DataType.Float32, 1);
        using var grad = Tensor.Empty(Device.Cpu, DataType.Float32, x.Length);
        op(t, loss, grad);
        return (loss.ToArray<float>()[0], grad.ToArray<float>());
    }

    /// <summary>The analytic gradient against central differences of the loss in double.</summary>
    private static void GradientMatchesDifferences(float[] x, Func<double[], double> reference, Action<Tensor, Tensor, Tensor> op)
    {
        var (loss, grad) = Run(x, op);
        var xd = x.Select(v => (double)v).ToArray();
        Assert.Equal(reference(xd), loss, 5);
        for (int i = 0; i < x.Length; i++)
        {
            double h = 1e-4, keep = xd[i];
            xd[i] = keep + h;
            double up = reference(xd);
            xd[i] = keep - h;
            double down = reference(xd);
            xd[i] = keep;
            Assert.True(Math.Abs((up - down) / (2 * h) - grad[i]) < 1e-4, $"element {i}: gradient {grad[i]}, differences {(up - down) / (2 * h)}");
        }
    }

    [Fact]
    public void SoftmaxCrossEntropyIsTheWeightedMeanOfLogSumExpMinusTheLabelLogit()
    {
        int rows = 5, k = 4;
        var x = Random(1, rows * k, -3f, 3f);
        int[] labels = [0, 3, 1, 1, 2];
        float[] weights = [1f, 2f, 0.5f, 0f, 1.5f];
        GradientMatchesDifferences(x, v =>
        {
            double total = 0;
            for (int r = 0; r < rows; r++)
            {
                double lse = Math.Log(Enumerable.Range(0, k).Sum(j => Math.Exp(v[r * k + j])));
                total += weights[r] * (lse - v[r * k + labels[r]]);
            }
            return total / 7;
        }, (t, l, g) => Loss.SoftmaxCrossEntropy(t.Reshape(rows, k), labels, weights, 7, l, g.Reshape(rows, k)));
    }

    [Fact]
    public void SmoothL1IsHuberOverTheSelectionAndZeroElsewhere()
    {
        var x = Random(2, 12, -1f, 1f);
        int[] indices = [11, 0, 5, 6, 2, 3, 9, 8];
        var targets = Random(3, 8, -1f, 1f);
        float[] weights = [2f, 0.5f];
        const float beta = 0.25f;
        GradientMatchesDifferences(x, v =>
        {
            double total = 0;
            for (int j = 0; j < indices.Length; j++)
            {
                double d = v[indices[j]] - targets[j], ad = Math.Abs(d);
                total += weights[j / 4] * (ad < beta ? 0.5 * d * d / beta : ad - 0.5 * beta);
            }
            return total / 3;
        }, (t, l, g) => Loss.SmoothL1(t, indices, targets, weights, 4, beta, 3, l, g));
        var (_, grad) = Run(x, (t, l, g) => Loss.SmoothL1(t, indices, targets, [], 4, beta, 3, l, g));
        foreach (int i in new[] { 1, 4, 7, 10 }) Assert.Equal(0f, grad[i]);
    }

    [Fact]
    public void BinaryCrossEntropyWithLogitsIsStableAtExtremeLogits()
    {
        float[] x = [-100f, 100f, 0.5f, -2f, 3f];
        var (loss, grad) = Run(x, (t, l, g) => Loss.BinaryCrossEntropyWithLogits(t, [0, 1, 2, 3], [1f, 0f, 1f, 0f], 4, l, g));
        // −log σ(−100) = 100 and −log(1 − σ(100)) = 100, plus the two moderate terms
        double want = (100 + 100 + Math.Log(1 + Math.Exp(-0.5)) + Math.Log(1 + Math.Exp(-2))) / 4;
        Assert.Equal(want, loss, 5);
        Assert.Equal(-0.25f, grad[0], 6);
        Assert.Equal(0.25f, grad[1], 6);
        Assert.Equal(0f, grad[4]);
    }

    [Fact]
    public void BackwardScalesTheSavedGradient()
    {
        using var grad = Tensor.FromArray([1f, -2f, 3f], 3);
        using var up = Tensor.FromArray([2f], 1);
        using var gx = Tensor.Empty(Device.Cpu, DataType.Float32, 3);
        Loss.Backward(grad, up, gx);
        Assert.Equal([2f, -4f, 6f], gx.ToArray<float>());
    }

    [Fact]
    public void SumOfSquaresAddsEveryTensor()
    {
        using var a = Tensor.FromArray([1f, 2f], 2);
        using var b = Tensor.FromArray([3f], 1);
        using var empty = Tensor.Empty(Device.Cpu, DataType.Float32, 0);
        Assert.Equal(14.0, Loss.SumOfSquares([a, empty, b]));
    }

    [Fact]
    public void DropoutMaskDrawsTheSplitMix64StreamInElementOrder()
    {
        const ulong seed = 987654321;
        const float p = 0.3f;
        using var mask = Tensor.Empty(Device.Cpu, DataType.Float32, 300);
        Elementwise.DropoutMask(mask, seed, p);
        ulong state = seed;
        var got = mask.ToArray<float>();
        for (int i = 0; i < got.Length; i++)
        {
            ulong z = state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            float u = ((z ^ (z >> 31)) >> 40) * (1f / (1 << 24));
            Assert.Equal(u >= p ? 1f / (1f - p) : 0f, got[i]);
        }
    }

    [Fact]
    public void BadSelectionsAreRejectedWithTheParameterNamed()
    {
        using var x = Tensor.FromArray(new float[8], 8);
        using var loss = Tensor.Empty(Device.Cpu, DataType.Float32, 1);
        using var grad = Tensor.Empty(Device.Cpu, DataType.Float32, 8);
        Assert.Equal("indices", Assert.Throws<ArgumentException>(() => Loss.SmoothL1(x, [1, 1], [0f, 0f], [], 1, 1f, 1, loss, grad)).ParamName);
        Assert.Equal("indices", Assert.Throws<ArgumentException>(() => Loss.BinaryCrossEntropyWithLogits(x, [8], [0f], 1, loss, grad)).ParamName);
        Assert.Equal("targets", Assert.Throws<ArgumentException>(() => Loss.BinaryCrossEntropyWithLogits(x, [1], [], 1, loss, grad)).ParamName);
        Assert.Equal("grad", Assert.Throws<ArgumentException>(() => Loss.BinaryCrossEntropyWithLogits(x, [1], [0f], 1, loss, x)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => Loss.BinaryCrossEntropyWithLogits(x, [1], [0f], 0, loss, grad));
        using var logits = Tensor.FromArray(new float[6], 2, 3);
        using var g2 = Tensor.Empty(Device.Cpu, DataType.Float32, 2, 3);
        Assert.Equal("labels", Assert.Throws<ArgumentException>(() => Loss.SoftmaxCrossEntropy(logits, [0, 3], [], 2, loss, g2)).ParamName);
        Assert.Equal("weights", Assert.Throws<ArgumentException>(() => Loss.SoftmaxCrossEntropy(logits, [0, 2], [1f], 2, loss, g2)).ParamName);
    }
}
