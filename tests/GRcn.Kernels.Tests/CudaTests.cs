// Tests of the CUDA device layer. Facts run everywhere: how CUDA reports itself unavailable,
// error formatting, the binding table, argument packing. [CudaDriverFact] needs only
// libcuda.so.1 (no GPU); [CudaFact] needs a usable GPU and is skipped, with the reason, without one.
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using GRcn.Kernels.Cuda;

namespace GRcn.Kernels.Tests;

/// <summary>A fact that needs CUDA device 0; skipped with "no CUDA device: reason" where it cannot be opened.</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    private static readonly Lazy<string?> s_reason = new(() =>
    {
        try
        {
            Device.Cuda(0);
            return null;
        }
        catch (PlatformNotSupportedException e)
        {
            return e.Message;
        }
    });

    /// <summary>Sets <see cref="FactAttribute.Skip"/> when CUDA device 0 is unavailable.</summary>
    public CudaFactAttribute()
    {
        if (s_reason.Value is { } reason) Skip = "no CUDA device: " + reason;
    }
}

/// <summary>A fact that needs the driver library (libcuda.so.1) but no GPU.</summary>
public sealed class CudaDriverFactAttribute : FactAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> when libcuda.so.1 cannot be loaded.</summary>
    public CudaDriverFactAttribute()
    {
        if (!CudaDriver.LibraryLoaded) Skip = "libcuda.so.1 not loadable: " + CudaDriver.UnavailableReason;
    }
}

public class CudaAvailabilityTests
{
    // Every way CUDA can be unavailable, as the reason's opening words.
    private static readonly Regex KnownReason = new(
        @"^(libcuda\.so\.1 not found: install the NVIDIA driver" +
        @"|libcuda\.so\.1 lacks cu\w+" +
        @"|libcuda\.so\.1 could not be (loaded|bound): " +
        @"|cuInit failed: (CUDA_ERROR_\w+|CUresult -?\d+) \(.+\)" +
        @"|no CUDA device present" +
        @"|CUDA device 0 could not be opened: cu\w+ failed: " +
        @"|the CUDA backend loads libcuda\.so\.1 and runs on Linux only)");

    /// <summary>CUDA device 0, or null and why it cannot be opened.</summary>
    private static (CudaDevice? Device, string? Reason) OpenDevice0()
    {
        try
        {
            return (Device.Cuda(0), null);
        }
        catch (PlatformNotSupportedException e)
        {
            return (null, e.Message);
        }
    }

    [Fact]
    public void CudaThrowsPlatformNotSupportedWithTheReasonOrOpensDevice0()
    {
        var (device, reason) = OpenDevice0();
        if (device is not null)
        {
            Assert.Equal("cuda:0", device.Name);
            return;
        }
        Assert.Matches(KnownReason, reason);
        if (CudaDriver.UnavailableReason is { } driverReason)
        {
            Assert.Equal(driverReason, reason);
            Assert.Equal(driverReason, Assert.Throws<PlatformNotSupportedException>(() => Device.Cuda(3)).Message);
        }
    }

    [Fact]
    public void ParseCuda1ThrowsWithTheReasonOrGivesDevice1()
    {
        if (CudaDriver.UnavailableReason is { } reason)
        {
            var e = Assert.Throws<PlatformNotSupportedException>(() => Device.Parse("cuda:1"));
            Assert.Equal(reason, e.Message);
            Assert.Equal(reason, Assert.Throws<PlatformNotSupportedException>(() => Device.Parse("cuda")).Message);
        }
        else if (CudaDriver.DeviceCount() == 1)
        {
            var e = Assert.Throws<PlatformNotSupportedException>(() => Device.Parse("cuda:1"));
            Assert.Equal("CUDA device 1 requested but 1 present", e.Message);
        }
        else
        {
            Assert.Equal("cuda:1", Device.Parse("cuda:1").Name);
        }
    }

    [Fact]
    public void NegativeOrdinalIsAnArgumentError()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Device.Cuda(-1));
        Assert.Throws<ArgumentException>(() => Device.Parse("cuda:-1"));
    }

    [Fact]
    public void ListReportsCudaWithTheReasonWhenUnavailable()
    {
        var cuda = Assert.Single(Device.List(), d => d.Kind == DeviceKind.Cuda);
        var (device, reason) = OpenDevice0();
        if (device is null)
        {
            Assert.False(cuda.Available);
            Assert.Equal("cuda", cuda.Name);
            Assert.Equal("no CUDA device: " + reason, cuda.Description);
        }
        else
        {
            Assert.True(cuda.Available);
            Assert.Equal("cuda:0", cuda.Name);
            Assert.Equal(device.Description, cuda.Description);
        }
    }
}

public class CudaExceptionTests
{
    [Fact]
    public void MessageNamesTheCallTheCodeAndItsText()
    {
        var e = new CudaException("cuMemAlloc_v2", CUresult.CUDA_ERROR_OUT_OF_MEMORY);
        Assert.Equal("cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)", e.Message);
        Assert.Equal("cuMemAlloc_v2", e.Call);
        Assert.Equal(CUresult.CUDA_ERROR_OUT_OF_MEMORY, e.Result);
        Assert.Equal("CUDA_ERROR_OUT_OF_MEMORY", e.ErrorName);
    }

    [Fact]
    public void DetailFollowsTheCode()
    {
        var e = new CudaException("cuModuleGetFunction", CUresult.CUDA_ERROR_NOT_FOUND, "kernel roi_align_forward in module roi_align");
        Assert.Equal("cuModuleGetFunction failed: CUDA_ERROR_NOT_FOUND (named symbol not found): kernel roi_align_forward in module roi_align", e.Message);
    }

    [Fact]
    public void UnknownCodeFallsBackToItsNumber()
    {
        var e = new CudaException("cuInit", (CUresult)12345);
        Assert.StartsWith("cuInit failed: CUresult 12345 (", e.Message);
        Assert.Equal("CUresult 12345", e.ErrorName);
    }

    [Fact]
    public void CheckThrowsOnlyOnFailure()
    {
        CudaDriver.Check(CUresult.CUDA_SUCCESS, "cuInit");
        var e = Assert.Throws<CudaException>(() => CudaDriver.Check(CUresult.CUDA_ERROR_NO_DEVICE, "cuInit"));
        Assert.Equal("cuInit failed: CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)", e.Message);
    }

    [Fact]
    public void FallbackNamesAreTheEnumNamesAndEveryCodeHasAText()
    {
        foreach (var r in Enum.GetValues<CUresult>())
        {
            Assert.Equal(r.ToString(), CudaDriver.FallbackName(r));
            Assert.False(string.IsNullOrWhiteSpace(CudaDriver.ErrorText(r)), r.ToString());
        }
    }

    [CudaDriverFact]
    public void DriverNamesEveryCodeAsTheEnumDoesAndFallbackTextsMatchTheDriver()
    {
        foreach (var r in Enum.GetValues<CUresult>())
        {
            Assert.Equal(r.ToString(), CudaDriver.ErrorName(r));
            if (CudaDriver.FallbackText(r) is { } text) Assert.Equal(text, CudaDriver.ErrorText(r));
        }
    }
}

public class CudaBindingTests
{
    private static string[] EntryPoints() => typeof(CudaDriver)
        .GetMethods(BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public)
        .Select(m => (Method: m, Import: m.GetCustomAttribute<LibraryImportAttribute>()))
        .Where(x => x.Import is not null)
        .Select(x => x.Import!.EntryPoint ?? x.Method.Name)
        .Order(StringComparer.Ordinal)
        .ToArray();

    [Fact]
    public void ProbedExportsAreExactlyTheBoundEntryPoints()
    {
        var probed = CudaDriver.RequiredExports.Concat(CudaDriver.OptionalExports).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(probed, EntryPoints());
        Assert.All(typeof(CudaDriver).GetMethods(BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public)
            .Where(m => m.GetCustomAttribute<LibraryImportAttribute>() is not null),
            m => Assert.Equal(CudaDriver.Library, m.GetCustomAttribute<LibraryImportAttribute>()!.LibraryName));
    }

    [Fact]
    public void VersionedEntryPointsAreTheV2Ones()
    {
        var bound = EntryPoints();
        // cuda.h maps each of these names to its _v2 export (64-bit sizes and pointers, current semantics).
        string[] legacy = ["cuDeviceTotalMem", "cuDevicePrimaryCtxRelease", "cuMemAlloc", "cuMemFree", "cuMemcpyHtoDAsync",
            "cuMemcpyDtoHAsync", "cuMemcpyDtoDAsync", "cuStreamDestroy", "cuEventDestroy"];
        foreach (var name in legacy)
        {
            Assert.DoesNotContain(name, bound);
            Assert.Contains(name + "_v2", bound);
        }
    }

    [CudaDriverFact]
    public void DriverVersionIsReadable()
    {
        Assert.True(CudaDriver.DriverVersion() >= 11000, $"driver version {CudaDriver.DriverVersion()}");
    }
}

public unsafe class CudaKernelArgumentTests
{
    private readonly record struct Triple(int A, float B, short C);

    [Fact]
    public void EachPointerAddressesItsValue()
    {
        var args = new KernelArguments();
        args.Add(42);
        args.Add(1.5f);
        args.Add(-7L);
        args.Add(0xDEAD_BEEF_0000_1234UL);
        args.Add(new Triple(3, -2.25f, 9));
        args.Add((byte)200);
        Assert.Equal(6, args.Count);
        void** p = stackalloc void*[args.Count];
        args.FillPointers(p);
        Assert.Equal(42, *(int*)p[0]);
        Assert.Equal(1.5f, *(float*)p[1]);
        Assert.Equal(-7L, *(long*)p[2]);
        Assert.Equal(0xDEAD_BEEF_0000_1234UL, *(ulong*)p[3]);
        Assert.Equal(new Triple(3, -2.25f, 9), *(Triple*)p[4]);
        Assert.Equal((byte)200, *(byte*)p[5]);
        for (int i = 0; i < args.Count; i++) Assert.Equal(0, (long)p[i] % 8); // every value starts on an 8-byte slot
        Assert.Equal(16, (long)p[5] - (long)p[4]);                            // a 12-byte struct takes two slots
    }

    [Fact]
    public void TooManyArgumentsAreRefused()
    {
        var args = new KernelArguments();
        for (int i = 0; i < KernelArguments.MaxArguments; i++) args.Add(i);
        bool refused = false;
        try
        {
            args.Add(1);
        }
        catch (InvalidOperationException)
        {
            refused = true;
        }
        Assert.True(refused);
        Assert.Equal(KernelArguments.MaxArguments, args.Count);
    }

    [Fact]
    public void CpuTensorIsNotAKernelArgument()
    {
        using var t = Tensor.Zeros(Device.Cpu, 4);
        var args = new KernelArguments();
        bool refused = false;
        try
        {
            args.Add(t);
        }
        catch (ArgumentException e)
        {
            refused = e.Message.Contains("must be a CUDA tensor", StringComparison.Ordinal);
        }
        Assert.True(refused);
    }

    [Theory]
    [InlineData(0, 256, 1)]
    [InlineData(1, 256, 1)]
    [InlineData(256, 256, 1)]
    [InlineData(257, 256, 2)]
    [InlineData(1_000_000, 128, 7813)]
    public void CoverRoundsUp(long count, uint threads, uint blocks) =>
        Assert.Equal(new Dim3(blocks), Dim3.Cover(count, threads));

    [Fact]
    public void CoverRefusesGridsBeyondTheLimit() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => Dim3.Cover(1L << 40, 32));

    [Fact]
    public void LogTextStopsAtTheFirstNul()
    {
        var buffer = new byte[64];
        Encoding.UTF8.GetBytes("ptxas fatal : syntax error\n").CopyTo(buffer, 0);
        buffer[40] = (byte)'x';
        Assert.Equal("ptxas fatal : syntax error", CudaModule.LogText(buffer));
        Assert.Equal("", CudaModule.LogText(new byte[8]));
    }

    [Fact]
    public void MissingEmbeddedModuleIsNamedWithTheEmbeddedOnes()
    {
        var e = Assert.Throws<ArgumentException>(() => CudaModule.EmbeddedPtx("no_such_module"));
        Assert.Contains("no PTX module 'no_such_module'", e.Message);
        Assert.Contains("embedded: ", e.Message);
    }
}

/// <summary>Tests that need a GPU: device properties, memory, copies, events, PTX loading and launches.</summary>
public unsafe class CudaDeviceTests
{
    // y[i] = a * x[i] for i < n; written by hand for PTX ISA 6.0 so any driver for CUDA 9 or later JIT-compiles it.
    internal const string ScalePtx = """
        .version 6.0
        .target sm_50
        .address_size 64

        .visible .entry grcn_test_scale(
            .param .u64 param_y,
            .param .u64 param_x,
            .param .f32 param_a,
            .param .u32 param_n
        )
        {
            .reg .pred %p<2>;
            .reg .b32 %r<6>;
            .reg .f32 %f<4>;
            .reg .b64 %rd<8>;

            ld.param.u64 %rd1, [param_y];
            ld.param.u64 %rd2, [param_x];
            ld.param.f32 %f1, [param_a];
            ld.param.u32 %r1, [param_n];
            mov.u32 %r2, %ctaid.x;
            mov.u32 %r3, %ntid.x;
            mov.u32 %r4, %tid.x;
            mad.lo.s32 %r5, %r2, %r3, %r4;
            setp.ge.u32 %p1, %r5, %r1;
            @%p1 bra DONE;
            cvta.to.global.u64 %rd3, %rd1;
            cvta.to.global.u64 %rd4, %rd2;
            mul.wide.u32 %rd5, %r5, 4;
            add.s64 %rd6, %rd4, %rd5;
            ld.global.f32 %f2, [%rd6];
            mul.rn.f32 %f3, %f2, %f1;
            add.s64 %rd7, %rd3, %rd5;
            st.global.f32 [%rd7], %f3;
        DONE:
            ret;
        }
        """;

    internal const string BrokenPtx = """
        .version 6.0
        .target sm_50
        .address_size 64

        .visible .entry grcn_test_broken()
        {
            this is not an instruction;
            ret;
        }
        """;

    private static CudaDevice Gpu => Device.Cuda(0);

    [CudaFact]
    public void PropertiesDescribeTheGpu()
    {
        var d = Gpu;
        Assert.Same(d, Device.Cuda(0));
        Assert.Same(d, Device.Parse("cuda"));
        Assert.Equal("cuda:0", d.Name);
        Assert.Equal(DeviceKind.Cuda, d.Kind);
        Assert.False(string.IsNullOrWhiteSpace(d.ModelName));
        Assert.True(d.ComputeCapability.Major >= 5, $"compute capability {d.ComputeCapability}");
        Assert.True(d.MultiprocessorCount > 0);
        Assert.True(d.TotalMemory > 1L << 30, $"{d.TotalMemory} bytes");
        Assert.True(d.DriverVersion >= new Version(11, 0), $"driver {d.DriverVersion}");
        Assert.Contains(d.ModelName, d.Description);
        Assert.Contains($"compute capability {d.ComputeCapability}", d.Description);
        Assert.Contains($"{d.MultiprocessorCount} SMs", d.Description);
    }

    [CudaFact]
    public void OrdinalBeyondTheDeviceCountIsRefused()
    {
        int count = CudaDriver.DeviceCount();
        var e = Assert.Throws<PlatformNotSupportedException>(() => Device.Cuda(count));
        Assert.Equal($"CUDA device {count} requested but {count} present", e.Message);
    }

    [CudaFact]
    public void RoundTripsThroughDeviceMemory()
    {
        var rng = new Random(4);
        foreach (int n in new[] { 0, 1, 3, 1000, 1 << 20 })
        {
            var data = TestData.Normal(rng, n);
            using var t = Tensor.FromSpan<float>(Gpu, data, n);
            Assert.Equal(data, t.ToArray<float>());
            using var copy = t.Clone();
            Assert.Equal(data, copy.ToArray<float>());
            using var host = t.To(Device.Cpu);
            Assert.Equal(data, host.AsSpan<float>().ToArray());
            using var back = host.To(Gpu);
            Assert.Equal(data, back.ToArray<float>());
        }
        long[] ints = [long.MinValue, -1, 0, 1, long.MaxValue];
        using var ti = Tensor.FromSpan<long>(Gpu, ints, 5);
        Assert.Equal(ints, ti.ToArray<long>());
    }

    [CudaFact]
    public void FillWritesTheExactBitsAndClearWritesZeros()
    {
        using var t = Tensor.Empty(Gpu, DataType.Float32, 1001);
        foreach (float v in new[] { 1.5f, -0f, float.NegativeInfinity, BitConverter.UInt32BitsToSingle(0x7FC0_1234) })
        {
            t.Fill(v);
            Assert.All(t.ToArray<float>(), x => Assert.Equal(BitConverter.SingleToUInt32Bits(v), BitConverter.SingleToUInt32Bits(x)));
        }
        t.Clear();
        Assert.All(t.ToArray<float>(), x => Assert.Equal(0u, BitConverter.SingleToUInt32Bits(x)));
        using var z = Tensor.Zeros(Gpu, DataType.Int64, 7, 3);
        Assert.All(z.ToArray<long>(), x => Assert.Equal(0L, x));
    }

    [CudaFact]
    public void AllocatorReusesFreedBlocks()
    {
        var d = Gpu;
        d.Synchronize();
        d.TrimCache();
        Assert.Equal(0, d.CachedBytes);
        nint first;
        using (var a = Tensor.Empty(d, DataType.Float32, 100_000)) first = a.Buffer.Pointer;
        long cached = d.CachedBytes;
        Assert.True(cached >= 400_000, $"{cached} bytes cached");
        using (var b = Tensor.Empty(d, DataType.Float32, 99_000))
        {
            Assert.Equal(first, b.Buffer.Pointer);
            Assert.Equal(cached - CudaMemoryPool.SizeClass(400_000), d.CachedBytes);
        }
        d.TrimCache();
        Assert.Equal(0, d.CachedBytes);
    }

    [CudaFact]
    public void InvalidCallsNameTheDriverError()
    {
        var e = Assert.Throws<CudaException>(() =>
        {
            int dev;
            CudaDriver.Check(CudaDriver.cuDeviceGet(&dev, 9999), nameof(CudaDriver.cuDeviceGet));
        });
        Assert.Equal("cuDeviceGet failed: CUDA_ERROR_INVALID_DEVICE (invalid device ordinal)", e.Message);
        var big = Assert.Throws<CudaException>(() => Gpu.Pool.Rent(1L << 50, out _));
        Assert.Equal(CUresult.CUDA_ERROR_OUT_OF_MEMORY, big.Result);
        Assert.StartsWith("cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)", big.Message);
    }

    [CudaFact]
    public void EventsTimeQueuedWork()
    {
        using var t = Tensor.Empty(Gpu, DataType.Float32, 1 << 24);
        double ms = Gpu.MeasureMilliseconds(() =>
        {
            for (int i = 0; i < 10; i++) t.Fill(i);
        });
        Assert.True(ms > 0 && ms < 10_000, $"{ms} ms");
        Assert.True(Gpu.MeasureMilliseconds(() => { }) >= 0);
    }

    [CudaFact]
    public void OpsWithoutCudaKernelsSaySo()
    {
        using var a = Tensor.Zeros(Gpu, 2, 3);
        using var b = Tensor.Zeros(Gpu, 3, 4);
        var e = Assert.Throws<NotSupportedException>(() => Gemm.MatMul(a, b));
        Assert.Equal("gemm is not implemented on device cuda:0", e.Message);
    }

    [CudaFact]
    public void HandWrittenPtxLoadsAndRuns()
    {
        using var module = CudaModule.LoadPtx(Gpu, "test_scale", Encoding.ASCII.GetBytes(ScalePtx));
        var f = module.Function("grcn_test_scale");
        Assert.Equal(f, module.Function("grcn_test_scale"));
        const int n = 1000;
        var xs = TestData.Normal(new Random(5), n);
        using var x = Tensor.FromSpan<float>(Gpu, xs, n);
        using var y = Tensor.Zeros(Gpu, n);
        var args = new KernelArguments();
        args.Add(y);
        args.Add(x);
        args.Add(-2.5f);
        args.Add((uint)n);
        f.Launch(Dim3.Cover(n, 128), new Dim3(128), 0, ref args);
        var got = y.ToArray<float>();
        for (int i = 0; i < n; i++) Assert.Equal(-2.5f * xs[i], got[i]);

        var missing = Assert.Throws<CudaException>(() => module.Function("no_such_kernel"));
        Assert.Equal(CUresult.CUDA_ERROR_NOT_FOUND, missing.Result);
        Assert.Contains("kernel no_such_kernel in module test_scale", missing.Message);

        var tooBig = new KernelArguments();
        tooBig.Add(y);
        tooBig.Add(x);
        tooBig.Add(1f);
        tooBig.Add((uint)n);
        CudaException? bad = null;
        try
        {
            f.Launch(new Dim3(1), new Dim3(4096), 0, ref tooBig); // more threads per block than any GPU has
        }
        catch (CudaException caught)
        {
            bad = caught;
        }
        Assert.NotNull(bad);
        Assert.StartsWith("cuLaunchKernel failed: CUDA_ERROR_INVALID_VALUE", bad.Message);
        Assert.Contains("kernel test_scale.grcn_test_scale, grid (1, 1, 1), block (4096, 1, 1)", bad.Message);
        Gpu.Synchronize();
    }

    [CudaFact]
    public void BadPtxReportsTheJitLog()
    {
        var e = Assert.Throws<CudaException>(() => CudaModule.LoadPtx(Gpu, "broken", Encoding.ASCII.GetBytes(BrokenPtx)));
        Assert.Equal(CUresult.CUDA_ERROR_INVALID_PTX, e.Result);
        Assert.StartsWith("cuModuleLoadDataEx failed: CUDA_ERROR_INVALID_PTX", e.Message);
        Assert.Contains("module broken on cuda:0: ", e.Message);
        Assert.DoesNotContain("the driver wrote no error log", e.Message);
    }

    [CudaFact]
    public void MissingEmbeddedModuleIsAnArgumentError()
    {
        var backend = (CudaBackend)Gpu.Backend;
        Assert.Throws<ArgumentException>(() => backend.Module("no_such_module"));
    }
}
