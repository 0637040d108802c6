// Detector.Load refuses every damaged checkpoint with InvalidDataException (or IOException for a
// malformed safetensors file) naming the file and the field or tensor, never another exception:
// metadata that is not a number or out of range, configurations Detector.Create rejects, tensors
// of another dtype or with non-finite values, optimiser state that does not match the
// parameters; random single-byte changes of the header and JSON edits that keep it valid but
// give wrong types and values. Trainer.Evaluate stops on cancellation.
using System.Text;
using System.Text.Json.Nodes;
using GRcn.Detection.Data;
using GRcn.Detection.Model;
using GRcn.Detection.Training;
using GRcn.Kernels;
using GRcn.Kernels.Serialization;

namespace GRcn.Detection.Tests.Model;

/// <summary>One small AdamW checkpoint after a training step (so it holds optimiser state), shared by the tests.</summary>
public sealed class TrainedCheckpoint : IDisposable
{
    public TrainedCheckpoint()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("grcn-ckpt-check").FullName;
        Path = System.IO.Path.Combine(Directory, "trained.safetensors");
        var options = new TrainingOptions { Optimizer = OptimizerKind.AdamW, LearningRate = 1e-3 };
        using var det = Detector.Create(DetectorTests.Small("faster-rcnn"), seed: 2, options: options);
        det.TrainStep(TinyData.Batch(0, 1));
        det.Save(Path);
        Bytes = File.ReadAllBytes(Path);
    }

    public string Directory { get; }

    public string Path { get; }

    public byte[] Bytes { get; }

    /// <summary>Length of the JSON header (after the 8-byte length).</summary>
    public int HeaderLength => (int)BitConverter.ToUInt64(Bytes, 0);

    public void Dispose()
    {
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
    }
}

public sealed class CheckpointValidationTests(TrainedCheckpoint ckpt) : IClassFixture<TrainedCheckpoint>
{
    private int _files;

    /// <summary>Writes <paramref name="bytes"/> to a new file beside the checkpoint.</summary>
    private string Write(byte[] bytes)
    {
        string path = Path.Combine(ckpt.Directory, $"edit-{Environment.CurrentManagedThreadId}-{_files++}.safetensors");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>The checkpoint with its JSON header edited (the data section unchanged).</summary>
    private byte[] EditHeader(Action<JsonObject> edit)
    {
        var header = JsonNode.Parse(Encoding.UTF8.GetString(ckpt.Bytes, 8, ckpt.HeaderLength))!.AsObject();
        edit(header);
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        var bytes = new byte[8 + json.Length + ckpt.Bytes.Length - 8 - ckpt.HeaderLength];
        BitConverter.GetBytes((ulong)json.Length).CopyTo(bytes, 0);
        json.CopyTo(bytes, 8);
        ckpt.Bytes.AsSpan(8 + ckpt.HeaderLength).CopyTo(bytes.AsSpan(8 + json.Length));
        return bytes;
    }

    /// <summary>The checkpoint with one metadata JSON document (config or training) edited.</summary>
    private byte[] EditMeta(string key, Action<JsonObject> edit) => EditHeader(h =>
    {
        var meta = h["__metadata__"]!.AsObject();
        var doc = JsonNode.Parse(meta[key]!.GetValue<string>())!.AsObject();
        edit(doc);
        meta[key] = doc.ToJsonString();
    });

    /// <summary>The checkpoint rewritten with the tensors <paramref name="keep"/> accepts.</summary>
    private string Without(Func<string, bool> keep)
    {
        var file = SafeTensorsFile.Read(ckpt.Path);
        var tensors = file.Tensors.Where(t => keep(t.Name)).Select(t => new KeyValuePair<string, Tensor>(t.Name, file.Load(t.Name, Device.Cpu))).ToList();
        string path = Write([]);
        SafeTensorsWriter.Write(path, tensors, file.Metadata);
        foreach (var t in tensors) t.Value.Dispose();
        return path;
    }

    private static void AssertRefused(string path, params string[] words)
    {
        var e = Assert.Throws<InvalidDataException>(() => Detector.Load(path));
        Assert.Contains(path, e.Message);
        foreach (var w in words) Assert.Contains(w, e.Message);
    }

    public static TheoryData<string, string, string> MetadataEdits() => new()
    {
        { "iteration", "abc", "'iteration'" },
        { "iteration", "-1", "'iteration'" },
        { "iteration", "99999999999", "'iteration'" },
        { "seed", "-5", "'seed'" },
        { "seed", "1e3", "'seed'" },
        { "seed", "", "'seed'" },
        { "training_seconds", "-1", "'training_seconds'" },
        { "training_seconds", "NaN", "'training_seconds'" },
        { "training_seconds", "1e300", "'training_seconds'" },
        { "training_seconds", "soon", "'training_seconds'" },
        { "timed_from_iteration", "2", "'timed_from_iteration'" },
        { "timed_from_iteration", "-1", "'timed_from_iteration'" },
    };

    [Theory]
    [MemberData(nameof(MetadataEdits))]
    public void MetadataThatIsNotANumberInRangeIsRefused(string key, string value, string named) =>
        AssertRefused(Write(EditHeader(h => h["__metadata__"]![key] = value)), named);

    [Fact]
    public void TheTrainingTimeIsKeptAndACheckpointThatDidNotRecordItCountsFromItsIteration()
    {
        using (var d = Detector.Load(ckpt.Path))
        {
            Assert.Equal(0, d.TimedFromIteration);
            Assert.Equal(TimeSpan.Zero, d.TrainingTime);
        }
        string path = Write(EditHeader(h => h["__metadata__"]!["training_seconds"] = "83.25"));
        using (var d = Detector.Load(path))
        {
            Assert.Equal(TimeSpan.FromSeconds(83.25), d.TrainingTime);
            Assert.Throws<ArgumentOutOfRangeException>(() => d.TrainingTime = TimeSpan.FromSeconds(-1));
            d.TrainingTime += TimeSpan.FromSeconds(1);
            d.Save(path);
        }
        using (var d = Detector.Load(path)) Assert.Equal(TimeSpan.FromSeconds(84.25), d.TrainingTime);
        // as written before the training time was recorded: neither field
        string old = Write(EditHeader(h =>
        {
            var meta = h["__metadata__"]!.AsObject();
            meta.Remove("training_seconds");
            meta.Remove("timed_from_iteration");
        }));
        using (var d = Detector.Load(old))
        {
            Assert.Equal(1, d.Iteration);
            Assert.Equal(1, d.TimedFromIteration);
            Assert.Equal(TimeSpan.Zero, d.TrainingTime);
            d.Save(old);
        }
        using (var d = Detector.Load(old)) Assert.Equal(1, d.TimedFromIteration);
    }

    public static TheoryData<string, string, string> ConfigEdits() => new()
    {
        { "config", """{"Width": 1e9}""", "Width" },
        { "config", """{"Width": -0.5}""", "Width" },
        { "config", """{"ClassNames": []}""", "ClassNames" },
        { "config", """{"ClassNames": null}""", "ClassNames" },
        { "config", """{"Backbone": 7}""", "Backbone" },
        { "config", """{"Width": "wide"}""", "config" },
        { "config", """{"Rpn": null}""", "Rpn" },
        { "config", """{"Input": {"MinSize": 0}}""", "MinSize" },
        { "config", """{"RoiHeads": {"FcDim": 2000000000}}""", "FcDim" },
        { "config", """{"GroupNormGroups": -3}""", "GroupNormGroups" },
        { "training", """{"LearningRate": -1}""", "LearningRate" },
        { "training", """{"Steps": null}""", "Steps" },
    };

    [Theory]
    [MemberData(nameof(ConfigEdits))]
    public void ConfigurationsCreateRejectsAreRefused(string key, string patch, string named)
    {
        var edits = JsonNode.Parse(patch)!.AsObject();
        string path = Write(EditMeta(key, doc =>
        {
            foreach (var (k, v) in edits)
            {
                if (v is JsonObject inner && doc[k] is JsonObject target)
                    foreach (var (ik, iv) in inner) target[ik] = iv?.DeepClone();
                else doc[k] = v?.DeepClone();
            }
        }));
        AssertRefused(path, named);
    }

    [Fact]
    public void CreateRejectsWhatLoadRejects()
    {
        var c = DetectorTests.Small("faster-rcnn");
        Assert.Contains("Width", Assert.Throws<ArgumentException>(() => Detector.Create(c with { Width = 1e9 })).Message);
        Assert.Contains("ClassNames", Assert.Throws<ArgumentException>(() => Detector.Create(c with { ClassNames = [] })).Message);
        Assert.Contains("MinSize", Assert.Throws<ArgumentException>(() => Detector.Create(c with { Input = c.Input with { MinSize = 0 } })).Message);
        Assert.Contains("LearningRate", Assert.Throws<ArgumentException>(() => Detector.Create(c, options: new TrainingOptions { LearningRate = double.NaN })).Message);
    }

    [Fact]
    public void TensorsOfAnotherDtypeOrWithNonFiniteValuesAreRefusedByName()
    {
        var file = SafeTensorsFile.Read(ckpt.Path);
        var target = file.Tensors.First(t => t.Name.StartsWith("model.", StringComparison.Ordinal) && t.Length > 1);
        // I32 has F32's size: the safetensors file stays valid
        AssertRefused(Write(EditHeader(h => h[target.Name]!["dtype"] = "I32")), target.Name, "I32");

        foreach (float bad in new[] { float.NaN, float.PositiveInfinity })
        {
            var bytes = (byte[])ckpt.Bytes.Clone();
            BitConverter.GetBytes(bad).CopyTo(bytes, 8 + ckpt.HeaderLength + (int)target.Begin + 4);
            AssertRefused(Write(bytes), target.Name, "non-finite");
        }
    }

    [Fact]
    public void OptimiserStateMustMatchTheParameters()
    {
        var file = SafeTensorsFile.Read(ckpt.Path);
        var states = file.Tensors.Where(t => t.Name.StartsWith("optimizer.", StringComparison.Ordinal)).Select(t => t.Name).ToList();
        Assert.NotEmpty(states);
        AssertRefused(Without(n => n != states[3]), states[3], "missing");
        AssertRefused(Write(EditHeader(h =>
        {
            var entry = h[states[0]]!;
            h.Remove(states[0]);
            h[states[0] + "x"] = entry.DeepClone();
        })), states[0] + "x", "no trainable parameter");
        // SGD keeps velocity.*, not AdamW's moments
        AssertRefused(Write(EditMeta("training", t => t["Optimizer"] = (int)OptimizerKind.Sgd)), states[0]);
        // no state at all loads (a fresh optimiser)
        using (var d = Detector.Load(Without(n => !n.StartsWith("optimizer.", StringComparison.Ordinal)))) Assert.Equal(1, d.Iteration);
    }

    /// <summary>Loads <paramref name="bytes"/>; true when loaded, false when refused with a documented exception.</summary>
    private bool LoadsOrIsRefused(byte[] bytes, string what)
    {
        string path = Write(bytes);
        try
        {
            using var d = Detector.Load(path);
            return true;
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            Assert.False(string.IsNullOrWhiteSpace(e.Message), what);
            Assert.DoesNotContain('\n', e.Message);
            return false;
        }
        catch (Exception e)
        {
            Assert.Fail($"{what}: {e.GetType().Name}: {e.Message}");
            return false;
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>Bytes that keep a JSON header plausible more often than random ones.</summary>
    private const string Substitutes = "0123456789-.e\"{}[],:x ";

    [Fact]
    public void RandomSingleByteChangesOfTheHeaderGiveOnlyDocumentedExceptions()
    {
        var rng = new Random(19);
        int refused = 0;
        for (int i = 0; i < 150; i++)
        {
            var bytes = (byte[])ckpt.Bytes.Clone();
            // the 8-byte length now and then, the JSON header mostly
            int at = rng.Next(10) == 0 ? rng.Next(8) : 8 + rng.Next(ckpt.HeaderLength);
            byte old = bytes[at];
            bytes[at] = rng.Next(3) switch
            {
                0 => (byte)(old ^ (1 << rng.Next(8))),
                1 => (byte)Substitutes[rng.Next(Substitutes.Length)],
                _ => (byte)rng.Next(256),
            };
            if (!LoadsOrIsRefused(bytes, $"byte {at}: 0x{old:X2} → 0x{bytes[at]:X2}")) refused++;
        }
        Assert.True(refused > 50, $"only {refused} of 150 refused");
    }

    /// <summary>Every leaf of a JSON document with its path (objects by property, arrays by index).</summary>
    private static IEnumerable<string[]> Leaves(JsonNode? node, string[] path)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var (k, v) in o)
                    foreach (var l in Leaves(v, [.. path, k])) yield return l;
                break;
            case JsonArray a:
                yield return path;
                // the first element stands for the rest
                if (a.Count > 0)
                    foreach (var l in Leaves(a[0], [.. path, "0"])) yield return l;
                break;
            default:
                yield return path;
                break;
        }
    }

    private static void Set(JsonNode root, string[] path, JsonNode? value)
    {
        var parent = root;
        for (int i = 0; i < path.Length - 1; i++)
            parent = parent is JsonArray pa ? pa[int.Parse(path[i], System.Globalization.CultureInfo.InvariantCulture)]! : parent[path[i]]!;
        if (parent is JsonArray arr) arr[int.Parse(path[^1], System.Globalization.CultureInfo.InvariantCulture)] = value;
        else parent[path[^1]] = value;
    }

    [Fact]
    public void HeaderEditsThatStayValidJsonButCarryWrongTypesOrValuesGiveOnlyDocumentedExceptions()
    {
        Func<JsonNode?>[] values = [() => "x", () => -1, () => 1e300, () => null];
        int loaded = 0, refused = 0;
        foreach (string key in new[] { "config", "training" })
        {
            var doc = JsonNode.Parse(SafeTensorsFile.Read(ckpt.Path).Metadata[key])!;
            foreach (var leaf in Leaves(doc, []).Where(l => l.Length > 0))
                foreach (var make in values)
                {
                    var bytes = EditMeta(key, d => Set(d, leaf, make()));
                    if (LoadsOrIsRefused(bytes, $"{key}.{string.Join('.', leaf)} = {make()?.ToJsonString() ?? "null"}")) loaded++;
                    else refused++;
                }
        }
        // the tensor table: wrong dtypes, shapes and offsets
        var first = SafeTensorsFile.Read(ckpt.Path).Tensors[0].Name;
        foreach (var (field, make) in new (string, Func<JsonNode?>)[]
                 {
                     ("dtype", () => "F64"), ("dtype", () => "BOOL"), ("dtype", () => 5), ("shape", () => new JsonArray("a")),
                     ("shape", () => new JsonArray(-1)), ("shape", () => new JsonArray()), ("data_offsets", () => new JsonArray(-1, 4)),
                     ("data_offsets", () => new JsonArray(0, 1e30)), ("data_offsets", () => null),
                 })
            if (LoadsOrIsRefused(EditHeader(h => h[first]![field] = make()), $"{first}.{field}")) loaded++;
            else refused++;
        foreach (var (key, value) in new (string, string)[] { ("format", "grcn-checkpoint/2"), ("config", "[]"), ("config", "null"), ("training", "7") })
            if (LoadsOrIsRefused(EditHeader(h => h["__metadata__"]![key] = value), $"__metadata__.{key}")) loaded++;
            else refused++;
        Assert.True(refused > 100, $"{refused} refused, {loaded} loaded");
    }

    [Fact]
    public void EvaluationStopsWhenCancelled()
    {
        var shapes = new ShapesDataset(new ShapesOptions { Count = 2, Split = ShapesSplit.Test });
        var c = DetectorTests.Small("faster-rcnn") with { ClassNames = [.. shapes.ClassNames] };
        using var det = Detector.Create(c);
        Assert.Throws<OperationCanceledException>(() => Trainer.Evaluate(det, shapes, cancellation: new CancellationToken(true)));
    }
}
