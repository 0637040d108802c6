// The CPU backend: one partial class, one file per op family (Conv2dCpu.cs, RoiAlignCpu.cs, ...),
// each implementing that op's backend interface from GRcn.Kernels.Ops. Arguments arrive
// validated and outputs pre-allocated by the public entry points.
namespace GRcn.Kernels.Cpu;

internal sealed unsafe partial class CpuBackend
{
}
