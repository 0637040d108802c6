// COCO detection sets: one instances JSON (images, annotations, categories) and an image
// folder. Parsed once with System.Text.Json when the set is opened, so errors surface early.
// Category ids map to contiguous 0-based labels in ascending id order (COCO's 80 classes with
// ids 1..90 become labels 0..79), class names come from the categories. Images are ordered by
// ascending id (torchvision's CocoDetection), annotations per image in file order. bbox
// [x, y, w, h] becomes Box(x, y, x + w, y + h), unclipped; iscrowd → IsCrowd and area → Area
// (what COCO evaluation needs). Load decodes the image on the calling thread; thread-safe.
using System.Globalization;
using System.Text.Json;

namespace GRcn.Detection.Data;

/// <summary>A COCO-format detection set; see the file comment.</summary>
public sealed class CocoDataset : IDetectionDataset
{
    private readonly long[] _imageIds;
    private readonly string[] _imagePaths;
    private readonly (int Width, int Height)[] _sizes;
    private readonly ObjectAnnotation[][] _objects;
    private readonly long[] _categoryIds;
    private readonly Dictionary<long, int> _labelOfCategory;

    /// <summary>Parses <paramref name="annotationFile"/>; images are read from <paramref name="imageDirectory"/>/file_name.</summary>
    /// <exception cref="FileNotFoundException">The JSON file is missing.</exception>
    /// <exception cref="InvalidDataException">Malformed JSON, a missing or mistyped field, a reference to an unknown image or category, or a bad box; the message names the file and the entry.</exception>
    public CocoDataset(string annotationFile, string imageDirectory)
    {
        ArgumentException.ThrowIfNullOrEmpty(annotationFile);
        ArgumentException.ThrowIfNullOrEmpty(imageDirectory);
        if (!File.Exists(annotationFile)) throw new FileNotFoundException($"COCO annotation file not found: {annotationFile}", annotationFile);
        AnnotationFile = annotationFile;
        ImageDirectory = imageDirectory;
        string path = annotationFile;

        JsonDocument doc;
        try
        {
            using var stream = new JsonInputStream(File.OpenRead(path), path);
            doc = JsonDocument.Parse(stream);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: malformed JSON: {e.Message}", e);
        }
        using (doc)
        {
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Bad(path, $"the top level is a JSON {root.ValueKind}, expected an object");

            // Categories → labels in ascending id order.
            var categories = new List<(long Id, string Name)>();
            var seenCategories = new HashSet<long>();
            int ci = 0;
            foreach (JsonElement c in RequireArray(root, "categories", path).EnumerateArray())
            {
                string where = $"categories[{ci++}]";
                long id = GetLong(c, "id", path, where);
                string name = GetString(c, "name", path, where);
                if (!seenCategories.Add(id)) throw Bad(path, $"{where}: category id {id} appears twice");
                categories.Add((id, name));
            }
            if (categories.Count == 0) throw Bad(path, "'categories' is empty");
            categories.Sort((a, b) => a.Id.CompareTo(b.Id));
            _categoryIds = categories.Select(c => c.Id).ToArray();
            ClassNames = categories.Select(c => c.Name).ToArray();
            _labelOfCategory = new Dictionary<long, int>(categories.Count);
            for (int i = 0; i < _categoryIds.Length; i++) _labelOfCategory[_categoryIds[i]] = i;

            // Images, sorted by id.
            var images = new List<(long Id, string File, int Width, int Height)>();
            var seenImages = new HashSet<long>();
            int ii = 0;
            foreach (JsonElement im in RequireArray(root, "images", path).EnumerateArray())
            {
                string where = $"images[{ii++}]";
                long id = GetLong(im, "id", path, where);
                string file = GetString(im, "file_name", path, where);
                int w = im.TryGetProperty("width", out _) ? (int)GetLong(im, "width", path, where, 0, int.MaxValue) : 0;
                int h = im.TryGetProperty("height", out _) ? (int)GetLong(im, "height", path, where, 0, int.MaxValue) : 0;
                if (!seenImages.Add(id)) throw Bad(path, $"{where}: image id {id} appears twice");
                images.Add((id, file, w, h));
            }
            images.Sort((a, b) => a.Id.CompareTo(b.Id));
            _imageIds = images.Select(i => i.Id).ToArray();
            _imagePaths = images.Select(i => Path.Combine(imageDirectory, i.File)).ToArray();
            _sizes = images.Select(i => (i.Width, i.Height)).ToArray();
            var indexOfImage = new Dictionary<long, int>(_imageIds.Length);
            for (int i = 0; i < _imageIds.Length; i++) indexOfImage[_imageIds[i]] = i;

            // Annotations (absent in test-set image-info files).
            var perImage = new List<ObjectAnnotation>?[_imageIds.Length];
            if (root.TryGetProperty("annotations", out JsonElement anns))
            {
                if (anns.ValueKind != JsonValueKind.Array) throw Bad(path, $"'annotations' is a JSON {anns.ValueKind}, expected an array");
                int ai = 0;
                Span<double> v = stackalloc double[4];
                foreach (JsonElement a in anns.EnumerateArray())
                {
                    string where = a.ValueKind == JsonValueKind.Object && a.TryGetProperty("id", out JsonElement aid) && aid.ValueKind == JsonValueKind.Number
                        ? $"annotations[{ai}] (id {aid.GetRawText()})" : $"annotations[{ai}]";
                    ai++;
                    long imageId = GetLong(a, "image_id", path, where);
                    long categoryId = GetLong(a, "category_id", path, where);
                    if (!indexOfImage.TryGetValue(imageId, out int imageIndex)) throw Bad(path, $"{where}: image_id {imageId} is not in 'images'");
                    if (!_labelOfCategory.TryGetValue(categoryId, out int label)) throw Bad(path, $"{where}: category_id {categoryId} is not in 'categories'");
                    if (!a.TryGetProperty("bbox", out JsonElement bbox)) throw Bad(path, $"{where}: no 'bbox'");
                    if (bbox.ValueKind != JsonValueKind.Array || bbox.GetArrayLength() != 4)
                        throw Bad(path, $"{where}: 'bbox' must be an array [x, y, width, height] of 4 numbers, got {Abbreviate(bbox.GetRawText())}");
                    for (int k = 0; k < 4; k++)
                    {
                        JsonElement e = bbox[k];
                        if (e.ValueKind != JsonValueKind.Number || !e.TryGetDouble(out v[k]) || !double.IsFinite(v[k]))
                            throw Bad(path, $"{where}: 'bbox' must hold 4 numbers, got {Abbreviate(bbox.GetRawText())}");
                    }
                    if (v[2] < 0 || v[3] < 0) throw Bad(path, $"{where}: 'bbox' has a negative size ({v[2]} × {v[3]})");
                    bool crowd = a.TryGetProperty("iscrowd", out _) && GetLong(a, "iscrowd", path, where, 0, 1) == 1;
                    float? area = null;
                    if (a.TryGetProperty("area", out JsonElement ar))
                    {
                        if (ar.ValueKind != JsonValueKind.Number || !ar.TryGetDouble(out double areaValue) || !(areaValue >= 0))
                            throw Bad(path, $"{where}: 'area' must be a non-negative number, got {Abbreviate(ar.GetRawText())}");
                        area = (float)areaValue;
                    }
                    var box = new Box((float)v[0], (float)v[1], (float)(v[0] + v[2]), (float)(v[1] + v[3]));
                    (perImage[imageIndex] ??= []).Add(new ObjectAnnotation(box, label, Difficult: false, IsCrowd: crowd) { Area = area });
                }
            }
            _objects = perImage.Select(l => l?.ToArray() ?? []).ToArray();
        }
    }

    /// <summary>The instances JSON.</summary>
    public string AnnotationFile { get; }

    /// <summary>The folder that file_name is relative to.</summary>
    public string ImageDirectory { get; }

    /// <inheritdoc />
    public IReadOnlyList<string> ClassNames { get; }

    /// <inheritdoc />
    public int Count => _imageIds.Length;

    /// <summary>COCO category id of each label.</summary>
    public IReadOnlyList<long> CategoryIds => _categoryIds;

    /// <summary>COCO image id of each sample, ascending.</summary>
    public IReadOnlyList<long> ImageIds => _imageIds;

    /// <summary>The label of COCO category <paramref name="categoryId"/>.</summary>
    /// <exception cref="KeyNotFoundException">No such category.</exception>
    public int LabelOf(long categoryId) => _labelOfCategory.TryGetValue(categoryId, out int l)
        ? l : throw new KeyNotFoundException($"category id {categoryId} is not in {AnnotationFile}");

    /// <summary>The objects of sample <paramref name="index"/>, without decoding the image.</summary>
    public IReadOnlyList<ObjectAnnotation> GetObjects(int index)
    {
        CheckIndex(index);
        return _objects[index];
    }

    /// <summary>The width and height the JSON declares for sample <paramref name="index"/> ((0, 0) when absent).</summary>
    public (int Width, int Height) GetDeclaredSize(int index)
    {
        CheckIndex(index);
        return _sizes[index];
    }

    /// <summary>The image file of sample <paramref name="index"/>.</summary>
    public string GetImagePath(int index)
    {
        CheckIndex(index);
        return _imagePaths[index];
    }

    /// <inheritdoc />
    /// <remarks>The sample's <see cref="DetectionSample.Id"/> is the COCO image id in invariant digits.</remarks>
    /// <exception cref="InvalidDataException">The image is unreadable, or its size differs from the declared one.</exception>
    public DetectionSample Load(int index)
    {
        CheckIndex(index);
        string path = _imagePaths[index];
        if (!File.Exists(path)) throw new FileNotFoundException($"COCO image not found: {path} (image id {_imageIds[index]})", path);
        RgbImage image = ImageFile.Load(path);
        var (w, h) = _sizes[index];
        if (w > 0 && h > 0 && (w != image.Width || h != image.Height))
            throw new InvalidDataException($"{path}: image is {image.Width}×{image.Height} but {AnnotationFile} declares {w}×{h} (image id {_imageIds[index]})");
        return new DetectionSample(_imageIds[index].ToString(CultureInfo.InvariantCulture), image, _objects[index]);
    }

    private void CheckIndex(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
    }

    private static JsonElement RequireArray(JsonElement root, string name, string path)
    {
        if (!root.TryGetProperty(name, out JsonElement e)) throw Bad(path, $"no '{name}' array");
        if (e.ValueKind != JsonValueKind.Array) throw Bad(path, $"'{name}' is a JSON {e.ValueKind}, expected an array");
        return e;
    }

    private static long GetLong(JsonElement obj, string name, string path, string where, long min = long.MinValue, long max = long.MaxValue)
    {
        if (obj.ValueKind != JsonValueKind.Object) throw Bad(path, $"{where} is a JSON {obj.ValueKind}, expected an object");
        if (!obj.TryGetProperty(name, out JsonElement e)) throw Bad(path, $"{where}: no '{name}'");
        // Integral values written as 3.0 are accepted (some exporters write floats).
        if (e.ValueKind == JsonValueKind.Number)
        {
            if (e.TryGetInt64(out long v) && v >= min && v <= max) return v;
            if (e.TryGetDouble(out double d) && d == Math.Floor(d) && d >= min && d <= max) return (long)d;
        }
        string range = min == long.MinValue ? "an integer" : $"an integer in {min}..{max}";
        throw Bad(path, $"{where}: '{name}' must be {range}, got {Abbreviate(e.GetRawText())}");
    }

    private static string GetString(JsonElement obj, string name, string path, string where)
    {
        if (obj.ValueKind != JsonValueKind.Object) throw Bad(path, $"{where} is a JSON {obj.ValueKind}, expected an object");
        if (!obj.TryGetProperty(name, out JsonElement e)) throw Bad(path, $"{where}: no '{name}'");
        if (e.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(e.GetString()))
            throw Bad(path, $"{where}: '{name}' must be a non-empty string, got {Abbreviate(e.GetRawText())}");
        return e.GetString()!;
    }

    private static string Abbreviate(string s) => s.Length <= 60 ? s : s[..57] + "...";

    private static InvalidDataException Bad(string path, string problem) => new($"{path}: invalid COCO annotations: {problem}");
}
