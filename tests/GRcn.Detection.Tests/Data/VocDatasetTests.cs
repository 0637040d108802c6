using GRcn.Detection.Data;

namespace GRcn.Detection.Tests.Data;

public sealed class VocDatasetTests
{
    private static int Label(string name) => VocDataset.VocClasses.ToList().IndexOf(name);

    private static string Xml(string filename, int width, int height, params string[] objects) => $"""
        <annotation>
          <folder>VOC2007</folder>
          <filename>{filename}</filename>
          <size><width>{width}</width><height>{height}</height><depth>3</depth></size>
          <segmented>0</segmented>
          {string.Join("\n", objects)}
        </annotation>
        """;

    private static string Obj(string name, int xmin, int ymin, int xmax, int ymax, int difficult = 0, int truncated = 0) => $"""
        <object><name>{name}</name><pose>Unspecified</pose><truncated>{truncated}</truncated><difficult>{difficult}</difficult>
          <bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>
        """;

    /// <summary>A VOC folder: 000001 (JPEG, 37×29, dog + difficult person), 000002 (PNG content, 20×10, no objects), 000005 (PNG, 8×6, chair).</summary>
    private static TempDir MakeVoc()
    {
        var dir = new TempDir();
        foreach (string sub in new[] { "Annotations", "JPEGImages", Path.Combine("ImageSets", "Main") })
            Directory.CreateDirectory(dir.File(sub));
        File.WriteAllText(dir.File("ImageSets", "Main", "trainval.txt"), "000001\n000002\n\n000005\n");
        File.WriteAllText(dir.File("ImageSets", "Main", "test.txt"), "000002\n");
        File.Copy(TestImages.Fixture("jpeg", "rgb420.jpg"), dir.File("JPEGImages", "000001.jpg"));
        File.WriteAllBytes(dir.File("JPEGImages", "000002.jpg"), ImageFile.EncodePng(TestImages.Random(20, 10, seed: 1)));
        File.WriteAllBytes(dir.File("JPEGImages", "000005.jpg"), ImageFile.EncodePng(TestImages.Random(8, 6, seed: 2)));
        File.WriteAllText(dir.File("Annotations", "000001.xml"),
            Xml("000001.jpg", 37, 29, Obj("dog", 1, 1, 37, 29), Obj("person", 5, 6, 20, 21, difficult: 1, truncated: 1)));
        File.WriteAllText(dir.File("Annotations", "000002.xml"), Xml("000002.jpg", 20, 10));
        File.WriteAllText(dir.File("Annotations", "000005.xml"), Xml("000005.jpg", 8, 6, Obj(" chair ", 2, 3, 2, 4)));
        return dir;
    }

    [Fact]
    public void ParsesObjectsDifficultFlagsAndEmptyImages()
    {
        using var dir = MakeVoc();
        var voc = new VocDataset(dir.Path);
        Assert.Equal(20, voc.ClassNames.Count);
        Assert.Equal(["000001", "000002", "000005"], voc.Ids);

        var s1 = voc.Load(0);
        Assert.Equal("000001", s1.Id);
        Assert.Equal((37, 29), (s1.Image.Width, s1.Image.Height));
        Assert.Equal(2, s1.Objects.Count);
        // 1-based inclusive → continuous: (xmin − 1, ymin − 1, xmax, ymax); the full image is (0, 0, W, H).
        Assert.Equal(new ObjectAnnotation(new Box(0, 0, 37, 29), Label("dog")), s1.Objects[0]);
        Assert.Equal(new ObjectAnnotation(new Box(4, 5, 20, 21), Label("person"), Difficult: true), s1.Objects[1]);

        var s2 = voc.Load(1);
        Assert.Empty(s2.Objects);
        Assert.Equal((20, 10), (s2.Image.Width, s2.Image.Height));

        // A one-pixel-wide box (xmin == xmax) has width 1.
        var chair = Assert.Single(voc.GetObjects(2));
        Assert.Equal(new Box(1, 2, 2, 4), chair.Box);
        Assert.Equal(Label("chair"), chair.Label);
        Assert.Equal((8, 6), voc.GetDeclaredSize(2));

        var test = new VocDataset(dir.Path, "test");
        Assert.Equal(["000002"], test.Ids);
    }

    [Fact]
    public void CustomClassListMapsLabels()
    {
        using var dir = MakeVoc();
        var voc = new VocDataset(dir.Path, "trainval", ["person", "dog", "chair"]);
        Assert.Equal([1, 0], voc.GetObjects(0).Select(o => o.Label));
        Assert.Equal(2, voc.GetObjects(2)[0].Label);
    }

    [Fact]
    public void UnknownClassNamesTheFileAndTheClass()
    {
        using var dir = MakeVoc();
        var e = Assert.Throws<InvalidDataException>(() => new VocDataset(dir.Path, "trainval", ["person", "dog"]));
        Assert.Contains(dir.File("Annotations", "000005.xml"), e.Message);
        Assert.Contains("unknown class 'chair'", e.Message);
    }

    [Fact]
    public void MalformedXmlNamesTheFile()
    {
        using var dir = MakeVoc();
        string path = dir.File("Annotations", "000002.xml");
        File.WriteAllText(path, "<annotation><object><name>dog</name></annotation>");
        var e = Assert.Throws<InvalidDataException>(() => new VocDataset(dir.Path));
        Assert.Contains(path, e.Message);
        Assert.Contains("malformed XML", e.Message);
    }

    [Theory]
    [InlineData("<object><name>dog</name><difficult>0</difficult></object>", "has no <bndbox> element")]
    [InlineData("<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax></bndbox></object>", "has no <ymax> element")]
    [InlineData("<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>", "has no <name> element")]
    [InlineData("<object><name>dog</name><bndbox><xmin>a</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>", "<xmin> (line 1) is 'a', not a number")]
    [InlineData("<object><name>dog</name><bndbox><xmin>9</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>", "inverted box")]
    [InlineData("<object><name>dog</name><difficult>yes</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>", "expected 0 or 1")]
    public void MissingOrBadFieldsNameTheFileAndTheProblem(string objectXml, string problem)
    {
        using var dir = MakeVoc();
        string path = dir.File("Annotations", "000005.xml");
        File.WriteAllText(path, $"<annotation><filename>000005.jpg</filename>{objectXml}</annotation>");
        var e = Assert.Throws<InvalidDataException>(() => new VocDataset(dir.Path));
        Assert.Contains(path, e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void WrongRootElementIsReported()
    {
        using var dir = MakeVoc();
        File.WriteAllText(dir.File("Annotations", "000001.xml"), "<notvoc/>");
        var e = Assert.Throws<InvalidDataException>(() => new VocDataset(dir.Path));
        Assert.Contains("expected <annotation>", e.Message);
    }

    [Fact]
    public void MissingFilesAndUnreadableImagesNameThePath()
    {
        using var dir = MakeVoc();
        Assert.Throws<FileNotFoundException>(() => new VocDataset(dir.Path, "val"));
        Assert.Throws<DirectoryNotFoundException>(() => new VocDataset(dir.File("nowhere")));

        var voc = new VocDataset(dir.Path);
        string image = dir.File("JPEGImages", "000002.jpg");
        File.WriteAllBytes(image, [1, 2, 3, 4, 5]);
        var e = Assert.Throws<InvalidDataException>(() => voc.Load(1));
        Assert.Contains(image, e.Message);

        File.Delete(image);
        var missing = Assert.Throws<FileNotFoundException>(() => voc.Load(1));
        Assert.Contains(image, missing.Message);

        File.Delete(dir.File("Annotations", "000005.xml"));
        var noXml = Assert.Throws<FileNotFoundException>(() => new VocDataset(dir.Path));
        Assert.Contains("000005.xml", noXml.Message);
    }

    [Fact]
    public void ImageSizeDifferentFromTheAnnotationIsReported()
    {
        using var dir = MakeVoc();
        File.WriteAllText(dir.File("Annotations", "000002.xml"), Xml("000002.jpg", 21, 10));
        var voc = new VocDataset(dir.Path);
        var e = Assert.Throws<InvalidDataException>(() => voc.Load(1));
        Assert.Contains("20×10", e.Message);
        Assert.Contains("21×10", e.Message);
    }
}
