// StateDict: strict and lenient loading, prefix and ignore handling, error messages that name the
// key, all-or-nothing loading, non-F32 source dtypes, the Save → safetensors → Load round trip,
// and frozen batch norms refolding after a load.
using System.Buffers.Binary;
using System.Text;
using GRcn.Detection.Autograd;
using GRcn.Detection.Backbones;
using GRcn.Detection.Nn;
using GRcn.Kernels;
using GRcn.Kernels.Serialization;

namespace GRcn.Detection.Tests.Backbones;

public sealed class StateDictTests
{
    private static Vgg16 SmallVgg(ulong seed) => new(Device.Cpu, new SplitMix64(seed), width: 0.0625);

    private static void DisposeAll(Dictionary<string, Tensor> d)
    {
        foreach (var t in d.Values) t.Dispose();
    }

    [Fact]
    public void Strict_MissingKeyThrowsNamingItAndLoadsNothing()
    {
        using var src = SmallVgg(1);
        using var dst = SmallVgg(2);
        var dict = StateDict.Save(src);
        try
        {
            dict.Remove("features.12.bias", out var removed);
            removed!.Dispose();
            var before = dst.Conv(0).Weight.Value.ToArray<float>();
            var e = Assert.Throws<StateDictException>(() => StateDict.Load(dst, dict));
            Assert.Contains("missing 1", e.Message);
            Assert.Contains("features.12.bias", e.Message);
            Assert.Equal(before, dst.Conv(0).Weight.Value.ToArray<float>()); // nothing loaded

            var r = StateDict.Load(dst, dict, strict: false);
            Assert.Equal(["features.12.bias"], r.Missing);
            Assert.Equal(25, r.Loaded.Count);
            Assert.Equal(src.Conv(0).Weight.Value.ToArray<float>(), dst.Conv(0).Weight.Value.ToArray<float>());
        }
        finally
        {
            DisposeAll(dict);
        }
    }

    [Fact]
    public void Strict_UnexpectedKeyThrows_LenientReportsIt()
    {
        using var src = SmallVgg(1);
        using var dst = SmallVgg(2);
        var dict = StateDict.Save(src);
        try
        {
            dict["features.1.weight"] = Tensor.Zeros(Device.Cpu, 3);
            var e = Assert.Throws<StateDictException>(() => StateDict.Load(dst, dict));
            Assert.Contains("unexpected 1", e.Message);
            Assert.Contains("features.1.weight", e.Message);
            var r = StateDict.Load(dst, dict, strict: false);
            Assert.Equal(["features.1.weight"], r.Unexpected);
            Assert.Empty(r.Missing);
            var ignored = StateDict.Load(dst, dict, ignore: n => n == "features.1.weight");
            Assert.Equal(["features.1.weight"], ignored.Ignored);
        }
        finally
        {
            DisposeAll(dict);
        }
    }

    [Fact]
    public void ShapeMismatch_NamesKeyAndBothShapes()
    {
        using var dst = SmallVgg(2);
        using var other = new Vgg16(Device.Cpu, new SplitMix64(3), width: 0.125);
        var dict = StateDict.Save(other);
        try
        {
            var e = Assert.Throws<StateDictException>(() => StateDict.Load(dst, dict, strict: false));
            Assert.Equal("features.0.weight", e.Key);
            Assert.Contains("'features.0.weight' has shape (8, 3, 3, 3)", e.Message);
            Assert.Contains("expects (4, 3, 3, 3)", e.Message);
        }
        finally
        {
            DisposeAll(dict);
        }
    }

    [Fact]
    public void IntegerTensor_IsADtypeError()
    {
        using var dst = SmallVgg(2);
        var dict = StateDict.Save(dst);
        try
        {
            dict["features.0.bias"].Dispose();
            dict["features.0.bias"] = Tensor.Zeros(Device.Cpu, DataType.Int64, 4);
            var e = Assert.Throws<StateDictException>(() => StateDict.Load(dst, dict));
            Assert.Contains("'features.0.bias' has dtype I64", e.Message);
        }
        finally
        {
            DisposeAll(dict);
        }
    }

    [Fact]
    public void Prefix_SelectsTheModulesEntries()
    {
        using var src = SmallVgg(1);
        using var dst = SmallVgg(2);
        var dict = StateDict.Save(src, "backbone.body.");
        try
        {
            dict["roi_heads.box_predictor.cls_score.weight"] = Tensor.Zeros(Device.Cpu, 2, 2);
            var r = StateDict.Load(dst, dict, "backbone.body.");
            Assert.Equal(26, r.Loaded.Count);
            Assert.Empty(r.Unexpected); // entries outside the prefix are not considered
            Assert.Equal(src.Conv(28).Bias!.Value.ToArray<float>(), dst.Conv(28).Bias!.Value.ToArray<float>());
        }
        finally
        {
            DisposeAll(dict);
        }
    }

    [Fact]
    public void SaveWriteLoad_RoundTripsEveryValue()
    {
        using var src = new ResNet(Device.Cpu, new SplitMix64(1), 50, width: 0.0625);
        BackboneTests.RandomiseBatchNorm(src, new SplitMix64(2));
        using var dst = new ResNet(Device.Cpu, new SplitMix64(3), 50, width: 0.0625);
        string path = Path.Combine(Path.GetTempPath(), $"grcn-statedict-{Guid.NewGuid():N}.safetensors");
        try
        {
            var dict = StateDict.Save(src);
            try
            {
                SafeTensorsWriter.Write(path, dict);
            }
            finally
            {
                DisposeAll(dict);
            }
            using var x = TestUtil.Normal(new SplitMix64(4), 1, 3, 32, 32);
            var before = TestUtil.Infer(x, (g, v) => dst.ForwardLayer(g, dst.Stem(g, v), 1)); // folds dst's initial BN
            var r = StateDict.Load(dst, path);
            Assert.Equal(265, r.Loaded.Count);
            foreach (var ((na, pa), (nb, pb)) in src.NamedParameters().Zip(dst.NamedParameters()))
            {
                Assert.Equal(na, nb);
                Assert.Equal(pa.Value.ToArray<float>(), pb.Value.ToArray<float>());
            }
            // the frozen batch norms refold from the loaded statistics
            var want = TestUtil.Infer(x, (g, v) => src.ForwardLayer(g, src.Stem(g, v), 1));
            var got = TestUtil.Infer(x, (g, v) => dst.ForwardLayer(g, dst.Stem(g, v), 1));
            Assert.NotEqual(before.Values, got.Values);
            Assert.Equal(want.Values, got.Values);

            // SaveFile writes the same entries without copies
            StateDict.SaveFile(src, path);
            var file = SafeTensorsFile.Read(path);
            Assert.Equal(src.NamedParameters().Select(p => p.Name), file.Tensors.Select(t => t.Name));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("F64")]
    [InlineData("F16")]
    [InlineData("BF16")]
    public void NonF32Sources_AreConvertedToFloat32(string dtype)
    {
        // values exactly representable in all three formats
        float[] weight = [0.5f, -1.25f, 2f, 0.375f, -3f, 0.0625f];
        float[] bias = [1.5f, -0.75f];
        var bytes = SafeTensorsBytes(dtype, ("weight", [2, 3, 1, 1], weight), ("bias", [2], bias));
        var file = SafeTensorsFile.Parse(bytes, $"test-{dtype}");
        using var conv = new Conv2dLayer(Device.Cpu, new SplitMix64(1), 3, 2, 1);
        var r = StateDict.Load(conv, file);
        Assert.Equal(2, r.Loaded.Count);
        Assert.Equal(weight, conv.Weight.Value.ToArray<float>());
        Assert.Equal(bias, conv.Bias!.Value.ToArray<float>());
    }

    /// <summary>A safetensors file of float tensors stored as <paramref name="dtype"/> (F64, F16 or BF16).</summary>
    private static byte[] SafeTensorsBytes(string dtype, params (string Name, int[] Shape, float[] Values)[] tensors)
    {
        int size = dtype == "F64" ? 8 : 2;
        var header = new StringBuilder("{");
        var data = new List<byte>();
        foreach (var (name, shape, values) in tensors)
        {
            if (header.Length > 1) header.Append(',');
            header.Append($"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{string.Join(',', shape)}],\"data_offsets\":[{data.Count},{data.Count + values.Length * size}]}}");
            var buf = new byte[size];
            foreach (float v in values)
            {
                switch (dtype)
                {
                    case "F64": BinaryPrimitives.WriteDoubleLittleEndian(buf, v); break;
                    case "F16": BinaryPrimitives.WriteHalfLittleEndian(buf, (Half)v); break;
                    default: BinaryPrimitives.WriteUInt16LittleEndian(buf, (ushort)(BitConverter.SingleToInt32Bits(v) >> 16)); break;
                }
                data.AddRange(buf);
            }
        }
        header.Append('}');
        var h = Encoding.UTF8.GetBytes(header.ToString());
        var bytes = new byte[8 + h.Length + data.Count];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)h.Length);
        h.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + h.Length);
        return bytes;
    }
}
