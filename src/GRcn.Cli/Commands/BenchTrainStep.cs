// grcn bench train-step: times one training step (forward, losses, backward, SGD update) and
// one inference of a detector variant on a synthetic image batch, median and min over the
// timed repeats after warm-up; bench/compare_train_step.sh runs torchvision's Faster R-CNN on
// the same backbone, widths, image size and threads in the same run and prints the ratio.
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using GRcn.Detection.Model;
using GRcn.Detection.Training;
using GRcn.Detection.Variants;
using GRcn.Kernels;

namespace GRcn.Cli.Commands;

internal static class BenchTrainStep
{
    public static Command Create()
    {
        var variant = new Option<string>("--variant") { Description = "Variant name (see docs/variants.md)", DefaultValueFactory = _ => "faster-rcnn+roi-align" };
        var backbone = new Option<string>("--backbone") { Description = "vgg16, resnet50 or resnet101", DefaultValueFactory = _ => "vgg16" };
        var width = new Option<double>("--width") { Description = "Backbone width multiplier", DefaultValueFactory = _ => 0.25 };
        var size = new Option<int>("--size") { Description = "Image height in pixels (and width unless --image-width is given)", DefaultValueFactory = _ => 320 };
        var imageWidth = new Option<int?>("--image-width") { Description = "Image width in pixels (default: --size; 1000 with --size 600 gives the paper's 600×1000)" };
        var batch = new Option<int>("--batch") { Description = "Images per step", DefaultValueFactory = _ => 1 };
        var anchors = new Option<float[]>("--anchors") { Description = "Anchor sizes", DefaultValueFactory = _ => [32f, 64f, 128f], AllowMultipleArgumentsPerToken = true };
        var device = DeviceOption.Create();
        var threads = new Option<int?>("--threads") { Description = "CPU threads (default: all logical cores)" };
        var warmup = new Option<int>("--warmup") { Description = "Untimed iterations first", DefaultValueFactory = _ => 2 };
        var repeats = new Option<int>("--repeats") { Description = "Timed iterations", DefaultValueFactory = _ => 5 };
        var json = new Option<bool>("--json") { Description = "Print one JSON line instead of text" };
        var command = new Command("train-step", "Time one training step and one inference of a detector variant")
        {
            variant, backbone, width, size, imageWidth, batch, anchors, device, threads, warmup, repeats, json,
        };
        command.SetAction(p => Run(p.GetValue(variant)!, p.GetValue(backbone)!, p.GetValue(width), p.GetValue(size), p.GetValue(imageWidth) ?? p.GetValue(size), p.GetValue(batch),
            p.GetValue(anchors)!, p.GetValue(device)!, p.GetValue(threads), p.GetValue(warmup), p.GetValue(repeats), p.GetValue(json),
            p.InvocationConfiguration.Output, p.InvocationConfiguration.Error));
        return command;
    }

    private static int Run(string variant, string backboneName, double width, int size, int imageWidth, int batchSize, float[] anchors, string deviceName,
        int? threads, int warmup, int repeats, bool json, TextWriter output, TextWriter error)
    {
        Detector det;
        try
        {
            if (size < 32) throw new ArgumentException($"--size must be at least 32; got {size}");
            if (imageWidth < 32) throw new ArgumentException($"--image-width must be at least 32; got {imageWidth}");
            if (batchSize < 1 || repeats < 1 || warmup < 0) throw new ArgumentException("--batch and --repeats must be at least 1, --warmup at least 0");
            var device = DeviceOption.Open(deviceName);
            DeviceOption.SetThreads(device, threads);
            var config = VariantCatalog.Create(variant, VariantCatalog.ParseBackbone(backboneName), ["a", "b", "c", "d", "e"], width);
            config = config with
            {
                Rpn = config.Rpn with { AnchorSizes = anchors },
                Input = config.Input with { MinSize = Math.Min(size, imageWidth), MaxSize = Math.Max(size, imageWidth) },
            };
            det = Detector.Create(config, device, seed: 0, new TrainingOptions { LearningRate = 1e-3 });
        }
        catch (Exception e) when (e is ArgumentException or PlatformNotSupportedException)
        {
            error.WriteLine($"grcn bench train-step: {GrcnApp.Message(e)}");
            return 2;
        }
        using (det)
        {
            var rng = new Random(0);
            float s = size, sw = imageWidth;
            var batch = Enumerable.Range(0, batchSize).Select(_ =>
            {
                var px = new float[3 * size * imageWidth];
                for (int i = 0; i < px.Length; i++) px[i] = (float)rng.NextDouble();
                return new PreparedImage(px, size, imageWidth, size, imageWidth,
                    [0.1f * sw, 0.1f * s, 0.4f * sw, 0.5f * s, 0.5f * sw, 0.2f * s, 0.9f * sw, 0.6f * s, 0.3f * sw, 0.6f * s, 0.6f * sw, 0.95f * s], [0, 1, 2]);
            }).ToArray();
            // each timed call ends when the device has finished its work (a GPU queues kernels)
            var train = Time(() => { det.TrainStep(batch); det.Device.Synchronize(); }, warmup, repeats);
            var infer = Time(() => { det.Detect(batch); det.Device.Synchronize(); }, warmup, repeats);
            var inv = CultureInfo.InvariantCulture;
            if (json)
                output.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["engine"] = "grcn",
                    ["variant"] = variant,
                    ["backbone"] = backboneName,
                    ["width"] = width,
                    ["size"] = size,
                    ["image_width"] = imageWidth,
                    ["batch"] = batchSize,
                    ["device"] = det.Device.Name,
                    ["threads"] = threads ?? Environment.ProcessorCount,
                    ["train_step_ms"] = train.Median,
                    ["train_step_min_ms"] = train.Min,
                    ["inference_ms"] = infer.Median,
                    ["inference_min_ms"] = infer.Min,
                }));
            else
            {
                output.WriteLine(string.Create(inv, $"{variant} on {backboneName} ×{width}, {size}×{imageWidth}, batch {batchSize}, {det.Device.Name}"));
                output.WriteLine(string.Create(inv, $"  train step  median {train.Median,9:F1} ms   min {train.Min,9:F1} ms"));
                output.WriteLine(string.Create(inv, $"  inference   median {infer.Median,9:F1} ms   min {infer.Min,9:F1} ms"));
            }
        }
        return 0;
    }

    private static (double Median, double Min) Time(Action action, int warmup, int repeats)
    {
        for (int i = 0; i < warmup; i++) action();
        var times = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            action();
            times[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        Array.Sort(times);
        return (times[repeats / 2], times[0]);
    }
}
