// Seeded input generation for the benchmark cases: standard-normal tensors (Box–Muller on a
// System.Random seeded from the case name), RoIs and boxes uniformly placed inside an image,
// uniform scores. Every tensor made here is owned by the CaseInputs and disposed with it.
using GRcn.Kernels;

namespace GRcn.Bench.Cases;

/// <summary>The inputs of one prepared case, made on one device from one seed; disposing releases them all.</summary>
public sealed class CaseInputs : IDisposable
{
    private readonly List<Tensor> _tensors = [];
    private readonly List<IDisposable> _others = [];

    /// <summary>Creates an empty input set on <paramref name="device"/> whose random values come from <paramref name="seed"/>.</summary>
    public CaseInputs(Device device, int seed)
    {
        ArgumentNullException.ThrowIfNull(device);
        Device = device;
        Random = new Random(seed);
    }

    /// <summary>Device every input lives on.</summary>
    public Device Device { get; }

    /// <summary>The seeded generator behind every random value.</summary>
    public Random Random { get; }

    /// <summary>A float32 tensor of independent N(0, <paramref name="scale"/>²) values.</summary>
    public Tensor Normal(float scale, params ReadOnlySpan<int> shape)
    {
        long length = 1;
        foreach (int d in shape) length *= d;
        var data = new float[length];
        for (long i = 0; i < length; i += 2)
        {
            // Box–Muller: two independent standard normals from two uniforms in (0, 1].
            double u1 = 1.0 - Random.NextDouble();
            double u2 = Random.NextDouble();
            double r = Math.Sqrt(-2.0 * Math.Log(u1));
            data[i] = (float)(scale * r * Math.Cos(2 * Math.PI * u2));
            if (i + 1 < length) data[i + 1] = (float)(scale * r * Math.Sin(2 * Math.PI * u2));
        }
        return Track(Tensor.FromSpan<float>(Device, data, shape));
    }

    /// <summary>A float32 tensor of independent standard-normal values.</summary>
    public Tensor Normal(params ReadOnlySpan<int> shape) => Normal(1f, shape);

    /// <summary>A float32 tensor of independent values uniform in [0, 1).</summary>
    public Tensor Uniform(params ReadOnlySpan<int> shape)
    {
        long length = 1;
        foreach (int d in shape) length *= d;
        var data = new float[length];
        for (long i = 0; i < length; i++) data[i] = Random.NextSingle();
        return Track(Tensor.FromSpan<float>(Device, data, shape));
    }

    /// <summary>A zero-filled int64 tensor (batch indices of a single image).</summary>
    public Tensor Int64Zeros(params ReadOnlySpan<int> shape) => Track(Tensor.Zeros(Device, DataType.Int64, shape));

    /// <summary>
    /// <paramref name="count"/> boxes (K, 4) [x1, y1, x2, y2] inside a <paramref name="width"/>×<paramref name="height"/>
    /// image; each side is uniform in [<paramref name="minSide"/>, <paramref name="maxSide"/>] (at most the image size)
    /// and the position uniform among those that keep the box inside.
    /// </summary>
    public Tensor Boxes(int count, float width, float height, float minSide, float maxSide) =>
        Track(Tensor.FromSpan<float>(Device, BoxRows(count, width, height, minSide, maxSide, withBatch: false), count, 4));

    /// <summary>As <see cref="Boxes"/>, as RoIs (K, 5) [0, x1, y1, x2, y2] of image 0.</summary>
    public Tensor Rois(int count, float width, float height, float minSide, float maxSide) =>
        Track(Tensor.FromSpan<float>(Device, BoxRows(count, width, height, minSide, maxSide, withBatch: true), count, 5));

    private float[] BoxRows(int count, float width, float height, float minSide, float maxSide, bool withBatch)
    {
        int cols = withBatch ? 5 : 4;
        var rows = new float[count * cols];
        for (int k = 0; k < count; k++)
        {
            float w = minSide + Random.NextSingle() * (Math.Min(maxSide, width) - minSide);
            float h = minSide + Random.NextSingle() * (Math.Min(maxSide, height) - minSide);
            float x1 = Random.NextSingle() * (width - w);
            float y1 = Random.NextSingle() * (height - h);
            int o = k * cols + (withBatch ? 1 : 0);
            rows[o] = x1;
            rows[o + 1] = y1;
            rows[o + 2] = x1 + w;
            rows[o + 3] = y1 + h;
        }
        return rows;
    }

    /// <summary>Takes ownership of <paramref name="tensor"/>: it is disposed with the inputs.</summary>
    public Tensor Track(Tensor tensor)
    {
        _tensors.Add(tensor);
        return tensor;
    }

    /// <summary>Takes ownership of other per-case state (e.g. an op's saved-for-backward object): it is disposed with the inputs.</summary>
    public T Track<T>(T state) where T : class, IDisposable
    {
        _others.Add(state);
        return state;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var t in _tensors) t.Dispose();
        _tensors.Clear();
        foreach (var o in _others) o.Dispose();
        _others.Clear();
    }
}
