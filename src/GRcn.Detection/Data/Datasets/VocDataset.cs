// Pascal VOC detection sets: root/ImageSets/Main/{imageSet}.txt lists image ids,
// root/Annotations/{id}.xml holds each image's objects, root/JPEGImages/{id}.jpg its image.
// All annotations are parsed up front (System.Xml, DTDs prohibited) so errors surface when the
// set is opened; Load decodes the image (by content, see ImageFile) on the calling thread and
// is thread-safe. VOC boxes are 1-based inclusive pixel indices; they become continuous
// coordinates (xmin − 1, ymin − 1, xmax, ymax), as Detectron and py-faster-rcnn do (and
// torchvision's VOC reference), so a box covering pixels 1..W has width W. "difficult" is kept
// as ObjectAnnotation.Difficult; "truncated" and "pose" are ignored.
using System.Globalization;
using System.Xml;
using System.Xml.Linq;

namespace GRcn.Detection.Data;

/// <summary>A Pascal VOC image set; see the file comment.</summary>
public sealed class VocDataset : IDetectionDataset
{
    /// <summary>The 20 VOC classes in their customary order.</summary>
    public static IReadOnlyList<string> VocClasses { get; } =
    [
        "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
        "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
    ];

    private readonly string[] _ids;
    private readonly string[] _imagePaths;
    private readonly ObjectAnnotation[][] _objects;
    private readonly (int Width, int Height)[] _sizes;

    /// <summary>Opens the set <paramref name="imageSet"/> under <paramref name="root"/> and parses every annotation.</summary>
    /// <param name="root">The VOC folder (the one holding Annotations, ImageSets and JPEGImages, e.g. VOCdevkit/VOC2007).</param>
    /// <param name="imageSet">The list in ImageSets/Main: train, val, trainval or test.</param>
    /// <param name="classNames">Class names in label order; default <see cref="VocClasses"/>.</param>
    /// <exception cref="DirectoryNotFoundException">A folder is missing.</exception>
    /// <exception cref="FileNotFoundException">The image-set list or an annotation file is missing.</exception>
    /// <exception cref="InvalidDataException">Malformed XML, a missing field, a bad box or an unknown class; the message names the file.</exception>
    public VocDataset(string root, string imageSet = "trainval", IReadOnlyList<string>? classNames = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        ArgumentException.ThrowIfNullOrEmpty(imageSet);
        classNames ??= VocClasses;
        if (classNames.Count == 0) throw new ArgumentException("at least one class name is needed", nameof(classNames));
        var labels = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < classNames.Count; i++)
            if (string.IsNullOrWhiteSpace(classNames[i]) || !labels.TryAdd(classNames[i], i))
                throw new ArgumentException($"class name {i} ('{classNames[i]}') is empty or repeated", nameof(classNames));
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"VOC root folder not found: {root}");
        Root = root;
        ImageSet = imageSet;
        ClassNames = classNames.ToArray();

        string listPath = Path.Combine(root, "ImageSets", "Main", imageSet + ".txt");
        if (!File.Exists(listPath)) throw new FileNotFoundException($"VOC image-set list not found: {listPath}", listPath);
        CheckListFile(listPath);
        var ids = new List<string>();
        foreach (string line in File.ReadLines(listPath))
        {
            // Lines are "id"; the per-class lists ("id  1") are accepted too, taking the first field.
            string trimmed = line.Trim();
            if (trimmed.Length == 0) continue;
            int space = trimmed.IndexOfAny([' ', '\t']);
            ids.Add(space < 0 ? trimmed : trimmed[..space]);
        }
        _ids = ids.ToArray();
        _imagePaths = new string[_ids.Length];
        _objects = new ObjectAnnotation[_ids.Length][];
        _sizes = new (int, int)[_ids.Length];
        string annotationDir = Path.Combine(root, "Annotations"), imageDir = Path.Combine(root, "JPEGImages");
        for (int i = 0; i < _ids.Length; i++)
        {
            string xmlPath = Path.Combine(annotationDir, _ids[i] + ".xml");
            (_objects[i], _sizes[i], string? fileName) = ParseAnnotation(xmlPath, labels);
            string imagePath = Path.Combine(imageDir, _ids[i] + ".jpg");
            if (!File.Exists(imagePath) && fileName is not null) imagePath = Path.Combine(imageDir, fileName);
            _imagePaths[i] = imagePath;
        }
    }

    /// <summary>The VOC folder.</summary>
    public string Root { get; }

    /// <summary>The image-set name.</summary>
    public string ImageSet { get; }

    /// <inheritdoc />
    public IReadOnlyList<string> ClassNames { get; }

    /// <inheritdoc />
    public int Count => _ids.Length;

    /// <summary>Image ids in list order.</summary>
    public IReadOnlyList<string> Ids => _ids;

    /// <summary>The objects of image <paramref name="index"/>, without decoding the image.</summary>
    public IReadOnlyList<ObjectAnnotation> GetObjects(int index)
    {
        CheckIndex(index);
        return _objects[index];
    }

    /// <summary>The image size the annotation declares ((0, 0) when absent).</summary>
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
    /// <exception cref="InvalidDataException">The image is unreadable, or its size differs from the annotation's.</exception>
    public DetectionSample Load(int index)
    {
        CheckIndex(index);
        string path = _imagePaths[index];
        if (!File.Exists(path)) throw new FileNotFoundException($"VOC image not found: {path} (image id {_ids[index]})", path);
        RgbImage image = ImageFile.Load(path);
        var (w, h) = _sizes[index];
        if (w > 0 && h > 0 && (w != image.Width || h != image.Height))
            throw new InvalidDataException($"{path}: image is {image.Width}×{image.Height} but its annotation declares {w}×{h}");
        return new DetectionSample(_ids[index], image, _objects[index]);
    }

    /// <summary>Refuses a list that is no text (a NUL byte in its first 4 KiB, as /dev/zero or a binary file) or over 64 MiB.</summary>
    private static void CheckListFile(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        if (fs.CanSeek && fs.Length > 64 << 20) throw new InvalidDataException($"{path}: {fs.Length} bytes is too large for an image-set list (64 MiB at most)");
        Span<byte> head = stackalloc byte[4096];
        int n = fs.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        if (head[..n].Contains((byte)0)) throw new InvalidDataException($"{path}: not a text file (it holds NUL bytes)");
    }

    private void CheckIndex(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
    }

    private static (ObjectAnnotation[] Objects, (int, int) Size, string? FileName) ParseAnnotation(string path, Dictionary<string, int> labels)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"VOC annotation not found: {path}", path);
        XDocument doc;
        try
        {
            var settings = new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null };
            using var reader = XmlReader.Create(path, settings);
            doc = XDocument.Load(reader, LoadOptions.SetLineInfo);
        }
        catch (XmlException e)
        {
            throw new InvalidDataException($"{path}: malformed XML: {e.Message}", e);
        }
        XElement root = doc.Root!;
        if (root.Name.LocalName != "annotation")
            throw new InvalidDataException($"{path}: the root element is <{root.Name.LocalName}>, expected <annotation>");
        string? fileName = root.Element("filename")?.Value.Trim();
        (int, int) size = (0, 0);
        if (root.Element("size") is { } sizeEl)
            size = (ReadInt(sizeEl, "width", path), ReadInt(sizeEl, "height", path));

        var objects = new List<ObjectAnnotation>();
        foreach (XElement obj in root.Elements("object"))
        {
            string where = LineOf(obj);
            string name = (obj.Element("name") ?? throw Missing(path, "name", obj)).Value.Trim();
            if (!labels.TryGetValue(name, out int label))
                throw new InvalidDataException($"{path}: object{where} has unknown class '{name}' (known: {string.Join(", ", labels.Keys)})");
            bool difficult = obj.Element("difficult") is { } d && ParseFlag(d, path);
            XElement bb = obj.Element("bndbox") ?? throw Missing(path, "bndbox", obj);
            double xmin = ReadNumber(bb, "xmin", path), ymin = ReadNumber(bb, "ymin", path);
            double xmax = ReadNumber(bb, "xmax", path), ymax = ReadNumber(bb, "ymax", path);
            if (xmax < xmin || ymax < ymin)
                throw new InvalidDataException($"{path}: object{where} ('{name}') has an inverted box: xmin {xmin}, ymin {ymin}, xmax {xmax}, ymax {ymax}");
            // 1-based inclusive pixel indices → continuous coordinates.
            var box = new Box((float)(xmin - 1), (float)(ymin - 1), (float)xmax, (float)ymax);
            objects.Add(new ObjectAnnotation(box, label, difficult));
        }
        return (objects.ToArray(), size, string.IsNullOrEmpty(fileName) ? null : fileName);
    }

    private static bool ParseFlag(XElement e, string path)
    {
        string v = e.Value.Trim();
        return v switch
        {
            "0" or "" => false,
            "1" => true,
            _ => throw new InvalidDataException($"{path}: <difficult>{LineOf(e)} is '{v}', expected 0 or 1"),
        };
    }

    private static double ReadNumber(XElement parent, string field, string path)
    {
        XElement e = parent.Element(field) ?? throw Missing(path, field, parent);
        if (!double.TryParse(e.Value.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v))
            throw new InvalidDataException($"{path}: <{field}>{LineOf(e)} is '{e.Value.Trim()}', not a number");
        return v;
    }

    private static int ReadInt(XElement parent, string field, string path)
    {
        double v = ReadNumber(parent, field, path);
        if (v < 0 || v != Math.Floor(v) || v > int.MaxValue)
            throw new InvalidDataException($"{path}: <{field}> is {v}, not a non-negative integer");
        return (int)v;
    }

    private static InvalidDataException Missing(string path, string field, XElement parent) =>
        new($"{path}: <{parent.Name.LocalName}>{LineOf(parent)} has no <{field}> element");

    private static string LineOf(XElement e) => e is IXmlLineInfo info && info.HasLineInfo() ? $" (line {info.LineNumber})" : "";
}
