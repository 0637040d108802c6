// Argument validation shared by the public op entry points. Every failure is an
// ArgumentException that names the parameter and states the expected shape.
namespace GRcn.Kernels;

internal static class Check
{
    public static void NotNull(Tensor? t, string name)
    {
        if (t is null) throw new ArgumentNullException(name);
        if (t.IsDisposed) throw new ObjectDisposedException(name, $"{name} was disposed");
    }

    /// <summary><paramref name="t"/> has rank <paramref name="rank"/> and type <paramref name="type"/>.</summary>
    public static void Tensor(Tensor? t, string name, int rank, string expected, DataType type = DataType.Float32)
    {
        NotNull(t, name);
        if (t!.Rank != rank)
            throw new ArgumentException($"{name} must have shape {expected}; got {t.ShapeString}", name);
        if (t.DataType != type)
            throw new ArgumentException($"{name} must be {type} with shape {expected}; got {t.DataType}", name);
    }

    public static void Dim(Tensor t, int dim, int size, string name, string expected)
    {
        if (t.Dim(dim) != size)
            throw new ArgumentException($"{name} must have shape {expected}; got {t.ShapeString}", name);
    }

    public static void Shape(Tensor t, string name, string expected, params ReadOnlySpan<int> shape)
    {
        if (!t.Shape.SequenceEqual(shape))
            throw new ArgumentException($"{name} must have shape {expected} = {Kernels.Tensor.FormatShape(shape)}; got {t.ShapeString}", name);
    }

    public static void SameDevice(Tensor reference, string referenceName, Tensor? other, string otherName)
    {
        if (other is not null && other.Device != reference.Device)
            throw new ArgumentException($"{otherName} is on {other.Device.Name} but {referenceName} is on {reference.Device.Name}; all tensors of an op must be on one device", otherName);
    }

    public static void Positive(int value, string name)
    {
        if (value < 1) throw new ArgumentOutOfRangeException(name, value, $"{name} must be at least 1");
    }

    public static void NonNegative(int value, string name)
    {
        if (value < 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must be non-negative");
    }

    /// <summary>Host copy of a small float tensor (boxes, RoIs) for value checks.</summary>
    private static float[] HostValues(Tensor t) => t.ToArray<float>();

    /// <summary>Rejects NaN or infinite values in a box or RoI tensor.</summary>
    public static void Finite(Tensor t, string name)
    {
        if (t.Length == 0) return;
        ReadOnlySpan<float> v = t.Device.Kind == DeviceKind.Cpu ? t.AsSpan<float>() : HostValues(t);
        int cols = t.Rank == 2 ? t.Dim(1) : 1;
        for (int i = 0; i < v.Length; i++)
        {
            if (!float.IsFinite(v[i]))
                throw new ArgumentException($"{name} holds a non-finite value ({v[i]}) at row {i / cols}, column {i % cols}; boxes and RoIs must be finite", name);
        }
    }

    /// <summary>RoIs: (K, 5) float rows [batch_index, x1, y1, x2, y2], finite, batch index an integer in [0, batch).</summary>
    public static void Rois(Tensor rois, string name, int batch, Tensor input, string inputName)
    {
        Tensor(rois, name, 2, "(K, 5) rows [batch_index, x1, y1, x2, y2]");
        Dim(rois, 1, 5, name, "(K, 5) rows [batch_index, x1, y1, x2, y2]");
        SameDevice(input, inputName, rois, name);
        if (rois.Length == 0) return;
        ReadOnlySpan<float> v = rois.Device.Kind == DeviceKind.Cpu ? rois.AsSpan<float>() : HostValues(rois);
        for (int k = 0; k < v.Length / 5; k++)
        {
            for (int j = 0; j < 5; j++)
            {
                if (!float.IsFinite(v[k * 5 + j]))
                    throw new ArgumentException($"{name} row {k} holds a non-finite value ({v[k * 5 + j]}) in column {j}; RoIs must be finite", name);
            }
            float b = v[k * 5];
            if (b < 0 || b >= batch || b != MathF.Floor(b))
                throw new ArgumentException($"{name} row {k} has batch index {b}; expected an integer in [0, {batch}) for {inputName} of shape {input.ShapeString}", name);
        }
    }

    /// <summary>Batch indices: (K) int64, each in [0, batch).</summary>
    public static void BatchIndex(Tensor index, string name, int count, int batch, string batchName)
    {
        Tensor(index, name, 1, "(K,) int64", DataType.Int64);
        Shape(index, name, "(K,) int64", count);
        if (index.Length == 0) return;
        ReadOnlySpan<long> v = index.Device.Kind == DeviceKind.Cpu ? index.AsSpan<long>() : index.ToArray<long>();
        for (int k = 0; k < v.Length; k++)
        {
            if (v[k] < 0 || v[k] >= batch)
                throw new ArgumentException($"{name}[{k}] = {v[k]}; expected an index in [0, {batch}) into {batchName}", name);
        }
    }

    /// <summary>Runs a kernel that fills a freshly allocated output; disposes the output if the kernel throws.</summary>
    public static void DisposeOnFailure(Tensor output, Action kernel)
    {
        try
        {
            kernel();
        }
        catch
        {
            output.Dispose();
            throw;
        }
    }
}
