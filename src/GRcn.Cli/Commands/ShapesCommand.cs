// grcn shapes export: writes images of the built-in synthetic shapes set as PNG files (the test
// split that grcn train evaluates, by default its first N images) with their ground truth as a
// COCO file, so that grcn detect has something to run on. Nothing is ever overwritten: when any
// target file exists the command writes nothing and exits 2 naming it; each file is created new.
using System.CommandLine;
using System.Globalization;
using GRcn.Detection.Data;
using GRcn.Detection.Evaluation;

namespace GRcn.Cli.Commands;

internal static class ShapesCommand
{
    /// <summary>File name (no extension) of image <paramref name="index"/> of <paramref name="split"/>: "shapes-test-0007".</summary>
    public static string ImageName(ShapesSplit split, int index) =>
        string.Create(CultureInfo.InvariantCulture, $"shapes-{split.ToString().ToLowerInvariant()}-{index:D4}");

    public const string GroundTruthFile = "ground-truth.json";

    public static Command Create()
    {
        var count = new Argument<int>("COUNT") { Description = "Number of images to write" };
        var output = new Option<string>("--out") { Description = "Folder to write into (created if missing; existing files are never overwritten)", Required = true };
        var split = new Option<string>("--split") { Description = "test (the images grcn train evaluates) or train", DefaultValueFactory = _ => "test" };
        var first = new Option<int>("--first") { Description = "Index of the first image", DefaultValueFactory = _ => 0 };
        var export = new Command("export", "Write synthetic shapes images as PNG files, with their ground truth in OUT/ground-truth.json (COCO format)")
        {
            count, output, split, first,
        };
        export.SetAction(p =>
        {
            var o = p.InvocationConfiguration.Output;
            var e = p.InvocationConfiguration.Error;
            try
            {
                return Export(p.GetValue(count), p.GetValue(output)!, p.GetValue(split)!, p.GetValue(first), o);
            }
            catch (Exception ex) when (ex is ArgumentException or IOException or UnauthorizedAccessException)
            {
                e.WriteLine($"grcn shapes export: {ex.Message}");
                return 2;
            }
        });
        return new Command("shapes", "The built-in synthetic shapes data set (128×128 images of rectangles, ellipses, triangles, pluses and rings)") { export };
    }

    private static int Export(int count, string outDir, string splitName, int first, TextWriter o)
    {
        if (count < 1) throw new ArgumentException($"COUNT must be at least 1; got {count}");
        if (first < 0) throw new ArgumentException($"--first must be ≥ 0; got {first}");
        if (string.IsNullOrWhiteSpace(outDir)) throw new ArgumentException("--out must name a folder");
        var split = splitName switch
        {
            "test" => ShapesSplit.Test,
            "train" => ShapesSplit.Train,
            _ => throw new ArgumentException($"--split must be test or train; got '{splitName}'"),
        };
        // the images are a pure function of (split, index): the same as grcn train's for any count that covers them
        var data = new ShapesDataset(new ShapesOptions { Count = checked(first + count), Split = split });
        var names = Enumerable.Range(first, count).Select(i => ImageName(split, i)).ToArray();
        var targets = names.Select(n => Path.Combine(outDir, n + ".png")).Append(Path.Combine(outDir, GroundTruthFile)).ToArray();
        foreach (var t in targets)
            if (File.Exists(t) || Directory.Exists(t))
                throw new IOException($"{t} exists; nothing was written (choose another --out or remove the files)");
        Directory.CreateDirectory(outDir);
        var truth = new List<(CocoImageId, IReadOnlyList<ObjectAnnotation>)>(count);
        for (int k = 0; k < count; k++)
        {
            var sample = data.Load(first + k);
            WriteNew(targets[k], s => s.Write(ImageFile.EncodePng(sample.Image)));
            truth.Add((names[k], sample.Objects));
        }
        var categories = data.ClassNames.Select((n, i) => new CocoCategory(i + 1, n)).ToArray();
        WriteNew(targets[^1], s => CocoJson.WriteGroundTruth(s, categories, truth));
        o.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote {count} {splitName} images ({names[0]}.png … {names[^1]}.png) and {GroundTruthFile} to {outDir}"));
        return 0;
    }

    /// <summary>Creates <paramref name="path"/> (failing if it appeared meanwhile) and writes it.</summary>
    private static void WriteNew(string path, Action<Stream> write)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        write(stream);
    }
}
