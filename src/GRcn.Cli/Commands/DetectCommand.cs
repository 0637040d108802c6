// grcn detect: runs a checkpoint on image files (PNG, JPEG, PPM) and writes, per image, a PNG
// with the detections at or above --threshold drawn (class-coloured boxes, "name score"
// labels); --json also writes every raw detection (score ≥ the model's 0.05) of every image
// to OUT/detections.json, boxes in the image's pixels. An output never takes the name of an input
// (photo.png detected into its own folder becomes photo-2.png); an image that cannot be read is
// reported and the others are still processed, and the exit code is then 2.
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using GRcn.Cli.Drawing;
using GRcn.Cli.Training;
using GRcn.Detection.Data;
using GRcn.Detection.Model;
using GRcn.Kernels;

namespace GRcn.Cli.Commands;

internal static class DetectCommand
{
    public static Command Create()
    {
        var images = new Argument<string[]>("IMAGE") { Description = "Image files (PNG, JPEG or PPM)", Arity = ArgumentArity.OneOrMore };
        var checkpoint = new Option<string>("--checkpoint") { Description = "Detector checkpoint (a grcn train checkpoint.safetensors)", Required = true };
        var output = new Option<string>("--out") { Description = "Output folder for the annotated PNGs", DefaultValueFactory = _ => Path.Combine("runs", "detect") };
        var json = new Option<bool>("--json") { Description = "Also write every raw detection to OUT/detections.json" };
        var threshold = new Option<float>("--threshold") { Description = "Draw and list detections scoring at least this", DefaultValueFactory = _ => 0.5f };
        var device = DeviceOption.Create();
        var threads = new Option<int?>("--threads") { Description = "CPU threads (default: all logical cores)" };
        var size = new Option<int?>("--size") { Description = "Detect at this shorter side, the longer at most size·5/3 (default: the checkpoint's)" };
        var command = new Command("detect", "Detect objects in images with a trained checkpoint and draw them")
        {
            images, checkpoint, output, json, threshold, device, threads, size,
        };
        command.SetAction(p =>
        {
            var o = p.InvocationConfiguration.Output;
            var e = p.InvocationConfiguration.Error;
            try
            {
                float th = p.GetValue(threshold);
                if (!(th >= 0 && th <= 1)) throw new ArgumentException($"--threshold must be in [0, 1]; got {th}");
                return Run(p.GetValue(images)!, p.GetValue(checkpoint)!, p.GetValue(output)!, p.GetValue(json), th,
                    p.GetValue(device)!, p.GetValue(threads), p.GetValue(size), o, e);
            }
            catch (Exception ex) when (ex is ArgumentException or IOException or InvalidDataException or NotSupportedException
                                           or PlatformNotSupportedException or UnauthorizedAccessException)
            {
                e.WriteLine($"grcn detect: {GrcnApp.Message(ex)}");
                return 2;
            }
        });
        return command;
    }

    /// <summary>The absolute path of the file a path ends at, symbolic links followed (writing through a link writes its target).</summary>
    private static string RealPath(string path)
    {
        var info = new FileInfo(Path.GetFullPath(path));
        return (info.Exists ? info.ResolveLinkTarget(returnFinalTarget: true)?.FullName : null) ?? info.FullName;
    }

    private static int Run(string[] images, string checkpoint, string outDir, bool json, float threshold, string deviceName, int? threads, int? size, TextWriter o, TextWriter e)
    {
        var device = DeviceOption.Open(deviceName);
        DeviceOption.SetThreads(device, threads);
        if (size is < 1 or > TrainSettings.MaxSide) throw new ArgumentException($"--size must be in [1, {TrainSettings.MaxSide}]; got {size}", "--size");
        using var detector = Detector.Load(checkpoint, device);
        if (size is int sz) detector.SetInputSize(sz, TrainSettings.LongerSideFor(sz));
        var names = detector.Config.ClassNames;
        Directory.CreateDirectory(outDir);
        // output names never take an input's (or the checkpoint's) name: a picture never replaces what it was drawn from
        var used = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var inputs = images.Append(checkpoint).Select(RealPath).ToHashSet(StringComparer.Ordinal);
        var all = new List<(string Image, IReadOnlyList<DetectedObject> Detections)>();
        var inv = CultureInfo.InvariantCulture;
        int failed = 0;
        foreach (var path in images)
        {
            RgbImage image;
            try
            {
                if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such image file", path);
                image = ImageFile.Load(path);
            }
            catch (Exception ex) when (ex is IOException or InvalidDataException or UnauthorizedAccessException)
            {
                // one bad image is reported and the others are still processed; the exit code says some failed
                e.WriteLine($"grcn detect: {GrcnApp.Message(ex)}");
                failed++;
                continue;
            }
            var dets = detector.Detect(image);
            all.Add((path, dets));
            // small images are drawn twice as large so labels stay readable
            int longSide = Math.Max(image.Width, image.Height) < 256 ? 2 * Math.Max(image.Width, image.Height) : 0;
            var picture = DetectionPainter.Draw(image, null, dets, names, threshold, longSide);
            string name = Path.GetFileNameWithoutExtension(path), file = name + ".png";
            for (int k = 2; inputs.Contains(RealPath(Path.Combine(outDir, file))) || !used.Add(file); k++) file = $"{name}-{k}.png";
            string target = Path.Combine(outDir, file);
            File.WriteAllBytes(target, ImageFile.EncodePng(picture));
            var shown = dets.Where(d => d.Score >= threshold).OrderByDescending(d => d.Score).ToArray();
            o.WriteLine(string.Create(inv, $"{path}: {shown.Length} detections ≥ {threshold:0.00} → {target}"));
            foreach (var d in shown)
                o.WriteLine(string.Create(inv, $"  {names[d.Label],-16} {d.Score:0.000}  [{d.Box.X1:0.0}, {d.Box.Y1:0.0}, {d.Box.X2:0.0}, {d.Box.Y2:0.0}]"));
        }
        if (json)
        {
            string target = Path.Combine(outDir, "detections.json");
            if (inputs.Contains(RealPath(target)))
                throw new ArgumentException($"--json would write {target}, which is an input; choose another --out", "--out");
            using (var stream = File.Create(target))
            using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
            {
                w.WriteStartObject();
                w.WriteString("checkpoint", checkpoint);
                w.WriteStartArray("classes");
                foreach (var n in names) w.WriteStringValue(n);
                w.WriteEndArray();
                w.WriteStartArray("images");
                foreach (var (image, dets) in all)
                {
                    w.WriteStartObject();
                    w.WriteString("image", image);
                    w.WriteStartArray("detections");
                    foreach (var d in dets)
                    {
                        w.WriteStartObject();
                        w.WriteNumber("label", d.Label);
                        w.WriteString("name", names[d.Label]);
                        w.WriteNumber("score", Math.Round(d.Score, 6));
                        w.WriteStartArray("box");
                        foreach (var v in new[] { d.Box.X1, d.Box.Y1, d.Box.X2, d.Box.Y2 }) w.WriteNumberValue(Math.Round(v, 3));
                        w.WriteEndArray();
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            o.WriteLine($"wrote {target}");
        }
        if (failed > 0)
        {
            e.WriteLine($"grcn detect: {failed} of {images.Length} images could not be read (listed above)");
            return 2;
        }
        return 0;
    }
}
