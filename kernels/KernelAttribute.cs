// Marks an ILGPU kernel entry point. Every method so marked is compiled to PTX for SM 7.0 and for
// the newest architecture ILGPU knows in a test that needs no GPU (PtxCompileTests), so a kernel
// that could not run on a real GPU fails CI. A kernel whose first parameter is an Index1D/2D/3D is
// implicitly grouped (launched with LoadAutoGroupedStreamKernel); any other is explicitly grouped
// (launched with LoadStreamKernel and a KernelConfig).
namespace GRcn.Kernels.Gpu;

[AttributeUsage(AttributeTargets.Method, Inherited = false)]
internal sealed class KernelAttribute : Attribute;
