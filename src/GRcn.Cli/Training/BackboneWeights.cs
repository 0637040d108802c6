// Loads torchvision backbone weights (a safetensors state dict: VGG16 features.N.*, ResNet
// conv1/bn1/layerK.*) into a detector: every parameter named backbone.X takes tensor X, and
// the loc branch of split variants (backbone_loc.X) takes the same X, so both branches start
// from the pretrained weights. Every backbone parameter must be found; tensors the detector
// has no place for (VGG's classifier.*, ResNet's fc.*, num_batches_tracked) are ignored. Every
// tensor is checked (present, shape, F32, finite values) before any is copied.
using System.Runtime.InteropServices;
using GRcn.Detection.Model;
using GRcn.Detection.Nn;
using GRcn.Kernels.Serialization;

namespace GRcn.Cli.Training;

internal static class BackboneWeights
{
    /// <summary>Copies the file's tensors into the detector's backbone; returns how many parameters were set.</summary>
    /// <exception cref="InvalidDataException">
    /// A backbone parameter is missing from the file, has another shape, is not float32 or holds a non-finite value; nothing is loaded then.
    /// </exception>
    public static int Load(Detector detector, string path)
    {
        ArgumentNullException.ThrowIfNull(detector);
        var file = SafeTensorsFile.Read(path);
        var targets = new List<(Detection.Autograd.Parameter Parameter, string Key)>();
        foreach (var (name, p) in detector.Parameters)
        {
            string? key = name.StartsWith("backbone.", StringComparison.Ordinal) ? name["backbone.".Length..]
                : name.StartsWith("backbone_loc.", StringComparison.Ordinal) ? name["backbone_loc.".Length..] : null;
            if (key is null) continue;
            if (!file.Contains(key))
                throw new InvalidDataException($"{path}: tensor '{key}' (for {name}) is missing; is this a torchvision {detector.Config.Backbone} state dict?");
            var info = file.Info(key);
            if (!info.Shape.AsSpan().SequenceEqual(p.Value.Shape))
                throw new InvalidDataException(
                    $"{path}: tensor '{key}' has shape {info.ShapeString}, {name} expects {p.Value.ShapeString} (pretrained weights need --width 1)");
            if (info.DType != "F32") throw new InvalidDataException($"{path}: tensor '{key}' has dtype {info.DType}; float32 (F32) is needed");
            var values = MemoryMarshal.Cast<byte, float>(file.RawBytes(key));
            int bad = FirstNonFinite(values);
            if (bad >= 0) throw new InvalidDataException($"{path}: tensor '{key}' holds a non-finite value ({values[bad]}) at flat index {bad}");
            targets.Add((p, key));
        }
        if (targets.Count == 0) throw new InvalidDataException($"{path}: the detector has no backbone parameters to load");
        foreach (var (p, key) in targets) p.Load(MemoryMarshal.Cast<byte, float>(file.RawBytes(key)));
        StateVersion.Bump();
        return targets.Count;
    }

    private static int FirstNonFinite(ReadOnlySpan<float> values)
    {
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i])) return i;
        return -1;
    }
}
