// safetensors reading and writing: an 8-byte little-endian header length, a JSON header
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {string: string}},
// then the raw little-endian tensor bytes. The reader validates everything it is given before
// it allocates by it: header size, JSON shape, dtypes, shape products, offsets in bounds,
// byte counts that agree with dtype × shape, and a data section fully covered without overlap.
using System.Buffers.Binary;
using System.Text.Json;

namespace GRcn.Kernels.Serialization;

/// <summary>A safetensors file is malformed; the message names the file and the problem.</summary>
public sealed class SafeTensorsFormatException : IOException
{
    /// <summary>Creates the exception.</summary>
    public SafeTensorsFormatException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>Dtype, shape and byte range of one tensor in a safetensors file.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="DType">safetensors dtype name (<c>F32</c>, <c>I64</c>, ...).</param>
/// <param name="Shape">Dimensions, outermost first.</param>
/// <param name="Begin">First byte, relative to the data section.</param>
/// <param name="End">One past the last byte, relative to the data section.</param>
public sealed record SafeTensorInfo(string Name, string DType, int[] Shape, long Begin, long End)
{
    /// <summary>Number of elements.</summary>
    public long Length => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Shape as text, e.g. <c>(2, 3)</c>.</summary>
    public string ShapeString => Tensor.FormatShape(Shape);
}

/// <summary>
/// An open safetensors file held in memory: its metadata, its tensor table and its data.
/// </summary>
/// <remarks>
/// <see cref="Load"/> supports <c>F32</c> and <c>I64</c> tensors (GRcn's tensor types); the
/// table lists tensors of any standard dtype. Every validation failure is a
/// <see cref="SafeTensorsFormatException"/> naming the file (or source) and the problem.
/// </remarks>
public sealed class SafeTensorsFile
{
    /// <summary>Largest header accepted (100 MB, as the reference implementation).</summary>
    public const int MaxHeaderBytes = 100_000_000;

    private static readonly Dictionary<string, int> DTypeSizes = new(StringComparer.Ordinal)
    {
        ["BOOL"] = 1, ["U8"] = 1, ["I8"] = 1, ["F8_E4M3"] = 1, ["F8_E5M2"] = 1,
        ["I16"] = 2, ["U16"] = 2, ["F16"] = 2, ["BF16"] = 2,
        ["I32"] = 4, ["U32"] = 4, ["F32"] = 4,
        ["I64"] = 8, ["U64"] = 8, ["F64"] = 8,
    };

    private readonly byte[] _bytes;
    private readonly int _dataStart;
    private readonly Dictionary<string, SafeTensorInfo> _byName;

    private SafeTensorsFile(string source, byte[] bytes, int dataStart, Dictionary<string, string> metadata, List<SafeTensorInfo> tensors)
    {
        Source = source;
        _bytes = bytes;
        _dataStart = dataStart;
        Metadata = metadata;
        Tensors = tensors;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>Where the file came from (its path, or a caller-given name).</summary>
    public string Source { get; }

    /// <summary>The <c>__metadata__</c> map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Every tensor, in file order.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    /// <summary>Whether a tensor of that name exists.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The table entry of a tensor.</summary>
    /// <exception cref="KeyNotFoundException">No such tensor; the message names the file.</exception>
    public SafeTensorInfo Info(string name) =>
        _byName.TryGetValue(name, out var info) ? info : throw new KeyNotFoundException($"{Source}: no tensor named '{name}'");

    /// <summary>The raw little-endian bytes of a tensor.</summary>
    public ReadOnlySpan<byte> RawBytes(string name)
    {
        var info = Info(name);
        return _bytes.AsSpan(_dataStart + (int)info.Begin, (int)(info.End - info.Begin));
    }

    /// <summary>Loads a tensor onto <paramref name="device"/> (F32 → Float32, I64 → Int64).</summary>
    /// <exception cref="NotSupportedException">The tensor's dtype is not F32 or I64.</exception>
    public Tensor Load(string name, Device device)
    {
        var info = Info(name);
        var type = info.DType switch
        {
            "F32" => DataType.Float32,
            "I64" => DataType.Int64,
            _ => throw new NotSupportedException($"{Source}: tensor '{name}' has dtype {info.DType}; GRcn.Kernels loads F32 and I64"),
        };
        var t = Tensor.Empty(device, type, info.Shape);
        try
        {
            var raw = RawBytes(name);
            if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("big-endian hosts are not supported");
            if (type == DataType.Float32) t.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(raw));
            else t.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(raw));
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads and validates a safetensors file. Reading is bounded by what the header declares (the 8-byte length,
    /// then the data section up to the largest <c>data_offsets</c> end, then one byte to detect trailing data), so
    /// an endless stream such as <c>/dev/zero</c> or a pipe is refused after a few bytes instead of filling memory.
    /// </summary>
    /// <exception cref="SafeTensorsFormatException">The file is malformed.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static SafeTensorsFile Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var prefix = new byte[8];
        int got = stream.ReadAtLeast(prefix, 8, throwOnEndOfStream: false);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        // a short file or an oversized header length: Parse reports it from the bytes read so far
        if (got < 8 || headerLength > MaxHeaderBytes) return Parse(prefix[..got], path);
        var head = new byte[8 + (int)headerLength];
        prefix.CopyTo(head, 0);
        got = stream.ReadAtLeast(head.AsSpan(8), (int)headerLength, throwOnEndOfStream: false);
        if (got < (int)headerLength) return Parse(head[..(8 + got)], path);
        long dataLength = DeclaredDataLength(head.AsSpan(8));
        if (dataLength < 0) return Parse(head, path);
        if (head.Length + dataLength > Array.MaxLength)
            throw Fail(path, $"header declares {dataLength} data bytes, more than the 2 GiB this reader supports");
        var bytes = new byte[head.Length + dataLength];
        head.CopyTo(bytes, 0);
        got = stream.ReadAtLeast(bytes.AsSpan(head.Length), (int)dataLength, throwOnEndOfStream: false);
        if (got < dataLength) return Parse(bytes[..(head.Length + got)], path);
        if (stream.ReadByte() >= 0)
            throw Fail(path, $"data section has more than the {dataLength} bytes the tensors cover: trailing bytes");
        return Parse(bytes, path);
    }

    /// <summary>The largest data_offsets end in a header (−1 when the header is not a JSON object: Parse then reports why).</summary>
    private static long DeclaredDataLength(ReadOnlySpan<byte> header)
    {
        long end = 0;
        try
        {
            var reader = new Utf8JsonReader(header, new JsonReaderOptions { MaxDepth = 8 });
            using var doc = JsonDocument.ParseValue(ref reader);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return -1;
            foreach (var prop in doc.RootElement.EnumerateObject())
                if (prop.Value.ValueKind == JsonValueKind.Object && prop.Value.TryGetProperty("data_offsets", out var off)
                    && off.ValueKind == JsonValueKind.Array && off.GetArrayLength() == 2 && off[1].ValueKind == JsonValueKind.Number
                    && off[1].TryGetInt64(out long e))
                    end = Math.Max(end, e);
        }
        catch (Exception e) when (e is JsonException or ArgumentException)
        {
            return -1;
        }
        return end;
    }

    /// <summary>Parses and validates safetensors bytes; <paramref name="source"/> names them in errors.</summary>
    /// <exception cref="SafeTensorsFormatException">The bytes are not a valid safetensors file.</exception>
    public static SafeTensorsFile Parse(byte[] bytes, string source = "<memory>")
    {
        ArgumentNullException.ThrowIfNull(bytes);
        if (bytes.Length < 8)
            throw Fail(source, $"file is {bytes.Length} bytes, shorter than the 8-byte header length");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength > MaxHeaderBytes)
            throw Fail(source, $"header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
        if (headerLength > (ulong)(bytes.Length - 8))
            throw Fail(source, $"header length {headerLength} runs past the end of the file ({bytes.Length} bytes): truncated?");
        int dataStart = 8 + (int)headerLength;
        long dataLength = bytes.Length - dataStart;

        if (!System.Text.Unicode.Utf8.IsValid(bytes.AsSpan(8, (int)headerLength)))
            throw Fail(source, "header is not valid UTF-8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength), new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw Fail(source, $"header is not valid JSON ({e.Message})", e);
        }
        catch (ArgumentException e)
        {
            throw Fail(source, $"header is not valid UTF-8 JSON ({e.Message})", e);
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw Fail(source, $"header must be a JSON object; found {doc.RootElement.ValueKind}");
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var tensors = new List<SafeTensorInfo>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (!seen.Add(prop.Name)) throw Fail(source, $"header names '{prop.Name}' twice");
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                        throw Fail(source, "__metadata__ must be an object of strings");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String)
                            throw Fail(source, $"__metadata__ value of '{m.Name}' must be a string; found {m.Value.ValueKind}");
                        if (!metadata.TryAdd(m.Name, m.Value.GetString()!))
                            throw Fail(source, $"__metadata__ names '{m.Name}' twice");
                    }
                    continue;
                }
                tensors.Add(ParseEntry(source, prop, dataLength));
            }
            CheckCoverage(source, tensors, dataLength);
            return new SafeTensorsFile(source, bytes, dataStart, metadata, tensors);
        }
    }

    private static SafeTensorInfo ParseEntry(string source, JsonProperty prop, long dataLength)
    {
        string name = prop.Name;
        var e = prop.Value;
        if (e.ValueKind != JsonValueKind.Object) throw Fail(source, $"tensor '{name}': entry must be an object");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw Fail(source, $"tensor '{name}': missing string 'dtype'");
        string dtype = dt.GetString()!;
        if (!DTypeSizes.TryGetValue(dtype, out int elementSize))
            throw Fail(source, $"tensor '{name}': unknown dtype '{dtype}'");
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw Fail(source, $"tensor '{name}': missing 'shape' array");
        int rank = sh.GetArrayLength();
        if (rank > 16) throw Fail(source, $"tensor '{name}': rank {rank} is more than 16");
        var shape = new int[rank];
        long count = 1;
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out int v) || v < 0)
                throw Fail(source, $"tensor '{name}': shape entry {i} is not a non-negative 32-bit integer");
            shape[i++] = v;
            count *= v;
            if (count > dataLength) count = dataLength + 1; // saturate: the byte check below fails anyway
        }
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw Fail(source, $"tensor '{name}': 'data_offsets' must be [begin, end]");
        long begin = ReadOffset(source, name, off[0]), end = ReadOffset(source, name, off[1]);
        if (begin > end) throw Fail(source, $"tensor '{name}': data_offsets [{begin}, {end}] run backwards");
        if (end > dataLength)
            throw Fail(source, $"tensor '{name}': data_offsets [{begin}, {end}] run past the {dataLength}-byte data section: truncated?");
        long expected = count * elementSize;
        if (end - begin != expected)
            throw Fail(source, $"tensor '{name}': {dtype} {Tensor.FormatShape(shape)} needs {expected} bytes but data_offsets [{begin}, {end}] hold {end - begin}");
        return new SafeTensorInfo(name, dtype, shape, begin, end);
    }

    private static long ReadOffset(string source, string name, JsonElement v)
    {
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long x) || x < 0)
            throw Fail(source, $"tensor '{name}': data_offsets must be non-negative integers");
        return x;
    }

    private static void CheckCoverage(string source, List<SafeTensorInfo> tensors, long dataLength)
    {
        var sorted = tensors.OrderBy(t => t.Begin).ThenBy(t => t.End).ToList();
        long cursor = 0;
        foreach (var t in sorted)
        {
            if (t.Begin < cursor)
                throw Fail(source, $"tensor '{t.Name}' [{t.Begin}, {t.End}] overlaps the previous tensor (ends at {cursor})");
            if (t.Begin > cursor)
                throw Fail(source, $"data section has a hole at bytes [{cursor}, {t.Begin}) before tensor '{t.Name}'");
            cursor = t.End;
        }
        if (cursor != dataLength)
            throw Fail(source, $"data section has {dataLength} bytes but the tensors cover {cursor}: trailing bytes");
    }

    private static SafeTensorsFormatException Fail(string source, string problem, Exception? inner = null) =>
        new($"{source}: invalid safetensors file: {problem}", inner);

}

/// <summary>Writes safetensors files.</summary>
public static class SafeTensorsWriter
{
    /// <summary>
    /// Writes <paramref name="tensors"/> (name → tensor, F32 or I64, any device) and
    /// <paramref name="metadata"/> to <paramref name="path"/> atomically: the bytes go to a
    /// temporary file beside it, are flushed to disk, then replace the target in one rename,
    /// so a crash leaves either the old file or the new one, never a torn file.
    /// </summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var list = tensors.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, t) in list)
        {
            if (name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved and cannot name a tensor", nameof(tensors));
            if (!names.Add(name)) throw new ArgumentException($"tensor name '{name}' appears twice", nameof(tensors));
            Check.NotNull(t, $"tensors[{name}]");
        }

        using var header = new MemoryStream();
        using (var w = new Utf8JsonWriter(header))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, t) in list)
            {
                w.WriteStartObject(name);
                w.WriteString("dtype", t.DataType == DataType.Float32 ? "F32" : "I64");
                w.WriteStartArray("shape");
                foreach (int d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                offset += t.ByteCount;
                w.WriteNumberValue(offset);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        // Pad the header with spaces to a multiple of 8 so the data section is 8-byte aligned.
        int pad = (int)((8 - header.Length % 8) % 8);
        for (int i = 0; i < pad; i++) header.WriteByte((byte)' ');

        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
                fs.Write(len);
                header.Position = 0;
                header.CopyTo(fs);
                foreach (var (_, t) in list) WriteData(fs, t);
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    private static void WriteData(Stream s, Tensor t)
    {
        if (t.Length == 0) return;
        if (t.Device.Kind == DeviceKind.Cpu)
        {
            var bytes = t.DataType == DataType.Float32
                ? System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.AsSpan<float>())
                : System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.AsSpan<long>());
            s.Write(bytes);
            return;
        }
        using var host = t.To(Device.Cpu);
        WriteData(s, host);
    }
}
