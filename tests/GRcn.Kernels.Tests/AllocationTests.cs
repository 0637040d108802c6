using Xunit.Abstractions;

namespace GRcn.Kernels.Tests;

/// <summary>Runs alone: the allocation counter is process-wide, so other tests must not run meanwhile.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationCollection
{
    public const string Name = "allocation";
}

/// <summary>
/// Steady-state managed allocation of every CPU op: after warm-up calls (enough for the JIT's
/// tiering to settle), a call may allocate only its tensor objects (a Tensor, its shape array
/// and its buffer handle, about 150 bytes each, whatever the size), nothing per element, per
/// worker or per parallel loop (no closures, delegates or tasks, no scratch arrays).
/// </summary>
[Collection(AllocationCollection.Name)]
public sealed class AllocationTests(ITestOutputHelper output)
{
    /// <summary>Managed bytes allowed per tensor object a call creates (outputs and the CPU scratch tensors).</summary>
    private const long BytesPerTensor = 160;

    /// <summary>Managed bytes allowed per call besides its tensors (result records and the like).</summary>
    private const long SlackBytes = 256;

    private const int Warmup = 60;
    private const int Calls = 8;

    /// <summary>Rounds of <see cref="Calls"/> calls; the least per-call figure counts, so a one-off event elsewhere in the process (the JIT compiling a method, late under load) does not.</summary>
    private const int Rounds = 6;

    /// <summary>Threads for the kernels while measuring: at least 2, so the parallel paths run.</summary>
    private const int Threads = 2;

    /// <param name="op">What is measured, for the messages.</param>
    /// <param name="tensors">Tensor objects one call creates (outputs, and scratch tensors of the CPU kernels).</param>
    /// <param name="call">One call.</param>
    private void AssertAllocationFree(string op, int tensors, Action call)
    {
        var cpu = Device.Cpu;
        int threads = cpu.Threads;
        cpu.Threads = Threads;
        try
        {
            for (int i = 0; i < Warmup; i++) call();
            long perCall = long.MaxValue;
            for (int round = 0; round < Rounds; round++)
            {
                long before = GC.GetTotalAllocatedBytes(precise: true);
                for (int i = 0; i < Calls; i++) call();
                perCall = Math.Min(perCall, (GC.GetTotalAllocatedBytes(precise: true) - before) / Calls);
            }
            long bound = tensors * BytesPerTensor + SlackBytes;
            output.WriteLine($"{op}: {perCall} bytes per call (bound {bound})");
            Assert.True(perCall <= bound, $"{op} allocates {perCall} managed bytes per call in steady state; at most {bound} allowed for {tensors} tensors");
        }
        finally
        {
            cpu.Threads = threads;
        }
    }

    private static Tensor Normal(int seed, params int[] shape)
    {
        int count = shape.Aggregate(1, (a, b) => a * b);
        return Tensor.FromArray(TestData.Normal(new Random(seed), count), shape);
    }

    [Fact]
    public void GemmAllocatesNothingPerCall()
    {
        using var a = Normal(1, 96, 80);
        using var b = Normal(2, 80, 112);
        using var c = Tensor.Empty(Device.Cpu, DataType.Float32, 96, 112);
        AssertAllocationFree("gemm (into c)", 0, () => Gemm.Multiply(a, false, b, false, c));
        AssertAllocationFree("matmul", 1, () =>
        {
            using var y = Gemm.MatMul(a, b);
        });
    }

    [Theory]
    [InlineData(3, 1, 1)]
    [InlineData(2, 2, 0)]
    [InlineData(1, 1, 0)]
    public void Conv2dAllocatesNothingPerCall(int kernel, int stride, int pad)
    {
        var options = Conv2dOptions.Create(stride, pad);
        using var x = Normal(3, 2, 16, 20, 24);
        using var w = Normal(4, 24, 16, kernel, kernel);
        using var bias = Normal(5, 24);
        var (oh, ow) = Conv2d.OutputSize(20, 24, kernel, kernel, options);
        using var gy = Normal(6, 2, 24, oh, ow);
        AssertAllocationFree($"conv2d {kernel}x{kernel}/s{stride} forward", 1, () =>
        {
            using var y = Conv2d.Forward(x, w, bias, options);
        });
        AssertAllocationFree($"conv2d {kernel}x{kernel}/s{stride} backward", 3, () =>
        {
            using var grads = Conv2d.Backward(gy, x, w, withBias: true, options);
        });
    }

    [Theory]
    [InlineData(2, 2)]
    [InlineData(2, 1)]
    [InlineData(3, 2)]
    public void MaxPool2dAllocatesNothingPerCall(int kernel, int stride)
    {
        var options = MaxPool2dOptions.Create(kernel, stride);
        using var x = Normal(7, 2, 32, 24, 30);
        AssertAllocationFree($"max_pool2d {kernel}/s{stride}", 3, () =>
        {
            using var r = MaxPool2d.Forward(x, options);
            using var dx = MaxPool2d.Backward(r.Output, r.Indices, 24, 30, options);
        });
    }

    private static Tensor Rois(int seed, int k, int n, float size)
    {
        var rng = new Random(seed);
        var r = new float[k * 5];
        for (int i = 0; i < k; i++)
        {
            float x1 = rng.NextSingle() * size * 0.7f, y1 = rng.NextSingle() * size * 0.7f;
            r[i * 5] = rng.Next(n);
            r[i * 5 + 1] = x1;
            r[i * 5 + 2] = y1;
            r[i * 5 + 3] = x1 + 4 + rng.NextSingle() * size * 0.3f;
            r[i * 5 + 4] = y1 + 4 + rng.NextSingle() * size * 0.3f;
        }
        return Tensor.FromArray(r, k, 5);
    }

    [Theory]
    [InlineData(8)]
    [InlineData(64)]
    public void RoiOpsAllocateNothingPerCall(int channels)
    {
        using var x = Normal(8, 2, channels, 20, 24);
        using var rois = Rois(9, 40, 2, 24 * 16);
        int[] shape = [2, channels, 20, 24];
        var align = new RoiAlignOptions(7, 7, 1.0 / 16, SamplingRatio: 2, Aligned: true);
        AssertAllocationFree($"roi_align C={channels}", 4, () =>
        {
            using var y = RoiAlign.Forward(x, rois, align);
            using var dx = RoiAlign.Backward(y, rois, shape, align);
        });
        var pool = new RoiPoolOptions(7, 7, 1.0 / 16);
        AssertAllocationFree($"roi_pool C={channels}", 5, () =>
        {
            using var r = RoiPool.Forward(x, rois, pool);
            using var dx = RoiPool.Backward(r.Output, rois, r.Argmax, shape, pool);
        });
    }

    [Fact]
    public void ContextAttentionAllocatesNothingPerCall()
    {
        using var p = Normal(10, 12, 32, 3, 3);
        using var g = Normal(11, 2, 32, 5, 5);
        using var bi = Tensor.FromArray(new long[] { 0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1 }, 12);
        using var wq = Normal(12, 16, 32);
        using var wk = Normal(13, 16, 32);
        AssertAllocationFree("context_attention", 7, () =>
        {
            using var y = ContextAttention.Forward(p, g, bi, wq, wk, 4);
            using var grads = ContextAttention.Backward(y, p, g, bi, wq, wk, 4);
        });
        using var saved = new ContextAttentionSaved();
        AssertAllocationFree("context_attention (saved)", 7, () =>
        {
            using var y = ContextAttention.Forward(p, g, bi, wq, wk, 4, saved);
            using var grads = ContextAttention.Backward(y, p, g, bi, wq, wk, 4, saved);
        });
    }

    [Fact]
    public void ElementwiseAndGroupNormAllocateNothingPerCall()
    {
        // large enough that the flat and per-plane loops split across the workers
        using var x = Normal(15, 2, 16, 40, 48);
        using var gy = Normal(16, 2, 16, 40, 48);
        using var y = Tensor.Empty(Device.Cpu, DataType.Float32, 2, 16, 40, 48);
        using var dx = Tensor.Empty(Device.Cpu, DataType.Float32, 2, 16, 40, 48);
        using var scale = Normal(17, 16);
        using var sum = Tensor.Empty(Device.Cpu, DataType.Float32, 16);
        using var pooled = Tensor.Empty(Device.Cpu, DataType.Float32, 2, 16);
        AssertAllocationFree("elementwise", 0, () =>
        {
            Elementwise.Relu(x, y);
            Elementwise.ReluBackward(gy, y, dx);
            Elementwise.Add(x, gy, y);
            Elementwise.AddScaled(y, x, 0.5f);
            Elementwise.Scale(x, 2f, y);
            Elementwise.Multiply(x, gy, y);
            Elementwise.ChannelAffine(x, scale, scale, y);
            Elementwise.ChannelSum(x, sum);
            Elementwise.GlobalAveragePool(x, pooled);
            Elementwise.GlobalAveragePoolBackward(pooled, dx);
        });
        using var w = Normal(18, 4000, 16);
        using var g = Normal(19, 4000, 16);
        using var m = Tensor.Empty(Device.Cpu, DataType.Float32, 4000, 16);
        using var v = Tensor.Empty(Device.Cpu, DataType.Float32, 4000, 16);
        m.Clear();
        v.Clear();
        AssertAllocationFree("adamw", 0, () => Elementwise.AdamWUpdate(w, g, m, v, new AdamWStep(1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, 5)));
        using var gw = Tensor.Empty(Device.Cpu, DataType.Float32, 16);
        using var gb = Tensor.Empty(Device.Cpu, DataType.Float32, 16);
        AssertAllocationFree("group_norm", 3, () =>
        {
            using var r = GroupNorm.Forward(x, 4, scale, scale);
            GroupNorm.Backward(gy, x, r.Mean, r.Rstd, 4, scale, dx, gw, gb);
        });
    }

    [Fact]
    public void NmsAllocatesNothingPerCall()
    {
        var rng = new Random(14);
        int k = 3000;
        var b = new float[k * 4];
        var s = new float[k];
        var cls = new long[k];
        for (int i = 0; i < k; i++)
        {
            float x1 = rng.NextSingle() * 500, y1 = rng.NextSingle() * 500;
            b[i * 4] = x1;
            b[i * 4 + 1] = y1;
            b[i * 4 + 2] = x1 + 1 + rng.NextSingle() * 100;
            b[i * 4 + 3] = y1 + 1 + rng.NextSingle() * 100;
            s[i] = rng.NextSingle();
            cls[i] = rng.Next(5);
        }
        using var boxes = Tensor.FromArray(b, k, 4);
        using var scores = Tensor.FromArray(s, k);
        using var idxs = Tensor.FromArray(cls, k);
        AssertAllocationFree("nms", 2, () =>
        {
            using var keep = Nms.Forward(boxes, scores, 0.7);
        });
        AssertAllocationFree("batched_nms", 2, () =>
        {
            using var keep = BatchedNms.Forward(boxes, scores, idxs, 0.5);
        });
        AssertAllocationFree("box_iou", 1, () =>
        {
            using var iou = BoxIou.Forward(boxes, boxes);
        });
    }
}
