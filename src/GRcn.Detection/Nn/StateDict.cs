// State dicts: a module's parameters and buffers by dotted torchvision name ("layer1.0.conv1.weight")
// loaded from a safetensors file or a name → tensor map, and saved back to one. Loading is
// all-or-nothing: every matched entry's dtype and shape is checked, and (when strict) missing and
// unexpected names are reported, before any parameter changes. Source values may be F32, F64,
// F16 or BF16 (converted to float32 on the host); torchvision checkpoints are F32. Keys ending in
// "num_batches_tracked" that the module does not have are ignored, as torchvision's
// FrozenBatchNorm2d does. After loading, StateVersion is bumped so folded batch norms refresh.
using System.Runtime.InteropServices;
using GRcn.Detection.Autograd;
using GRcn.Kernels;
using GRcn.Kernels.Serialization;

namespace GRcn.Detection.Nn;

/// <summary>What a state-dict load did, by module-relative name (the source prefix removed).</summary>
/// <param name="Loaded">Parameters whose values were replaced.</param>
/// <param name="Missing">Parameters of the module with no entry in the source (left unchanged).</param>
/// <param name="Unexpected">Source entries (under the prefix) that name no parameter of the module.</param>
/// <param name="Ignored">Source entries skipped on purpose (the ignore filter, num_batches_tracked).</param>
public sealed record StateDictLoadResult(
    IReadOnlyList<string> Loaded, IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected, IReadOnlyList<string> Ignored)
{
    /// <inheritdoc/>
    public override string ToString() =>
        $"loaded {Loaded.Count}, missing {Missing.Count}{List(Missing)}, unexpected {Unexpected.Count}{List(Unexpected)}, ignored {Ignored.Count}";

    internal static string List(IReadOnlyList<string> names, int max = 8) =>
        names.Count == 0 ? "" : $" [{string.Join(", ", names.Take(max))}{(names.Count > max ? $", ... ({names.Count - max} more)" : "")}]";
}

/// <summary>A state dict does not fit a module: missing or unexpected names (strict), a shape or dtype mismatch.</summary>
public sealed class StateDictException : Exception
{
    /// <summary>Creates the exception.</summary>
    public StateDictException(string message, string? key = null) : base(message) => Key = key;

    /// <summary>The offending source key, when one entry is at fault.</summary>
    public string? Key { get; }
}

/// <summary>Loads and saves a <see cref="Module"/>'s parameters by name.</summary>
public static class StateDict
{
    /// <summary>
    /// Loads <paramref name="module"/>'s parameters from a safetensors file: parameter <c>name</c> is read
    /// from entry <c>prefix + name</c>; entries not starting with <paramref name="prefix"/> are not considered.
    /// </summary>
    /// <param name="module">The module to fill.</param>
    /// <param name="file">The source.</param>
    /// <param name="prefix">Prefix of the module's entries in the source (e.g. <c>"backbone.body."</c>).</param>
    /// <param name="strict">Throw when a parameter is missing or an entry is unexpected (nothing is loaded then).</param>
    /// <param name="ignore">Module-relative entry names to skip (reported as ignored).</param>
    /// <exception cref="StateDictException">A shape or dtype mismatch, or (strict) missing/unexpected names; the message names the source and the keys.</exception>
    public static StateDictLoadResult Load(Module module, SafeTensorsFile file, string prefix = "", bool strict = true, Func<string, bool>? ignore = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(file);
        var entries = file.Tensors.Select(info => new Entry(info.Name, info.Shape, info.DType, p => CopyFromFile(file, info, p)));
        return LoadEntries(module, entries, file.Source, prefix, strict, ignore);
    }

    /// <summary>
    /// Loads <paramref name="module"/>'s parameters from a safetensors file whose entry names are
    /// translated by <paramref name="rename"/> (source key → module parameter name; return the key
    /// unchanged when no rule applies, so it is reported as unexpected under its own name).
    /// Strict: every parameter must be found.
    /// </summary>
    internal static StateDictLoadResult LoadRenamed(Module module, SafeTensorsFile file, Func<string, string> rename, Func<string, bool>? ignore = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(rename);
        var entries = file.Tensors.Select(info => new Entry(rename(info.Name), info.Shape, info.DType, p => CopyFromFile(file, info, p), info.Name));
        return LoadEntries(module, entries, file.Source, "", strict: true, ignore);
    }

    /// <summary>Loads <paramref name="module"/>'s parameters from a name → tensor map (float32 tensors, any device); see the file overload.</summary>
    /// <exception cref="StateDictException">A shape or dtype mismatch, or (strict) missing/unexpected names.</exception>
    public static StateDictLoadResult Load(Module module, IReadOnlyDictionary<string, Tensor> tensors, string prefix = "", bool strict = true, Func<string, bool>? ignore = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(tensors);
        var entries = tensors.Select(kv =>
        {
            ArgumentNullException.ThrowIfNull(kv.Value, $"tensors[{kv.Key}]");
            var t = kv.Value;
            return new Entry(kv.Key, t.Shape.ToArray(), t.DataType == DataType.Float32 ? "F32" : "I64", p => CopyFromTensor(t, p));
        });
        return LoadEntries(module, entries, "state dict", prefix, strict, ignore);
    }

    /// <summary>Reads <paramref name="path"/> and loads it into <paramref name="module"/>; see the file overload.</summary>
    public static StateDictLoadResult Load(Module module, string path, string prefix = "", bool strict = true, Func<string, bool>? ignore = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        return Load(module, SafeTensorsFile.Read(path), prefix, strict, ignore);
    }

    /// <summary>Copies of every parameter and buffer under <c>prefix + name</c> (same device; the caller disposes them), ready for <see cref="SafeTensorsWriter"/>.</summary>
    public static Dictionary<string, Tensor> Save(Module module, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(prefix);
        var dict = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, p) in module.NamedParameters()) dict.Add(prefix + name, p.Value.Clone());
        return dict;
    }

    /// <summary>Writes every parameter and buffer of <paramref name="module"/> to a safetensors file (no copies are made).</summary>
    public static void SaveFile(Module module, string path, string prefix = "", IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(prefix);
        SafeTensorsWriter.Write(path, module.NamedParameters().Select(p => KeyValuePair.Create(prefix + p.Name, p.Parameter.Value)), metadata);
    }

    /// <summary>A source tensor: the name it loads under, and (when renamed) the name the source gives it, for messages.</summary>
    private readonly record struct Entry(string Key, int[] Shape, string DType, Action<Parameter> CopyInto, string? SourceKey = null)
    {
        public string Shown => SourceKey is null || SourceKey == Key ? Key : $"{SourceKey}' (as '{Key})";
    }

    private static StateDictLoadResult LoadEntries(Module module, IEnumerable<Entry> source, string sourceName, string prefix, bool strict, Func<string, bool>? ignore)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        var parameters = module.NamedParameters();
        var byName = new Dictionary<string, Parameter>(StringComparer.Ordinal);
        foreach (var (n, p) in parameters) byName[n] = p;

        var matched = new List<(string Name, Parameter Parameter, Entry Entry)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var unexpected = new List<string>();
        var ignored = new List<string>();
        foreach (var e in source)
        {
            if (!e.Key.StartsWith(prefix, StringComparison.Ordinal)) continue;
            string name = e.Key[prefix.Length..];
            bool known = byName.TryGetValue(name, out var p);
            if (ignore?.Invoke(name) == true || (!known && (name == "num_batches_tracked" || name.EndsWith(".num_batches_tracked", StringComparison.Ordinal))))
            {
                ignored.Add(name);
                continue;
            }
            if (!known)
            {
                unexpected.Add(name);
                continue;
            }
            if (e.DType is not ("F32" or "F64" or "F16" or "BF16"))
                throw new StateDictException($"{sourceName}: '{e.Shown}' has dtype {e.DType}; parameter '{name}' needs a floating-point tensor (F32, F64, F16 or BF16)", e.Key);
            if (!p!.Value.Shape.SequenceEqual(e.Shape))
                throw new StateDictException(
                    $"{sourceName}: '{e.Shown}' has shape {Tensor.FormatShape(e.Shape)}; parameter '{name}' expects {p.Value.ShapeString}", e.SourceKey ?? e.Key);
            seen.Add(name);
            matched.Add((name, p, e));
        }
        var missing = parameters.Select(x => x.Name).Where(n => !seen.Contains(n)).ToList();
        if (strict && (missing.Count > 0 || unexpected.Count > 0))
            throw new StateDictException(
                $"{sourceName}: state dict does not match the module (prefix '{prefix}'): missing {missing.Count}{StateDictLoadResult.List(missing)}, " +
                $"unexpected {unexpected.Count}{StateDictLoadResult.List(unexpected)}; nothing was loaded");
        foreach (var (_, p, e) in matched) e.CopyInto(p);
        StateVersion.Bump();
        return new StateDictLoadResult(matched.Select(m => m.Name).ToList(), missing, unexpected, ignored);
    }

    private static void CopyFromTensor(Tensor t, Parameter p)
    {
        if (t.Device == p.Value.Device) p.Value.CopyFrom(t);
        else p.Load(t.ToArray<float>());
    }

    private static void CopyFromFile(SafeTensorsFile file, SafeTensorInfo info, Parameter p)
    {
        var raw = file.RawBytes(info.Name);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("big-endian hosts are not supported");
        if (info.DType == "F32")
        {
            p.Load(MemoryMarshal.Cast<byte, float>(raw));
            return;
        }
        var values = new float[info.Length];
        switch (info.DType)
        {
            case "F64":
                var d = MemoryMarshal.Cast<byte, double>(raw);
                for (int i = 0; i < values.Length; i++) values[i] = (float)d[i];
                break;
            case "F16":
                var h = MemoryMarshal.Cast<byte, Half>(raw);
                for (int i = 0; i < values.Length; i++) values[i] = (float)h[i];
                break;
            default: // BF16: the upper half of a float32
                var b = MemoryMarshal.Cast<byte, ushort>(raw);
                for (int i = 0; i < values.Length; i++) values[i] = BitConverter.Int32BitsToSingle(b[i] << 16);
                break;
        }
        p.Load(values);
    }
}
