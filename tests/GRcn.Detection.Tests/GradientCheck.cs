// Finite-difference gradient checks: the loss is a fixed random projection Σ y ⊙ R of an
// op's output (or a real loss), evaluated in float32 by the engine; central differences on
// a sample of elements of each input are compared with the analytic gradient.
using GRcn.Detection.Autograd;
using GRcn.Kernels;

namespace GRcn.Detection.Tests;

internal static class GradientCheck
{
    /// <summary>Relative tolerance of a finite-difference check in float32.</summary>
    public const double RelativeTolerance = 2e-2;

    /// <summary>Absolute slack for near-zero gradients.</summary>
    public const double AbsoluteTolerance = 2e-3;

    /// <summary>Σ y ⊙ R for a fixed R drawn from <paramref name="seed"/>.</summary>
    public static Variable Project(Graph g, Variable y, int seed = 7)
    {
        var rng = new Random(seed);
        var r = new float[y.Value.Length];
        for (int i = 0; i < r.Length; i++) r[i] = (float)(rng.NextDouble() * 2 - 1);
        return g.HostLoss(y, (v, grad) =>
        {
            double s = 0;
            for (int i = 0; i < v.Length; i++)
            {
                s += (double)v[i] * r[i];
                grad[i] = r[i];
            }
            return s;
        });
    }

    /// <summary>
    /// Checks dLoss/dt for each tensor t in <paramref name="wrt"/>: <paramref name="build"/> makes the
    /// scalar loss in a graph whose variables read those tensors (it is called once for the analytic
    /// pass and twice per probed element). <paramref name="gradients"/> returns the analytic gradient of each.
    /// </summary>
    public static void Check(Func<Graph, (Variable Loss, Variable[] Wrt)> build, int probes = 6, float eps = 1e-2f, int seed = 1, ulong graphSeed = 3)
    {
        float[][] analytic;
        Tensor[] values;
        using (var g = new Graph(Device.Cpu, training: true, recordGradients: true, graphSeed))
        {
            var (loss, wrt) = build(g);
            g.Backward(loss);
            analytic = wrt.Select(w => w.Grad?.ToArray<float>() ?? new float[w.Value.Length]).ToArray();
            values = wrt.Select(w => w.Value).ToArray();
        }
        // the graph is gone; the build function must make wrt tensors that outlive it (parameters or captured tensors)
        var rng = new Random(seed);
        for (int t = 0; t < values.Length; t++)
        {
            var host = values[t].ToArray<float>();
            int n = host.Length;
            for (int probe = 0; probe < Math.Min(probes, n); probe++)
            {
                int i = probe == 0 ? 0 : rng.Next(n);
                float orig = host[i];
                host[i] = orig + eps;
                values[t].CopyFrom<float>(host);
                double plus = Evaluate(build, graphSeed);
                host[i] = orig - eps;
                values[t].CopyFrom<float>(host);
                double minus = Evaluate(build, graphSeed);
                host[i] = orig;
                values[t].CopyFrom<float>(host);
                double numeric = (plus - minus) / (2 * eps);
                double a = analytic[t][i];
                double tol = RelativeTolerance * Math.Max(Math.Abs(numeric), Math.Abs(a)) + AbsoluteTolerance;
                Assert.True(Math.Abs(numeric - a) <= tol,
                    $"input {t} element {i}: analytic {a:G6}, finite difference {numeric:G6} (tolerance {tol:G3})");
            }
        }
    }

    private static double Evaluate(Func<Graph, (Variable Loss, Variable[] Wrt)> build, ulong graphSeed)
    {
        using var g = new Graph(Device.Cpu, training: true, recordGradients: false, graphSeed);
        return build(g).Loss.Value.ToArray<float>()[0];
    }

    /// <summary>A CPU tensor of N(0, scale²) values.</summary>
    public static Tensor Random(int seed, float scale, params int[] shape)
    {
        var rng = new Random(seed);
        long n = 1;
        foreach (var d in shape) n *= d;
        var h = new float[n];
        for (long i = 0; i < n; i++) h[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        var t = Tensor.Empty(Device.Cpu, DataType.Float32, shape);
        t.CopyFrom<float>(h);
        return t;
    }
}
