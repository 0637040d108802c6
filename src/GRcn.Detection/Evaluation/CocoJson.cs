// COCO JSON files for bbox evaluation: reading a ground-truth file (images / annotations /
// categories), reading and writing a results file ([{image_id, category_id, bbox: [x, y, w, h],
// score}]), and evaluating one against the other as pycocotools' COCO + loadRes + COCOeval do:
// * images: sorted unique ids (numbers or strings, not mixed); categories: sorted by id, each
//   category one class (label = its position);
// * annotations of images or categories the file does not list are dropped (pycocotools'
//   getAnnIds filters them out); 'iscrowd' missing → 0; 'area' missing → w·h (pycocotools would
//   fail; we are lenient); 'ignore' is not read (pycocotools overwrites it with iscrowd);
//   duplicate annotation ids are an error;
// * results: every image_id must be a ground-truth image (pycocotools' loadRes assertion);
//   results of a category the ground truth does not list are dropped and counted; area = w·h;
//   an empty results array evaluates to zero AP/AR (pycocotools' loadRes fails on it).
// Files are parsed whole with System.Text.Json's JsonDocument. Errors are InvalidDataException
// naming the file, the JSON path of the offending value and the problem.
using System.Globalization;
using System.Text.Json;
using GRcn.Detection.Data;

namespace GRcn.Detection.Evaluation;

/// <summary>A COCO image id: an integer (the COCO datasets) or a string (some converted datasets).</summary>
public readonly record struct CocoImageId : IComparable<CocoImageId>
{
    private CocoImageId(long number, string? text)
    {
        Number = number;
        Text = text;
    }

    /// <summary>The integer id (0 when <see cref="IsText"/>).</summary>
    public long Number { get; }

    /// <summary>The string id, or null for an integer id.</summary>
    public string? Text { get; }

    /// <summary>Whether the id is a string.</summary>
    public bool IsText => Text is not null;

    /// <summary>An integer id.</summary>
    public static CocoImageId FromNumber(long id) => new(id, null);

    /// <summary>A string id.</summary>
    public static CocoImageId FromText(string id) => new(0, id ?? throw new ArgumentNullException(nameof(id)));

    /// <summary>An integer id.</summary>
    public static implicit operator CocoImageId(long id) => FromNumber(id);

    /// <summary>A string id.</summary>
    public static implicit operator CocoImageId(string id) => FromText(id);

    /// <summary>Integers numerically, strings ordinally (by UTF-16 code unit), integers before strings.</summary>
    public int CompareTo(CocoImageId other) =>
        (IsText, other.IsText) switch
        {
            (false, false) => Number.CompareTo(other.Number),
            (true, true) => string.CompareOrdinal(Text, other.Text),
            (false, true) => -1,
            _ => 1,
        };

    /// <summary>The id as JSON would show it.</summary>
    public override string ToString() => Text is null ? Number.ToString(CultureInfo.InvariantCulture) : $"\"{Text}\"";

    internal void WriteTo(Utf8JsonWriter w)
    {
        if (Text is null) w.WriteNumberValue(Number);
        else w.WriteStringValue(Text);
    }
}

/// <summary>A COCO category.</summary>
public sealed record CocoCategory(long Id, string Name);

/// <summary>One entry of a COCO results file: a box [x, y, w, h] in pixels with its score.</summary>
public readonly record struct CocoResult(CocoImageId ImageId, long CategoryId, double X, double Y, double Width, double Height, double Score)
{
    /// <summary>
    /// The result for <paramref name="detection"/> on image <paramref name="imageId"/>: x = X1,
    /// w = X2 − X1 (in double), category id = <paramref name="categoryIds"/>[label].
    /// </summary>
    public static CocoResult FromDetection(CocoImageId imageId, DetectedObject detection, IReadOnlyList<long> categoryIds)
    {
        ArgumentNullException.ThrowIfNull(categoryIds);
        if ((uint)detection.Label >= (uint)categoryIds.Count)
            throw new ArgumentException($"detection label {detection.Label} has no category id (expected 0..{categoryIds.Count - 1})", nameof(detection));
        var b = detection.Box;
        return new CocoResult(imageId, categoryIds[detection.Label], b.X1, b.Y1, (double)b.X2 - b.X1, (double)b.Y2 - b.Y1, detection.Score);
    }
}

/// <summary>A loaded COCO ground-truth file, ready for evaluation.</summary>
public sealed class CocoGroundTruth
{
    private readonly Dictionary<CocoImageId, int> _imageIndex;
    private readonly Dictionary<long, int> _categoryIndex;
    private readonly CocoGtEntry[][] _objects;

    internal CocoGroundTruth(string source, CocoImageId[] imageIds, CocoCategory[] categories, CocoGtEntry[][] objects, int droppedAnnotations)
    {
        Source = source;
        ImageIds = imageIds;
        Categories = categories;
        _objects = objects;
        DroppedAnnotations = droppedAnnotations;
        _imageIndex = new Dictionary<CocoImageId, int>(imageIds.Length);
        for (int i = 0; i < imageIds.Length; i++) _imageIndex[imageIds[i]] = i;
        _categoryIndex = new Dictionary<long, int>(categories.Length);
        for (int k = 0; k < categories.Length; k++) _categoryIndex[categories[k].Id] = k;
        AnnotationCount = objects.Sum(o => o.Length);
    }

    /// <summary>The file (or stream name) it was read from.</summary>
    public string Source { get; }

    /// <summary>Image ids, sorted and unique (pycocotools' imgIds order).</summary>
    public IReadOnlyList<CocoImageId> ImageIds { get; }

    /// <summary>Categories sorted by id; a category's position is its class label.</summary>
    public IReadOnlyList<CocoCategory> Categories { get; }

    /// <summary>Annotations kept for evaluation.</summary>
    public int AnnotationCount { get; }

    /// <summary>Annotations dropped because their image or category is not listed.</summary>
    public int DroppedAnnotations { get; }

    /// <summary>Position of <paramref name="id"/> in <see cref="ImageIds"/>, or −1.</summary>
    public int IndexOfImage(CocoImageId id) => _imageIndex.TryGetValue(id, out int i) ? i : -1;

    /// <summary>Label of category <paramref name="id"/>, or −1.</summary>
    public int IndexOfCategory(long id) => _categoryIndex.TryGetValue(id, out int k) ? k : -1;

    internal ReadOnlySpan<CocoGtEntry> ObjectsOf(int image) => _objects[image];
}

/// <summary>Reading, writing and evaluating COCO JSON ground truth and bbox results.</summary>
public static class CocoJson
{
    private static readonly JsonDocumentOptions s_docOptions = new() { MaxDepth = 256 };

    /// <summary>Reads a COCO ground-truth file.</summary>
    public static CocoGroundTruth ReadGroundTruth(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var f = OpenRead(path);
        return ReadGroundTruth(f, path);
    }

    /// <summary>Reads COCO ground truth from <paramref name="stream"/>; <paramref name="source"/> names it in errors.</summary>
    public static CocoGroundTruth ReadGroundTruth(Stream stream, string source)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(source);
        using var doc = Parse(stream, source);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
            throw Bad(source, "$", $"expected a JSON object with images, annotations and categories, got {root.ValueKind}");

        // images → sorted unique ids
        var images = RequireArray(root, "images", source);
        var ids = new List<CocoImageId>(images.GetArrayLength());
        int i = 0;
        bool? text = null;
        foreach (var im in images.EnumerateArray())
        {
            string where = $"images[{i++}]";
            if (im.ValueKind != JsonValueKind.Object) throw Bad(source, where, "expected an object");
            if (!im.TryGetProperty("id", out var idEl)) throw Bad(source, where, "has no \"id\"");
            var id = ReadImageId(idEl, source, where + ".id");
            text ??= id.IsText;
            if (text != id.IsText) throw Bad(source, where + ".id", "mixes string and integer image ids");
            ids.Add(id);
        }
        ids.Sort();
        var imageIds = new List<CocoImageId>(ids.Count);
        foreach (var id in ids)
            if (imageIds.Count == 0 || imageIds[^1] != id) imageIds.Add(id);
        var imageIndex = new Dictionary<CocoImageId, int>(imageIds.Count);
        for (int j = 0; j < imageIds.Count; j++) imageIndex[imageIds[j]] = j;

        // categories → sorted by id
        var catsEl = RequireArray(root, "categories", source);
        var cats = new List<CocoCategory>(catsEl.GetArrayLength());
        var seenCat = new HashSet<long>();
        i = 0;
        foreach (var c in catsEl.EnumerateArray())
        {
            string where = $"categories[{i++}]";
            if (c.ValueKind != JsonValueKind.Object) throw Bad(source, where, "expected an object");
            if (!c.TryGetProperty("id", out var idEl)) throw Bad(source, where, "has no \"id\"");
            long id = ReadInteger(idEl, source, where + ".id");
            if (!seenCat.Add(id)) throw Bad(source, where + ".id", $"category id {id} is listed twice");
            string name = c.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString()! : id.ToString(CultureInfo.InvariantCulture);
            cats.Add(new CocoCategory(id, name));
        }
        if (cats.Count == 0) throw Bad(source, "categories", "is empty; at least one category is needed");
        cats.Sort((a, b) => a.Id.CompareTo(b.Id));
        var catIndex = new Dictionary<long, int>(cats.Count);
        for (int k = 0; k < cats.Count; k++) catIndex[cats[k].Id] = k;

        // annotations, in file order, bucketed per image
        var perImage = new List<CocoGtEntry>[imageIds.Count];
        for (int j = 0; j < perImage.Length; j++) perImage[j] = [];
        int dropped = 0;
        if (root.TryGetProperty("annotations", out var anns) && anns.ValueKind != JsonValueKind.Null)
        {
            if (anns.ValueKind != JsonValueKind.Array) throw Bad(source, "annotations", $"expected an array, got {anns.ValueKind}");
            var seenAnn = new HashSet<long>();
            i = 0;
            foreach (var a in anns.EnumerateArray())
            {
                string where = $"annotations[{i++}]";
                if (a.ValueKind != JsonValueKind.Object) throw Bad(source, where, "expected an object");
                bool idIsZero = false;
                if (a.TryGetProperty("id", out var annId))
                {
                    long id = ReadInteger(annId, source, where + ".id");
                    if (!seenAnn.Add(id)) throw Bad(source, where + ".id", $"annotation id {id} is used twice");
                    idIsZero = id == 0;
                }
                var imageId = ReadImageId(Require(a, "image_id", source, where), source, where + ".image_id");
                long catId = ReadInteger(Require(a, "category_id", source, where), source, where + ".category_id");
                var (x, y, w, h) = ReadBbox(Require(a, "bbox", source, where), source, where + ".bbox");
                double area = a.TryGetProperty("area", out var areaEl) ? ReadNumber(areaEl, source, where + ".area") : w * h;
                bool crowd = a.TryGetProperty("iscrowd", out var crowdEl) && ReadFlag(crowdEl, source, where + ".iscrowd");
                if (!imageIndex.TryGetValue(imageId, out int img) || !catIndex.TryGetValue(catId, out int k))
                {
                    dropped++;
                    continue;
                }
                perImage[img].Add(new CocoGtEntry(x, y, w, h, area, k, crowd, idIsZero));
            }
        }
        return new CocoGroundTruth(source, [.. imageIds], [.. cats], [.. perImage.Select(l => l.ToArray())], dropped);
    }

    /// <summary>Reads a COCO results file.</summary>
    public static IReadOnlyList<CocoResult> ReadResults(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var f = OpenRead(path);
        return ReadResults(f, path);
    }

    /// <summary>Reads COCO bbox results from <paramref name="stream"/>; <paramref name="source"/> names it in errors.</summary>
    public static IReadOnlyList<CocoResult> ReadResults(Stream stream, string source)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(source);
        using var doc = Parse(stream, source);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Array)
            throw Bad(source, "$", $"expected a JSON array of {{image_id, category_id, bbox, score}} objects, got {root.ValueKind}");
        var list = new List<CocoResult>(root.GetArrayLength());
        int i = 0;
        foreach (var r in root.EnumerateArray())
        {
            string where = $"[{i++}]";
            if (r.ValueKind != JsonValueKind.Object) throw Bad(source, where, "expected an object");
            var imageId = ReadImageId(Require(r, "image_id", source, where), source, where + ".image_id");
            long catId = ReadInteger(Require(r, "category_id", source, where), source, where + ".category_id");
            var (x, y, w, h) = ReadBbox(Require(r, "bbox", source, where), source, where + ".bbox");
            double score = ReadNumber(Require(r, "score", source, where), source, where + ".score");
            list.Add(new CocoResult(imageId, catId, x, y, w, h, score));
        }
        return list;
    }

    /// <summary>Writes a COCO results file.</summary>
    public static void WriteResults(string path, IEnumerable<CocoResult> results)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var f = File.Create(path);
        WriteResults(f, results);
    }

    /// <summary>
    /// Writes <paramref name="results"/> as a COCO results array. Numbers are written as the
    /// shortest text that reads back as the same double, so evaluating the file gives exactly the
    /// numbers of evaluating in memory.
    /// </summary>
    public static void WriteResults(Stream stream, IEnumerable<CocoResult> results)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(results);
        using var w = new Utf8JsonWriter(stream);
        w.WriteStartArray();
        int i = 0;
        foreach (var r in results)
        {
            if (!double.IsFinite(r.X) || !double.IsFinite(r.Y) || !double.IsFinite(r.Width) || !double.IsFinite(r.Height) || !double.IsFinite(r.Score))
                throw new ArgumentException($"results[{i}] = {r} has a non-finite value", nameof(results));
            w.WriteStartObject();
            w.WritePropertyName("image_id");
            r.ImageId.WriteTo(w);
            w.WriteNumber("category_id", r.CategoryId);
            w.WriteStartArray("bbox");
            w.WriteNumberValue(r.X);
            w.WriteNumberValue(r.Y);
            w.WriteNumberValue(r.Width);
            w.WriteNumberValue(r.Height);
            w.WriteEndArray();
            w.WriteNumber("score", r.Score);
            w.WriteEndObject();
            i++;
            if (w.BytesPending > 1 << 16) w.Flush();
        }
        w.WriteEndArray();
    }

    /// <summary>
    /// Writes a COCO ground-truth file for images with <see cref="ObjectAnnotation"/>s: label l is
    /// category <paramref name="categories"/>[l]; annotation ids run 1..N; bbox = [X1, Y1, X2 − X1,
    /// Y2 − Y1], area = w·h, iscrowd from <see cref="ObjectAnnotation.IsCrowd"/> (difficult is not a
    /// COCO notion and is not written).
    /// </summary>
    public static void WriteGroundTruth(Stream stream, IReadOnlyList<CocoCategory> categories,
        IEnumerable<(CocoImageId Id, IReadOnlyList<ObjectAnnotation> Objects)> images)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(categories);
        ArgumentNullException.ThrowIfNull(images);
        var list = images.ToList();
        using var w = new Utf8JsonWriter(stream);
        w.WriteStartObject();
        w.WriteStartArray("images");
        foreach (var (id, _) in list)
        {
            w.WriteStartObject();
            w.WritePropertyName("id");
            id.WriteTo(w);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("annotations");
        long annId = 1;
        foreach (var (id, objects) in list)
        {
            ArgumentNullException.ThrowIfNull(objects, nameof(images));
            foreach (var o in objects)
            {
                if ((uint)o.Label >= (uint)categories.Count)
                    throw new ArgumentException($"image {id}: label {o.Label} has no category (expected 0..{categories.Count - 1})", nameof(images));
                double bw = (double)o.Box.X2 - o.Box.X1, bh = (double)o.Box.Y2 - o.Box.Y1;
                w.WriteStartObject();
                w.WriteNumber("id", annId++);
                w.WritePropertyName("image_id");
                id.WriteTo(w);
                w.WriteNumber("category_id", categories[o.Label].Id);
                w.WriteStartArray("bbox");
                w.WriteNumberValue((double)o.Box.X1);
                w.WriteNumberValue((double)o.Box.Y1);
                w.WriteNumberValue(bw);
                w.WriteNumberValue(bh);
                w.WriteEndArray();
                w.WriteNumber("area", bw * bh);
                w.WriteNumber("iscrowd", o.IsCrowd ? 1 : 0);
                w.WriteEndObject();
                if (w.BytesPending > 1 << 16) w.Flush();
            }
        }
        w.WriteEndArray();
        w.WriteStartArray("categories");
        foreach (var c in categories)
        {
            w.WriteStartObject();
            w.WriteNumber("id", c.Id);
            w.WriteString("name", c.Name);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>
    /// Evaluates <paramref name="results"/> against <paramref name="groundTruth"/> (pycocotools'
    /// loadRes + COCOeval bbox). A result on an image the ground truth does not list is an error
    /// naming <paramref name="resultsSource"/>; a result of an unlisted category is dropped and
    /// counted in <see cref="CocoEvaluationResult.DroppedDetections"/>.
    /// </summary>
    public static CocoEvaluationResult Evaluate(CocoGroundTruth groundTruth, IReadOnlyList<CocoResult> results, string resultsSource = "results")
    {
        ArgumentNullException.ThrowIfNull(groundTruth);
        ArgumentNullException.ThrowIfNull(results);
        int n = groundTruth.ImageIds.Count;
        var perImage = new List<CocoDtEntry>[n];
        int dropped = 0;
        for (int i = 0; i < results.Count; i++)
        {
            var r = results[i];
            int img = groundTruth.IndexOfImage(r.ImageId);
            if (img < 0)
                throw new InvalidDataException($"{resultsSource}: [{i}].image_id {r.ImageId} is not an image of the ground truth {groundTruth.Source} (results do not correspond to the ground-truth set)");
            if (!double.IsFinite(r.X) || !double.IsFinite(r.Y) || !double.IsFinite(r.Width) || !double.IsFinite(r.Height) || !double.IsFinite(r.Score))
                throw new InvalidDataException($"{resultsSource}: [{i}] has a non-finite bbox or score");
            int k = groundTruth.IndexOfCategory(r.CategoryId);
            if (k < 0)
            {
                dropped++;
                continue;
            }
            (perImage[img] ??= []).Add(new CocoDtEntry(r.X, r.Y, r.Width, r.Height, r.Score, k));
        }
        var ev = new CocoEvaluator([.. groundTruth.Categories.Select(c => c.Name)], [.. groundTruth.Categories.Select(c => c.Id)]);
        for (int img = 0; img < n; img++)
            ev.AddEntries(groundTruth.ObjectsOf(img), perImage[img] is { } l ? System.Runtime.InteropServices.CollectionsMarshal.AsSpan(l) : []);
        return ev.Evaluate(dropped);
    }

    /// <summary>Reads both files and evaluates (the <c>grcn eval --coco-gt FILE --coco-results FILE</c> path).</summary>
    public static CocoEvaluationResult EvaluateFiles(string groundTruthPath, string resultsPath)
    {
        var gt = ReadGroundTruth(groundTruthPath);
        var results = ReadResults(resultsPath);
        return Evaluate(gt, results, resultsPath);
    }

    private static Stream OpenRead(string path)
    {
        try
        {
            return new JsonInputStream(File.OpenRead(path), path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new FileNotFoundException($"{path}: no such file", path, e);
        }
    }

    private static JsonDocument Parse(Stream stream, string source)
    {
        try
        {
            return JsonDocument.Parse(stream, s_docOptions);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not valid JSON ({e.Message})", e);
        }
    }

    private static InvalidDataException Bad(string source, string where, string problem) => new($"{source}: {where} {problem}");

    private static JsonElement RequireArray(JsonElement obj, string name, string source)
    {
        if (!obj.TryGetProperty(name, out var el)) throw Bad(source, "$", $"has no \"{name}\" array");
        if (el.ValueKind != JsonValueKind.Array) throw Bad(source, name, $"expected an array, got {el.ValueKind}");
        return el;
    }

    private static JsonElement Require(JsonElement obj, string name, string source, string where) =>
        obj.TryGetProperty(name, out var el) ? el : throw Bad(source, where, $"has no \"{name}\"");

    private static double ReadNumber(JsonElement el, string source, string where)
    {
        if (el.ValueKind != JsonValueKind.Number) throw Bad(source, where, $"expected a number, got {el.ValueKind}");
        double v = el.GetDouble();
        if (!double.IsFinite(v)) throw Bad(source, where, $"is not finite ({el.GetRawText()})");
        return v;
    }

    private static long ReadInteger(JsonElement el, string source, string where)
    {
        if (el.ValueKind == JsonValueKind.Number)
        {
            if (el.TryGetInt64(out long v)) return v;
            // 3.0 is the integer 3 (Python's json reads it as a float equal to 3)
            double d = el.GetDouble();
            if (double.IsFinite(d) && Math.Floor(d) == d && Math.Abs(d) < 9.2e18) return (long)d;
        }
        throw Bad(source, where, $"expected an integer, got {el.GetRawText()}");
    }

    private static CocoImageId ReadImageId(JsonElement el, string source, string where) =>
        el.ValueKind == JsonValueKind.String ? CocoImageId.FromText(el.GetString()!) : CocoImageId.FromNumber(ReadInteger(el, source, where));

    private static bool ReadFlag(JsonElement el, string source, string where) => el.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False or JsonValueKind.Null => false,
        JsonValueKind.Number => el.GetDouble() != 0,
        _ => throw Bad(source, where, $"expected 0, 1 or a boolean, got {el.GetRawText()}"),
    };

    private static (double X, double Y, double W, double H) ReadBbox(JsonElement el, string source, string where)
    {
        if (el.ValueKind != JsonValueKind.Array || el.GetArrayLength() != 4)
            throw Bad(source, where, $"expected [x, y, w, h] (4 numbers), got {Truncate(el.GetRawText())}");
        return (ReadNumber(el[0], source, where + "[0]"), ReadNumber(el[1], source, where + "[1]"),
                ReadNumber(el[2], source, where + "[2]"), ReadNumber(el[3], source, where + "[3]"));
    }

    private static string Truncate(string s) => s.Length <= 60 ? s : s[..60] + "…";
}
