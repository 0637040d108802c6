namespace GRcn.Kernels.Tests;

public class TensorTests
{
    [Fact]
    public void FromArrayCopiesAndReportsShape()
    {
        using var t = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
        Assert.Equal(2, t.Rank);
        Assert.Equal(6, t.Length);
        Assert.Equal(3, t.Dim(-1));
        Assert.Equal("(2, 3)", t.ShapeString);
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6 }, t.ToArray<float>());
    }

    [Fact]
    public void ReshapeSharesMemoryAndKeepsItAliveUntilTheLastViewIsDisposed()
    {
        var t = Tensor.FromArray(new float[] { 1, 2, 3, 4 }, 4);
        var v = t.Reshape(2, -1);
        Assert.Equal([2, 2], v.Shape.ToArray());
        t.Dispose();
        v.AsSpan<float>()[3] = 9;
        Assert.Equal(new float[] { 1, 2, 3, 9 }, v.ToArray<float>());
        v.Dispose();
        Assert.Throws<ObjectDisposedException>(() => v.ToArray<float>());
    }

    [Fact]
    public void BadShapesAndTypesAreRejected()
    {
        Assert.Equal("shape", Assert.Throws<ArgumentException>(() => Tensor.Zeros(Device.Cpu, 2, -1)).ParamName);
        Assert.Equal("data", Assert.Throws<ArgumentException>(() => Tensor.FromArray(new float[3], 2, 2)).ParamName);
        using var t = Tensor.Zeros(Device.Cpu, 2, 3);
        Assert.Equal("shape", Assert.Throws<ArgumentException>(() => t.Reshape(4, 2)).ParamName);
        Assert.Throws<InvalidOperationException>(() => t.AsSpan<long>());
    }

    [Fact]
    public void DisposedMemoryIsReusedByTheCachingAllocator()
    {
        var cpu = Device.Cpu;
        cpu.TrimCache();
        var a = Tensor.Empty(cpu, DataType.Float32, 1000, 37);
        nint pointer = a.Buffer.Pointer;
        a.Dispose();
        Assert.True(cpu.CachedBytes >= 1000 * 37 * 4);
        using var b = Tensor.Empty(cpu, DataType.Float32, 37, 1000);
        Assert.Equal(pointer, b.Buffer.Pointer);
    }

    [Fact]
    public void LargeCpuBlocksStartOnAHugePageBoundary()
    {
        // madvise exists on every glibc Linux, so huge-page blocks are on unless turned off
        if (OperatingSystem.IsLinux() && Environment.GetEnvironmentVariable("GRCN_CPU_HUGE_PAGES") != "0")
            Assert.True(CpuMemoryPool.HugePages);
        using var large = Tensor.Empty(Device.Cpu, DataType.Float32, 3, 1 << 18);
        using var small = Tensor.Empty(Device.Cpu, DataType.Float32, 1000, 37);
        long expected = CpuMemoryPool.HugePages ? CpuMemoryPool.HugePageBytes : 64;
        Assert.Equal(0, large.Buffer.Pointer % expected);
        Assert.Equal(0, small.Buffer.Pointer % 64);
        // the memory is ordinary memory: every float can be written and read back
        var values = Enumerable.Range(0, 3 << 18).Select(i => (float)i).ToArray();
        large.CopyFrom(values);
        Assert.Equal(values, large.ToArray<float>());
    }

    [Fact]
    public void FillClearAndCopy()
    {
        using var t = Tensor.Empty(Device.Cpu, DataType.Float32, 5);
        t.Fill(2.5f);
        Assert.All(t.ToArray<float>(), v => Assert.Equal(2.5f, v));
        using var c = t.Clone();
        t.Clear();
        Assert.All(t.ToArray<float>(), v => Assert.Equal(0f, v));
        Assert.All(c.ToArray<float>(), v => Assert.Equal(2.5f, v));
    }

    [Fact]
    public void DevicesParseAndCudaExplainsWhyItIsMissing()
    {
        Assert.Same(Device.Cpu, Device.Parse("CPU"));
        Assert.Same(Device.Emulator, Device.Parse("emulator"));
        Assert.Contains(Device.List(), d => d.Kind == DeviceKind.Emulator && d.Available && d.Name == "emulator");
        Assert.Equal("name", Assert.Throws<ArgumentException>(() => Device.Parse("tpu")).ParamName);
        var list = Device.List();
        Assert.Contains(list, d => d.Kind == DeviceKind.Cpu && d.Available);
        var cuda = Assert.Single(list, d => d.Kind == DeviceKind.Cuda);
        if (!cuda.Available)
        {
            Assert.StartsWith("no CUDA device", cuda.Description);
            var e = Assert.Throws<PlatformNotSupportedException>(() => Device.Parse("cuda:0"));
            Assert.Equal(cuda.Description, "no CUDA device: " + e.Message);
        }
    }
}
