using GRcn.Detection.Data;

namespace GRcn.Detection.Tests.Data;

public sealed class CocoDatasetTests
{
    private const string ValidJson = """
        {
          "info": {"description": "tiny"},
          "images": [
            {"id": 20, "file_name": "b.png", "width": 8, "height": 6},
            {"id": 10, "file_name": "a.png", "width": 12, "height": 9},
            {"id": 30, "file_name": "c.png"}
          ],
          "categories": [
            {"id": 5, "name": "zebra", "supercategory": "animal"},
            {"id": 1, "name": "person"},
            {"id": 3, "name": "car"}
          ],
          "annotations": [
            {"id": 100, "image_id": 10, "category_id": 5, "bbox": [1.5, 2, 3, 4.25], "area": 10.5, "iscrowd": 0},
            {"id": 101, "image_id": 20, "category_id": 1, "bbox": [0, 0, 8, 6], "area": 40, "iscrowd": 1},
            {"id": 102, "image_id": 10, "category_id": 3, "bbox": [4, 4, 0, 2]}
          ]
        }
        """;

    private static TempDir MakeCoco(string json = ValidJson)
    {
        var dir = new TempDir();
        Directory.CreateDirectory(dir.File("images"));
        File.WriteAllBytes(dir.File("images", "a.png"), ImageFile.EncodePng(TestImages.Random(12, 9, seed: 1)));
        File.WriteAllBytes(dir.File("images", "b.png"), ImageFile.EncodePng(TestImages.Random(8, 6, seed: 2)));
        File.WriteAllBytes(dir.File("images", "c.png"), ImageFile.EncodePng(TestImages.Random(5, 5, seed: 3)));
        File.WriteAllText(dir.File("instances.json"), json);
        return dir;
    }

    [Fact]
    public void MapsCategoriesConvertsBoxesAndSortsImages()
    {
        using var dir = MakeCoco();
        var coco = new CocoDataset(dir.File("instances.json"), dir.File("images"));
        Assert.Equal(["person", "car", "zebra"], coco.ClassNames);
        Assert.Equal([1L, 3L, 5L], coco.CategoryIds);
        Assert.Equal(2, coco.LabelOf(5));
        Assert.Throws<KeyNotFoundException>(() => coco.LabelOf(2));
        Assert.Equal([10L, 20L, 30L], coco.ImageIds);

        var a = coco.Load(0);
        Assert.Equal("10", a.Id);
        Assert.Equal((12, 9), (a.Image.Width, a.Image.Height));
        Assert.Equal(2, a.Objects.Count);
        Assert.Equal(new Box(1.5f, 2f, 4.5f, 6.25f), a.Objects[0].Box);
        Assert.Equal(2, a.Objects[0].Label);
        Assert.Equal(10.5f, a.Objects[0].Area);
        Assert.False(a.Objects[0].IsCrowd);
        Assert.Equal(new Box(4, 4, 4, 6), a.Objects[1].Box); // zero-width boxes are kept as written
        Assert.Null(a.Objects[1].Area);

        var b = coco.Load(1);
        var crowd = Assert.Single(b.Objects);
        Assert.True(crowd.IsCrowd);
        Assert.Equal(0, crowd.Label);
        Assert.Equal(new Box(0, 0, 8, 6), crowd.Box);

        Assert.Empty(coco.GetObjects(2));
        Assert.Equal((5, 5), (coco.Load(2).Image.Width, coco.Load(2).Image.Height));
        Assert.Equal((0, 0), coco.GetDeclaredSize(2));
    }

    [Fact]
    public void AnnotationsArrayIsOptional()
    {
        using var dir = MakeCoco("""{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "x"}]}""");
        var coco = new CocoDataset(dir.File("instances.json"), dir.File("images"));
        Assert.Empty(coco.GetObjects(0));
    }

    [Theory]
    [InlineData("{\"images\": [", "malformed JSON")]
    [InlineData("[]", "the top level is a JSON Array")]
    [InlineData("""{"categories": [{"id": 1, "name": "x"}]}""", "no 'images' array")]
    [InlineData("""{"images": [], "categories": []}""", "'categories' is empty")]
    [InlineData("""{"images": [{"id": 1}], "categories": [{"id": 1, "name": "x"}]}""", "images[0]: no 'file_name'")]
    [InlineData("""{"images": [{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}], "categories": [{"id": 1, "name": "x"}]}""", "image id 1 appears twice")]
    [InlineData("""{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "x"}, {"id": 1, "name": "y"}]}""", "category id 1 appears twice")]
    [InlineData("""{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "x"}], "annotations": [{"id": 7, "image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1]}]}""", "annotations[0] (id 7): category_id 2 is not in 'categories'")]
    [InlineData("""{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "x"}], "annotations": [{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1]}]}""", "annotations[0]: image_id 9 is not in 'images'")]
    [InlineData("""{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "x"}], "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}]}""", "'bbox' must be an array [x, y, width, height] of 4 numbers, got [0, 0, 1]")]
    [InlineData("""{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "x"}], "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1]}]}""", "negative size")]
    [InlineData("""{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "x"}], "annotations": [{"image_id": 1, "category_id": 1}]}""", "annotations[0]: no 'bbox'")]
    [InlineData("""{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "x"}], "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "iscrowd": 2}]}""", "'iscrowd' must be an integer in 0..1")]
    [InlineData("""{"images": [{"id": "one", "file_name": "a.png"}], "categories": [{"id": 1, "name": "x"}]}""", "images[0]: 'id' must be an integer, got \"one\"")]
    public void ErrorsNameTheFileAndTheProblem(string json, string problem)
    {
        using var dir = MakeCoco(json);
        string path = dir.File("instances.json");
        var e = Assert.Throws<InvalidDataException>(() => new CocoDataset(path, dir.File("images")));
        Assert.Contains(path, e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void MissingFilesAndUnreadableImagesNameThePath()
    {
        using var dir = MakeCoco();
        Assert.Throws<FileNotFoundException>(() => new CocoDataset(dir.File("nope.json"), dir.File("images")));
        var coco = new CocoDataset(dir.File("instances.json"), dir.File("images"));
        File.WriteAllText(dir.File("images", "b.png"), "not an image");
        var e = Assert.Throws<InvalidDataException>(() => coco.Load(1));
        Assert.Contains(dir.File("images", "b.png"), e.Message);
        File.Delete(dir.File("images", "a.png"));
        var missing = Assert.Throws<FileNotFoundException>(() => coco.Load(0));
        Assert.Contains("a.png", missing.Message);
        File.WriteAllBytes(dir.File("images", "a.png"), ImageFile.EncodePng(TestImages.Random(7, 7, seed: 1)));
        var size = Assert.Throws<InvalidDataException>(() => coco.Load(0));
        Assert.Contains("declares 12×9", size.Message);
    }
}
