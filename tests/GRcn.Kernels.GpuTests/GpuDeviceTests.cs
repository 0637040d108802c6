// The GPU devices themselves, on the emulator (and cuda:0 where present): memory round trips,
// fills, clears and copies on the device, transfers between devices, the caching allocator,
// first-use kernel compilation, and what a machine without a GPU reports.
namespace GRcn.Kernels.GpuTests;

public class GpuDeviceTests
{
    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void MemoryRoundTripsAndDeviceOpsWork(string name)
    {
        var d = GpuDevices.Get(name);
        var values = TestData.Uniform(1, 1000);
        using var t = TestData.On(d, values, 10, 100);
        Assert.Equal(d, t.Device);
        Assert.Equal(values, t.ToArray<float>());
        Assert.Throws<InvalidOperationException>(() => t.AsSpan<float>());

        using var c = t.Clone();
        t.Fill(2.5f);
        Assert.All(t.ToArray<float>(), v => Assert.Equal(2.5f, v));
        Assert.Equal(values, c.ToArray<float>());
        c.CopyFrom(t, 10, 990, 10);
        Assert.Equal(values[..990].Concat(Enumerable.Repeat(2.5f, 10)), c.ToArray<float>());
        t.Clear();
        Assert.All(t.ToArray<float>(), v => Assert.Equal(0f, v));

        using var back = c.To(Device.Cpu);
        Assert.Equal(c.ToArray<float>(), back.AsSpan<float>().ToArray());
        using var longs = TestData.On(d, new long[] { -3, long.MaxValue, 7 }, 3);
        Assert.Equal([-3, long.MaxValue, 7], longs.ToArray<long>());
        using var empty = Tensor.Empty(d, DataType.Float32, 0, 4);
        Assert.Empty(empty.ToArray<float>());
        empty.Fill(1f);
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void FreedMemoryIsReusedWithoutNewAllocations(string name)
    {
        var d = GpuDevices.Get(name);
        d.TrimCache();
        using (Tensor.Empty(d, DataType.Float32, 3000)) { }
        long held = d.HeldBytes;
        Assert.True(d.CachedBytes >= 12000);
        for (int i = 0; i < 20; i++)
        {
            using var t = Tensor.Empty(d, DataType.Float32, 3000 - i % 3); // the same 512-byte size class
            t.Fill(i);
        }
        Assert.Equal(held, d.HeldBytes);
        d.TrimCache();
        Assert.Equal(0, d.CachedBytes);
    }

    [Fact]
    public void EmulatorEmulatesAnNvidiaGpu()
    {
        var d = Device.Emulator;
        Assert.Equal(DeviceKind.Emulator, d.Kind);
        Assert.Equal("emulator", d.Name);
        Assert.Equal(32, d.WarpSize);
        Assert.Null(d.ComputeCapability);
        Assert.Contains("warps of 32", d.Description);
        using var t = Tensor.Empty(d, DataType.Float32, 4);
        t.Fill(1f);
        Assert.True(d.CompiledKernels.ContainsKey("fill"));
    }

    [Fact]
    public void AKernelThatFailsToLoadIsNamed()
    {
        Action? slot = null;
        var e = Assert.Throws<GpuException>(() =>
            Device.Emulator.Kernels.Kernel(ref slot, "example_kernel", _ => throw new NotSupportedException("no PTX for this")));
        Assert.Equal("example_kernel", e.Kernel);
        Assert.Equal("kernel example_kernel failed to compile for emulator: NotSupportedException: no PTX for this", e.Message);
        Assert.Null(slot);
        Assert.False(Device.Emulator.CompiledKernels.ContainsKey("example_kernel"));
    }

    [Fact]
    public void TensorsMoveBetweenEmulatorAndCpu()
    {
        var values = TestData.Uniform(2, 37);
        using var cpu = Tensor.FromArray(values, 37);
        using var gpu = cpu.To(Device.Emulator);
        using var again = gpu.To(Device.Cpu);
        Assert.Equal(values, again.AsSpan<float>().ToArray());
        using var cpuTarget = Tensor.Zeros(Device.Cpu, 37);
        var e = Assert.Throws<ArgumentException>(() => cpuTarget.CopyFrom(gpu));
        Assert.Contains("emulator", e.Message);
    }

    [Fact]
    public void CudaAbsenceIsExplained()
    {
        if (GpuDevices.Cuda is not null) return; // covered by CudaDeviceIsDescribed
        var e = Assert.Throws<PlatformNotSupportedException>(() => Device.Cuda(0));
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
        Assert.Throws<ArgumentOutOfRangeException>(() => Device.Cuda(-1));
    }

    [CudaFact]
    public void CudaDeviceIsDescribed()
    {
        var d = Device.Cuda(0);
        Assert.Same(d, Device.Cuda(0));
        Assert.Equal(DeviceKind.Cuda, d.Kind);
        Assert.Equal("cuda:0", d.Name);
        Assert.True(d.ComputeCapability!.Major >= 7);
        Assert.True(d.TotalMemory > 1L << 30);
        Assert.Contains("compute capability", d.Description);
    }
}
