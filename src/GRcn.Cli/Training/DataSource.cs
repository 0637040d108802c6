// The --data argument of grcn train / eval / compare: "shapes" (the built-in synthetic set,
// train split for training and test split for evaluation), "shapes-large" (the same shapes
// with COCO-like sizes on 320×240 images, ShapesOptions.Large), "voc:ROOT" (a Pascal VOC folder:
// ImageSets/Main/trainval.txt trains, test.txt evaluates) or "coco:DIR" (the usual COCO
// layout: DIR/annotations/instances_train*.json with images in DIR/train*/ trains,
// DIR/annotations/instances_val*.json with images in DIR/val*/ evaluates; the image folder is
// named like the JSON after "instances_", e.g. instances_val2017.json → DIR/val2017/).
using GRcn.Detection.Data;

namespace GRcn.Cli.Training;

/// <summary>Which data to train and evaluate on.</summary>
internal enum DataKind
{
    /// <summary>The synthetic shapes set.</summary>
    Shapes,

    /// <summary>The synthetic shapes with COCO-like object sizes on 320×240 images.</summary>
    ShapesLarge,

    /// <summary>A Pascal VOC folder.</summary>
    Voc,

    /// <summary>A COCO folder.</summary>
    Coco,
}

/// <summary>A parsed --data value.</summary>
internal sealed record DataSource(DataKind Kind, string? Path)
{
    /// <summary>The help text of --data.</summary>
    public const string Help =
        "shapes (built-in synthetic set: train split trains, test split evaluates), " +
        "shapes-large (the same shapes on 320×240 images with COCO-like sizes: 41 % under 32², 25 % over 96² pixels), " +
        "voc:ROOT (VOC folder with ImageSets/Main/trainval.txt to train and test.txt to evaluate), or " +
        "coco:DIR (DIR/annotations/instances_train*.json with images in DIR/train*/ to train, " +
        "DIR/annotations/instances_val*.json with images in DIR/val*/ to evaluate; e.g. instances_val2017.json → DIR/val2017/)";

    /// <summary>The built-in synthetic sets (their data needs no files).</summary>
    public bool IsShapes => Kind is DataKind.Shapes or DataKind.ShapesLarge;

    /// <summary>Parses "shapes", "shapes-large", "voc:PATH" or "coco:PATH".</summary>
    /// <exception cref="ArgumentException">Any other text.</exception>
    public static DataSource Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Equals("shapes", StringComparison.OrdinalIgnoreCase)) return new DataSource(DataKind.Shapes, null);
        if (text.Equals("shapes-large", StringComparison.OrdinalIgnoreCase)) return new DataSource(DataKind.ShapesLarge, null);
        int colon = text.IndexOf(':');
        if (colon > 0 && colon < text.Length - 1)
        {
            string kind = text[..colon].ToLowerInvariant(), path = text[(colon + 1)..];
            if (kind == "voc") return new DataSource(DataKind.Voc, path);
            if (kind == "coco") return new DataSource(DataKind.Coco, path);
        }
        throw new ArgumentException($"--data '{text}' is not one of shapes, shapes-large, voc:PATH, coco:PATH", "--data");
    }

    /// <summary>The text form, as given on the command line.</summary>
    public override string ToString() => Kind switch
    {
        DataKind.Shapes => "shapes",
        DataKind.ShapesLarge => "shapes-large",
        DataKind.Voc => "voc:" + Path,
        _ => "coco:" + Path,
    };

    /// <summary>The training set.</summary>
    /// <param name="shapesCount">Images of the synthetic train split.</param>
    public IDetectionDataset OpenTrain(int shapesCount) => Kind switch
    {
        DataKind.Shapes => new ShapesDataset(new ShapesOptions { Count = shapesCount, Split = ShapesSplit.Train }),
        DataKind.ShapesLarge => new ShapesDataset(ShapesOptions.Large with { Count = shapesCount, Split = ShapesSplit.Train }),
        DataKind.Voc => new VocDataset(Path!, "trainval"),
        _ => OpenCoco("train"),
    };

    /// <summary>The evaluation set.</summary>
    /// <param name="shapesCount">Images of the synthetic test split.</param>
    public IDetectionDataset OpenTest(int shapesCount) => Kind switch
    {
        DataKind.Shapes => new ShapesDataset(new ShapesOptions { Count = shapesCount, Split = ShapesSplit.Test }),
        DataKind.ShapesLarge => new ShapesDataset(ShapesOptions.Large with { Count = shapesCount, Split = ShapesSplit.Test }),
        DataKind.Voc => new VocDataset(Path!, "test"),
        _ => OpenCoco("val"),
    };

    private CocoDataset OpenCoco(string split)
    {
        string annotations = System.IO.Path.Combine(Path!, "annotations");
        if (!Directory.Exists(annotations)) throw new DirectoryNotFoundException($"COCO folder {Path} has no annotations/ folder");
        var files = Directory.GetFiles(annotations, $"instances_{split}*.json");
        if (files.Length != 1)
            throw new FileNotFoundException(files.Length == 0
                ? $"{annotations}: no instances_{split}*.json"
                : $"{annotations}: several instances_{split}*.json ({string.Join(", ", files.Select(System.IO.Path.GetFileName))}); keep one");
        string name = System.IO.Path.GetFileNameWithoutExtension(files[0])["instances_".Length..];
        string images = System.IO.Path.Combine(Path!, name);
        if (!Directory.Exists(images)) throw new DirectoryNotFoundException($"COCO image folder not found: {images} (named after {System.IO.Path.GetFileName(files[0])})");
        return new CocoDataset(files[0], images);
    }
}
