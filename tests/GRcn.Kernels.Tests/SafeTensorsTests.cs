using System.Buffers.Binary;
using System.Text;
using GRcn.Kernels.Serialization;

namespace GRcn.Kernels.Tests;

public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("grcn-st-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string WriteSample(out float[] a, out long[] b)
    {
        a = [1.5f, -2f, 3.25f, float.NaN, 0f, 1e-30f];
        b = [7, -1, long.MaxValue];
        using var ta = Tensor.FromArray(a, 2, 3);
        using var tb = Tensor.FromArray(b, 3);
        using var empty = Tensor.Zeros(Device.Cpu, 0, 5);
        string path = Path.Combine(_dir, "sample.safetensors");
        SafeTensorsWriter.Write(path, [new("a", ta), new("b", tb), new("empty", empty)],
            new Dictionary<string, string> { ["format"] = "test", ["note"] = "héllo" });
        return path;
    }

    [Fact]
    public void RoundTripsTensorsAndMetadata()
    {
        string path = WriteSample(out var a, out var b);
        var file = SafeTensorsFile.Read(path);
        Assert.Equal("test", file.Metadata["format"]);
        Assert.Equal("héllo", file.Metadata["note"]);
        Assert.Equal(["a", "b", "empty"], file.Tensors.Select(t => t.Name));
        using var ta = file.Load("a", Device.Cpu);
        using var tb = file.Load("b", Device.Cpu);
        using var te = file.Load("empty", Device.Cpu);
        Assert.Equal([2, 3], ta.Shape.ToArray());
        Assert.Equal(a, ta.ToArray<float>());
        Assert.Equal(DataType.Int64, tb.DataType);
        Assert.Equal(b, tb.ToArray<long>());
        Assert.Equal([0, 5], te.Shape.ToArray());
        // header padded so the data section starts 8-byte aligned
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(bytes) % 8);
    }

    [Fact]
    public void WriteIsAtomicAndLeavesNoTemporaryFiles()
    {
        string path = WriteSample(out _, out _);
        WriteSample(out _, out _); // overwrite in place
        Assert.Single(Directory.GetFiles(_dir));
        Assert.NotNull(SafeTensorsFile.Read(path));
    }

    [Fact]
    public void WriterRejectsDuplicateAndReservedNames()
    {
        using var t = Tensor.Zeros(Device.Cpu, 2);
        string path = Path.Combine(_dir, "x.safetensors");
        var e = Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new("t", t), new("t", t)]));
        Assert.Equal("tensors", e.ParamName);
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new("__metadata__", t)]));
        Assert.False(File.Exists(path));
    }

    public static TheoryData<string, string> CorruptHeaders => new()
    {
        { "not json", "not valid JSON" },
        { "[]", "must be a JSON object" },
        { """{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}""", "needs 8 bytes" },
        { """{"t": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 4]}}""", "unknown dtype" },
        { """{"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}""", "shape entry 0" },
        { """{"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}""", "run backwards" },
        { """{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 400]}}""", "run past" },
        { """{"t": {"dtype": "F32", "shape": [1]}}""", "data_offsets" },
        { """{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "u": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}""", "overlaps" },
        { """{"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}""", "hole" },
        { """{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}""", "twice" },
        { """{"__metadata__": {"a": 1}, "t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}""", "must be a string" },
        { """{"t": {"dtype": "F32", "shape": [4294967296], "data_offsets": [0, 4]}}""", "shape entry 0" },
        { """{"t": {"dtype": "F32", "shape": [65536, 65536, 65536, 65536], "data_offsets": [0, 4]}}""", "needs" },
    };

    [Theory]
    [MemberData(nameof(CorruptHeaders))]
    public void CorruptHeaderGivesFormatErrorNamingTheProblem(string header, string expected)
    {
        // data section: 8 bytes
        var bytes = Build(header, 8);
        var e = Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Parse(bytes, "corrupt.safetensors"));
        Assert.Contains("corrupt.safetensors", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void TrailingBytesAndHugeHeaderLengthAreRejected()
    {
        var ok = Build("""{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}""", 4);
        SafeTensorsFile.Parse(ok);
        var trailing = Build("""{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}""", 6);
        Assert.Contains("trailing", Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Parse(trailing)).Message);
        var huge = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(huge, ulong.MaxValue);
        Assert.Contains("limit", Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Parse(huge)).Message);
        BinaryPrimitives.WriteUInt64LittleEndian(huge, 1000);
        Assert.Contains("truncated", Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Parse(huge)).Message);
        Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Parse(new byte[5]));
    }

    [Fact]
    public void LoadRejectsUnsupportedDtypeClearly()
    {
        var bytes = Build("""{"h": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}""", 4);
        var file = SafeTensorsFile.Parse(bytes, "half.safetensors");
        var e = Assert.Throws<NotSupportedException>(() => file.Load("h", Device.Cpu));
        Assert.Contains("F16", e.Message);
        Assert.Throws<KeyNotFoundException>(() => file.Load("missing", Device.Cpu));
    }

    /// <summary>
    /// Thousands of truncated, bit-flipped and random inputs: each either parses (and then loads)
    /// or throws SafeTensorsFormatException; nothing else escapes, and nothing hangs.
    /// </summary>
    [Fact]
    public void FuzzedFilesGiveOnlyTheDocumentedException()
    {
        var valid = File.ReadAllBytes(WriteSample(out _, out _));
        var rng = new Random(1234);
        int rejected = 0, accepted = 0;
        void Try(byte[] bytes)
        {
            try
            {
                var f = SafeTensorsFile.Parse(bytes, "fuzz");
                foreach (var t in f.Tensors)
                {
                    try
                    {
                        using var loaded = f.Load(t.Name, Device.Cpu);
                        Assert.Equal(t.Length, loaded.Length);
                    }
                    catch (NotSupportedException)
                    {
                        // a flipped dtype may name a valid but unsupported type
                    }
                }
                accepted++;
            }
            catch (SafeTensorsFormatException)
            {
                rejected++;
            }
        }

        for (int len = 0; len < valid.Length; len++) Try(valid[..len]);
        for (int i = 0; i < 3000; i++)
        {
            var b = (byte[])valid.Clone();
            int flips = 1 + rng.Next(4);
            for (int f = 0; f < flips; f++)
            {
                // bias towards the length prefix and the JSON header, where the parser works
                int at = rng.Next(4) == 0 ? rng.Next(b.Length) : rng.Next(Math.Min(b.Length, 8 + 200));
                b[at] ^= (byte)(1 << rng.Next(8));
            }
            Try(b);
        }
        const string alphabet = "{}[]\":,0123456789-.eEaFIU_ \\ntrufalsedtypeshapedata_offsets";
        for (int i = 0; i < 2000; i++)
        {
            int headerLen = rng.Next(0, 120);
            var header = new StringBuilder();
            for (int j = 0; j < headerLen; j++) header.Append(alphabet[rng.Next(alphabet.Length)]);
            var b = Build(header.ToString(), rng.Next(0, 64));
            if (rng.Next(10) == 0) BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)rng.NextInt64());
            Try(b);
        }
        for (int i = 0; i < 500; i++)
        {
            var b = new byte[rng.Next(0, 256)];
            rng.NextBytes(b);
            Try(b);
        }
        Assert.True(rejected > 5000, $"only {rejected} inputs were rejected");
        Assert.True(accepted > 0);
    }

    [Fact]
    public void ReadingAFileIsBoundedByWhatItsHeaderDeclares()
    {
        // an endless stream: the 8 zero bytes declare an empty header, and reading stops there
        if (File.Exists("/dev/zero"))
            Assert.Contains("/dev/zero", Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Read("/dev/zero")).Message);
        var valid = File.ReadAllBytes(WriteSample(out _, out _));
        string path = Path.Combine(_dir, "edited.safetensors");
        File.WriteAllBytes(path, [.. valid, 0]);
        Assert.Contains("trailing", Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Read(path)).Message);
        // a file gives the outcome its bytes give, whatever they are
        var rng = new Random(77);
        for (int i = 0; i < 300; i++)
        {
            var b = (byte[])valid.Clone();
            if (rng.Next(3) == 0) b = b[..rng.Next(b.Length)];
            else b[rng.Next(Math.Min(b.Length, 8 + 200))] ^= (byte)(1 << rng.Next(8));
            File.WriteAllBytes(path, b);
            string? parsed = null, read = null;
            try { SafeTensorsFile.Parse(b, path); } catch (SafeTensorsFormatException e) { parsed = e.Message; }
            try { SafeTensorsFile.Read(path); } catch (SafeTensorsFormatException e) { read = e.Message; }
            Assert.Equal(parsed is null, read is null);
        }
    }

    private static byte[] Build(string header, int dataBytes)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var b = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)h.Length);
        h.CopyTo(b, 8);
        return b;
    }
}
