// Every ILGPU kernel of GRcn.Kernels (each method marked [Kernel]) compiles to PTX for SM 7.0
// (Volta, the oldest GPU the library supports) and for the newest architecture ILGPU 1.5.3
// knows, with the options the devices use, and without any GPU or driver: a kernel that uses
// something PTX cannot express (a throw, a capturing lambda, a Span) fails here, in CI.
using System.Reflection;
using GRcn.Kernels.Gpu;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace GRcn.Kernels.GpuTests;

public class PtxCompileTests
{
    public static IEnumerable<MethodInfo> KernelMethods() =>
        typeof(KernelAttribute).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            .Where(m => m.GetCustomAttribute<KernelAttribute>() is not null)
            .OrderBy(m => m.DeclaringType!.Name + "." + m.Name, StringComparer.Ordinal);

    public static TheoryData<string> KernelNames()
    {
        var data = new TheoryData<string>();
        foreach (var m in KernelMethods()) data.Add(m.DeclaringType!.Name + "." + m.Name);
        return data;
    }

    private static CudaArchitecture Newest() =>
        typeof(CudaArchitecture).GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(f => f.FieldType == typeof(CudaArchitecture))
            .Select(f => (CudaArchitecture)f.GetValue(null)!)
            .Max();

    private static CudaInstructionSet NewestIsa() =>
        typeof(CudaInstructionSet).GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(f => f.FieldType == typeof(CudaInstructionSet))
            .Select(f => (CudaInstructionSet)f.GetValue(null)!)
            .Max();

    private static readonly Lazy<Context> s_context = new(() => Context.Create(b => GpuDevice.KernelOptions(b.Cuda())));

    [Fact]
    public void EveryKernelFileHasKernels()
    {
        var methods = KernelMethods().ToList();
        Assert.NotEmpty(methods);
        // Entry points are implicitly grouped (first parameter an index) or explicitly grouped.
        foreach (var m in methods) Assert.True(m.ReturnType == typeof(void), $"{m.Name} must return void");
    }

    /// <summary>
    /// The PTX of one kernel method for an architecture and PTX ISA, compiled with the devices'
    /// options and no device: implicitly grouped when its first parameter is an index, else
    /// explicitly grouped (as the launchers load it).
    /// </summary>
    public static string Ptx(MethodInfo method, CudaArchitecture arch, CudaInstructionSet isa)
    {
        bool implicitlyGrouped = method.GetParameters() is [var first, ..] &&
            (first.ParameterType == typeof(Index1D) || first.ParameterType == typeof(Index2D) || first.ParameterType == typeof(Index3D) ||
             first.ParameterType == typeof(LongIndex1D));
        var entry = implicitlyGrouped
            ? EntryPointDescription.FromImplicitlyGroupedKernel(method)
            : EntryPointDescription.FromExplicitlyGroupedKernel(method);
        using var backend = new PTXBackend(s_context.Value, arch, isa, null!);
        return ((PTXCompiledKernel)backend.Compile(entry, new KernelSpecialization(null, null))).PTXAssembly;
    }

    [Theory]
    [MemberData(nameof(KernelNames))]
    public void CompilesToPtx(string name)
    {
        var method = KernelMethods().Single(m => m.DeclaringType!.Name + "." + m.Name == name);
        foreach (var arch in new[] { CudaArchitecture.SM_70, Newest() })
        {
            string ptx = Ptx(method, arch, NewestIsa());
            Assert.Contains(".entry ", ptx);
            var target = ptx.Split('\n').Single(l => l.StartsWith(".target ", StringComparison.Ordinal)).Trim();
            int sm = int.Parse(target["target sm_".Length..].TrimStart('_', 'm', 's', ' ').Split(',')[0]);
            Assert.True(sm <= arch.Major * 10 + arch.Minor, $"{name}: {target} for {arch}");
        }
    }
}
