// Runs golden fixtures through the public ops on a device and compares every expected tensor:
// floats elementwise with |got − want| ≤ atol + rtol·|want| (NaN must meet NaN, ±inf must be
// equal), integers (NMS keep lists) exactly, order included. A fixture that cannot be read,
// names an unknown op, lacks a tensor or has a shape mismatch fails; nothing is skipped.
namespace GRcn.Kernels.Golden;

/// <summary>Outcome for one expected tensor of a fixture.</summary>
/// <param name="Name">Tensor name (<c>output.y</c>, <c>grad_input.x</c>).</param>
/// <param name="Passed">Whether every element is within tolerance (exact for integers).</param>
/// <param name="MaxAbsError">Largest |got − want|.</param>
/// <param name="WorstRatio">Largest |got − want| / (atol + rtol·|want|); ≤ 1 passes.</param>
/// <param name="Message">Why it failed, or null.</param>
public sealed record GoldenTensorResult(string Name, bool Passed, double MaxAbsError, double WorstRatio, string? Message);

/// <summary>Outcome for one fixture.</summary>
/// <param name="Path">Fixture file.</param>
/// <param name="Op">Op named by the fixture (or <c>?</c> when unreadable).</param>
/// <param name="Passed">Whether every tensor passed and nothing went wrong.</param>
/// <param name="Tensors">Per-tensor outcomes.</param>
/// <param name="Error">Why the fixture failed as a whole (unreadable, unknown op, exception), or null.</param>
public sealed record GoldenResult(string Path, string Op, bool Passed, IReadOnlyList<GoldenTensorResult> Tensors, string? Error)
{
    /// <summary>Fixture name (file name without extension).</summary>
    public string Name => System.IO.Path.GetFileNameWithoutExtension(Path);

    /// <summary>Largest absolute error over all tensors.</summary>
    public double MaxAbsError => Tensors.Count == 0 ? double.NaN : Tensors.Max(t => t.MaxAbsError);

    /// <summary>Worst error/tolerance ratio over all tensors.</summary>
    public double WorstRatio => Tensors.Count == 0 ? double.NaN : Tensors.Max(t => t.WorstRatio);
}

/// <summary>Checks golden fixtures against the kernels of a device.</summary>
public static class GoldenChecker
{
    /// <summary>Tolerance used for a float tensor the fixture gives none for: [rtol, atol] = [1e-4, 1e-5].</summary>
    public static readonly (double Rtol, double Atol) DefaultTolerance = (1e-4, 1e-5);

    /// <summary>The ops this checker knows.</summary>
    public static IReadOnlyList<string> KnownOps { get; } =
        ["conv2d", "max_pool2d", "roi_pool", "roi_align", "context_attention", "nms", "batched_nms", "group_norm"];

    /// <summary>Every <c>*.safetensors</c> file under the given folders (or the files themselves), sorted.</summary>
    /// <exception cref="DirectoryNotFoundException">A folder does not exist.</exception>
    public static IReadOnlyList<string> FindFixtures(IEnumerable<string> paths)
    {
        var files = new List<string>();
        foreach (var p in paths)
        {
            if (File.Exists(p)) files.Add(p);
            else if (Directory.Exists(p))
                files.AddRange(Directory.EnumerateFiles(p, "*.safetensors", SearchOption.AllDirectories).Order(StringComparer.Ordinal));
            else throw new DirectoryNotFoundException($"fixture folder '{p}' does not exist");
        }
        return files;
    }

    /// <summary>Runs one fixture on <paramref name="device"/>. Never throws for a bad fixture: it fails instead.</summary>
    public static GoldenResult Check(string path, Device device)
    {
        GoldenFixture fixture;
        try
        {
            fixture = GoldenFixture.Load(path);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or NotSupportedException)
        {
            return new GoldenResult(path, "?", false, [], $"cannot read fixture: {e.Message}");
        }

        var produced = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            if (!KnownOps.Contains(fixture.Op))
                return new GoldenResult(path, fixture.Op, false, [], $"unknown op '{fixture.Op}' (known: {string.Join(", ", KnownOps)})");
            Run(fixture, device, produced);
            var expected = fixture.Names("output.").Concat(fixture.Names("grad_input.")).ToList();
            if (expected.Count == 0)
                return new GoldenResult(path, fixture.Op, false, [], "fixture has no output.* or grad_input.* tensor to compare");
            var results = expected.Select(name => Compare(fixture, name, produced.GetValueOrDefault(name))).ToList();
            return new GoldenResult(path, fixture.Op, results.All(r => r.Passed), results, null);
        }
        catch (Exception e) when (e is ArgumentException or InvalidDataException or InvalidOperationException or NotSupportedException or IOException or KeyNotFoundException)
        {
            return new GoldenResult(path, fixture.Op, false, [], $"{e.GetType().Name}: {e.Message}");
        }
        finally
        {
            foreach (var t in produced.Values) t.Dispose();
        }
    }

    private static void Run(GoldenFixture f, Device d, Dictionary<string, Tensor> produced)
    {
        var inputs = new List<Tensor>();
        Tensor In(string name)
        {
            var t = f.Load("input." + name, d);
            inputs.Add(t);
            return t;
        }
        Tensor? Grad(string name)
        {
            var t = f.LoadOptional("grad_output." + name, d);
            if (t is not null) inputs.Add(t);
            return t;
        }
        try
        {
            switch (f.Op)
            {
                case "conv2d": RunConv2d(f, In, Grad, produced); break;
                case "max_pool2d": RunMaxPool2d(f, In, Grad, produced); break;
                case "roi_pool": RunRoiPool(f, In, Grad, produced); break;
                case "roi_align": RunRoiAlign(f, In, Grad, produced); break;
                case "context_attention": RunContextAttention(f, In, Grad, produced); break;
                case "group_norm": RunGroupNorm(f, In, Grad, produced); break;
                case "nms":
                    produced["output.keep"] = Nms.Forward(In("boxes"), In("scores"), f.Double("iou_threshold"));
                    break;
                case "batched_nms":
                    produced["output.keep"] = BatchedNms.Forward(In("boxes"), In("scores"), In("idxs"), f.Double("iou_threshold"));
                    break;
            }
        }
        finally
        {
            foreach (var t in inputs) t.Dispose();
        }
    }

    private static void RunConv2d(GoldenFixture f, Func<string, Tensor> input, Func<string, Tensor?> grad, Dictionary<string, Tensor> produced)
    {
        var x = input("x");
        var w = input("weight");
        var b = f.File.Contains("input.bias") ? input("bias") : null;
        var (sh, sw) = f.Pair("stride");
        var (ph, pw) = f.Pair("padding");
        var (dh, dw) = f.HasAttr("dilation") ? f.Pair("dilation") : (1, 1);
        if (f.HasAttr("groups") && f.Int("groups") != 1)
            throw new NotSupportedException($"conv2d with groups = {f.Int("groups")} is not supported (groups must be 1)");
        var options = new Conv2dOptions(sh, sw, ph, pw, dh, dw);
        produced["output.y"] = Conv2d.Forward(x, w, b, options);
        var gy = grad("y");
        if (gy is null) return;
        var g = Conv2d.Backward(gy, x, w, b is not null, options);
        produced["grad_input.x"] = g.Input!;
        produced["grad_input.weight"] = g.Weight;
        if (g.Bias is not null) produced["grad_input.bias"] = g.Bias;
    }

    private static void RunMaxPool2d(GoldenFixture f, Func<string, Tensor> input, Func<string, Tensor?> grad, Dictionary<string, Tensor> produced)
    {
        var x = input("x");
        var (kh, kw) = f.Pair("kernel");
        var (sh, sw) = f.HasAttr("stride") ? f.Pair("stride") : (kh, kw);
        var (ph, pw) = f.HasAttr("padding") ? f.Pair("padding") : (0, 0);
        bool ceil = f.HasAttr("ceil_mode") && f.Bool("ceil_mode");
        if (f.HasAttr("dilation") && f.Pair("dilation") != (1, 1))
            throw new NotSupportedException($"max_pool2d with dilation {f.Pair("dilation")} is not supported (dilation must be 1)");
        var options = new MaxPool2dOptions(kh, kw, sh, sw, ph, pw, ceil);
        var r = MaxPool2d.Forward(x, options);
        produced["output.y"] = r.Output;
        produced["indices"] = r.Indices; // kept for disposal; not compared
        var gy = grad("y");
        if (gy is not null) produced["grad_input.x"] = MaxPool2d.Backward(gy, r.Indices, x.Dim(2), x.Dim(3), options);
    }

    private static void RunRoiPool(GoldenFixture f, Func<string, Tensor> input, Func<string, Tensor?> grad, Dictionary<string, Tensor> produced)
    {
        var x = input("x");
        var rois = input("rois");
        var (oh, ow) = f.Pair("output_size");
        var options = new RoiPoolOptions(oh, ow, f.Double("spatial_scale"));
        var r = RoiPool.Forward(x, rois, options);
        produced["output.y"] = r.Output;
        produced["argmax"] = r.Argmax; // kept for disposal; not compared
        var gy = grad("y");
        if (gy is not null) produced["grad_input.x"] = RoiPool.Backward(gy, rois, r.Argmax, x.Shape, options);
    }

    private static void RunRoiAlign(GoldenFixture f, Func<string, Tensor> input, Func<string, Tensor?> grad, Dictionary<string, Tensor> produced)
    {
        var x = input("x");
        var rois = input("rois");
        var (oh, ow) = f.Pair("output_size");
        var options = new RoiAlignOptions(oh, ow, f.Double("spatial_scale"),
            f.HasAttr("sampling_ratio") ? f.Int("sampling_ratio") : -1,
            f.HasAttr("aligned") && f.Bool("aligned"));
        produced["output.y"] = RoiAlign.Forward(x, rois, options);
        var gy = grad("y");
        if (gy is not null) produced["grad_input.x"] = RoiAlign.Backward(gy, rois, x.Shape, options);
    }

    private static void RunGroupNorm(GoldenFixture f, Func<string, Tensor> input, Func<string, Tensor?> grad, Dictionary<string, Tensor> produced)
    {
        var x = input("x");
        var w = f.File.Contains("input.weight") ? input("weight") : null;
        var b = f.File.Contains("input.bias") ? input("bias") : null;
        int groups = f.Int("groups");
        var r = GroupNorm.Forward(x, groups, w, b, (float)f.Double("eps"));
        produced["output.y"] = r.Output;
        produced["mean"] = r.Mean; // kept for disposal; not compared
        produced["rstd"] = r.Rstd;
        var gy = grad("y");
        if (gy is null) return;
        var gx = Tensor.Empty(x.Device, DataType.Float32, x.Shape);
        produced["grad_input.x"] = gx;
        Tensor? gw = null, gb = null;
        if (w is not null) produced["grad_input.weight"] = gw = Tensor.Empty(x.Device, DataType.Float32, w.Shape);
        if (b is not null) produced["grad_input.bias"] = gb = Tensor.Empty(x.Device, DataType.Float32, b.Shape);
        GroupNorm.Backward(gy, x, r.Mean, r.Rstd, groups, w, gx, gw, gb);
    }

    private static void RunContextAttention(GoldenFixture f, Func<string, Tensor> input, Func<string, Tensor?> grad, Dictionary<string, Tensor> produced)
    {
        var p = input("p");
        var g = input("g");
        var bi = input("batch_index");
        var wq = input("w_q");
        var wk = input("w_k");
        int heads = f.Int("heads");
        produced["output.y"] = ContextAttention.Forward(p, g, bi, wq, wk, heads);
        var gy = grad("y");
        if (gy is null) return;
        var grads = ContextAttention.Backward(gy, p, g, bi, wq, wk, heads);
        produced["grad_input.p"] = grads.P;
        produced["grad_input.g"] = grads.G;
        produced["grad_input.w_q"] = grads.Wq;
        produced["grad_input.w_k"] = grads.Wk;
    }

    private static GoldenTensorResult Compare(GoldenFixture f, string name, Tensor? got)
    {
        if (got is null)
            return new(name, false, double.NaN, double.NaN, $"the op produced no tensor '{name}'");
        var info = f.File.Info(name);
        if (!got.Shape.SequenceEqual(info.Shape))
            return new(name, false, double.NaN, double.NaN, $"shape mismatch: got {got.ShapeString}, want {info.ShapeString}");
        if (info.DType == "I64")
        {
            if (got.DataType != DataType.Int64)
                return new(name, false, double.NaN, double.NaN, $"dtype mismatch: got {got.DataType}, want I64");
            using var want = f.File.Load(name, Device.Cpu);
            var g = got.ToArray<long>();
            var w = want.AsSpan<long>();
            double maxErr = 0;
            int first = -1;
            for (int i = 0; i < w.Length; i++)
            {
                if (g[i] != w[i])
                {
                    maxErr = Math.Max(maxErr, Math.Abs((double)g[i] - w[i]));
                    if (first < 0) first = i;
                }
            }
            return first < 0
                ? new(name, true, 0, 0, null)
                : new(name, false, maxErr, double.PositiveInfinity, $"integers differ first at [{first}]: got {g[first]}, want {w[first]}");
        }
        if (info.DType != "F32" || got.DataType != DataType.Float32)
            return new(name, false, double.NaN, double.NaN, $"dtype mismatch: got {got.DataType}, want {info.DType}");
        var (rtol, atol) = f.Tolerances.TryGetValue(name, out var t) ? t : DefaultTolerance;
        using var wantF = f.File.Load(name, Device.Cpu);
        return CompareFloats(name, got.ToArray<float>(), wantF.AsSpan<float>(), rtol, atol);
    }

    /// <summary>Elementwise comparison with |got − want| ≤ atol + rtol·|want|.</summary>
    internal static GoldenTensorResult CompareFloats(string name, ReadOnlySpan<float> got, ReadOnlySpan<float> want, double rtol, double atol)
    {
        double maxErr = 0, worst = 0;
        int worstAt = -1;
        for (int i = 0; i < want.Length; i++)
        {
            double g = got[i], w = want[i];
            double err, ratio;
            if (double.IsNaN(w) || double.IsNaN(g) || double.IsInfinity(w) || double.IsInfinity(g))
            {
                bool same = (double.IsNaN(w) && double.IsNaN(g)) || g == w;
                err = same ? 0 : double.PositiveInfinity;
                ratio = same ? 0 : double.PositiveInfinity;
            }
            else
            {
                err = Math.Abs(g - w);
                double bound = atol + rtol * Math.Abs(w);
                ratio = bound > 0 ? err / bound : (err == 0 ? 0 : double.PositiveInfinity);
            }
            if (err > maxErr) maxErr = err;
            if (ratio > worst || worstAt < 0)
            {
                worst = ratio;
                worstAt = i;
            }
        }
        bool passed = worst <= 1.0;
        string? message = passed ? null : $"worst at [{worstAt}]: got {got[worstAt]:R}, want {want[worstAt]:R} (rtol {rtol:G3}, atol {atol:G3})";
        return new(name, passed, maxErr, worst, message);
    }
}
