using System.Text;
using System.Text.Json;
using GRcn.Detection.Data;
using GRcn.Detection.Evaluation;

namespace GRcn.Detection.Tests.Evaluation;

/// <summary>COCO JSON reading, writing and evaluation; errors that name the file and the problem.</summary>
public sealed class CocoJsonTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("grcn-coco-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static MemoryStream Utf8(string json) => new(Encoding.UTF8.GetBytes(json));

    private const string SmallGt = """
        {"images":[{"id":42},{"id":7}],
         "categories":[{"id":90,"name":"toothbrush"},{"id":1,"name":"person"}],
         "annotations":[
           {"id":1,"image_id":42,"category_id":1,"bbox":[10,10,20,40],"area":800,"iscrowd":0},
           {"id":2,"image_id":7,"category_id":90,"bbox":[0,0,5,5],"area":25,"iscrowd":0},
           {"id":3,"image_id":7,"category_id":3,"bbox":[0,0,5,5],"area":25,"iscrowd":0},
           {"id":4,"image_id":99,"category_id":1,"bbox":[0,0,5,5],"area":25,"iscrowd":0}]}
        """;

    [Fact]
    public void GroundTruthIsSortedAndFiltered()
    {
        var gt = CocoJson.ReadGroundTruth(Utf8(SmallGt), "small.json");
        Assert.Equal([CocoImageId.FromNumber(7), CocoImageId.FromNumber(42)], gt.ImageIds);
        Assert.Equal([new CocoCategory(1, "person"), new CocoCategory(90, "toothbrush")], gt.Categories);
        Assert.Equal(0, gt.IndexOfCategory(1));
        Assert.Equal(1, gt.IndexOfCategory(90));
        Assert.Equal(-1, gt.IndexOfCategory(3));
        Assert.Equal(2, gt.AnnotationCount);        // category 3 and image 99 are not listed
        Assert.Equal(2, gt.DroppedAnnotations);
    }

    [Fact]
    public void ArbitraryCategoryIdsMapToLabelsBySortedId()
    {
        var gt = CocoJson.ReadGroundTruth(Utf8(SmallGt), "small.json");
        // person (id 1) found exactly on image 42; toothbrush (id 90) missed on image 7 with an FP on image 42.
        CocoResult[] results =
        [
            new(42, 1, 10, 10, 20, 40, 0.9),
            new(42, 90, 100, 100, 5, 5, 0.8),
        ];
        var r = CocoJson.Evaluate(gt, results, "res.json");
        Assert.Equal(1.0, r.PerClass[0].AP, 1e-12);
        Assert.Equal("person", r.PerClass[0].Name);
        Assert.Equal(1L, r.PerClass[0].CategoryId);
        Assert.Equal(0.0, r.PerClass[1].AP, 1e-12);
        Assert.Equal(90L, r.PerClass[1].CategoryId);
        Assert.Equal(0.5, r.Summary.AP, 1e-12);
    }

    [Fact]
    public void FilesRoundTripToTheInMemoryNumbersExactly()
    {
        // Random images with awkward float boxes. Image ids ascend in the order the images are added and
        // category ids ascend with the labels, so the file path visits everything in the in-memory order;
        // every double is written as round-trip text, so the two evaluations must agree bit for bit.
        var rng = new Random(7);
        var mem = new CocoEvaluator(["a", "b", "c"]);
        long[] catIds = [3, 5, 17];
        var images = new List<(CocoImageId, IReadOnlyList<ObjectAnnotation>)>();
        var results = new List<CocoResult>();
        for (int i = 0; i < 30; i++)
        {
            var gt = new List<ObjectAnnotation>();
            var dt = new List<DetectedObject>();
            for (int j = rng.Next(5); j > 0; j--)
            {
                var b = RandomBox(rng);
                gt.Add(new ObjectAnnotation(b, rng.Next(3), IsCrowd: rng.Next(20) == 0));
                if (rng.Next(3) > 0)
                    dt.Add(new DetectedObject(new Box(b.X1 + (float)rng.NextDouble() * 3, b.Y1 - 0.37f, b.X2 + 1.1f, b.Y2), (float)rng.NextDouble(), rng.Next(3)));
            }
            for (int j = rng.Next(4); j > 0; j--) dt.Add(new DetectedObject(RandomBox(rng), (float)rng.NextDouble(), rng.Next(3)));
            mem.AddImage(gt, dt);
            CocoImageId id = 100 + i;
            images.Add((id, gt));
            results.AddRange(dt.Select(d => CocoResult.FromDetection(id, d, catIds)));
        }
        string gtPath = Path.Combine(_dir, "gt.json"), resPath = Path.Combine(_dir, "res.json");
        using (var f = File.Create(gtPath))
            CocoJson.WriteGroundTruth(f, [new CocoCategory(3, "a"), new CocoCategory(5, "b"), new CocoCategory(17, "c")], images);
        CocoJson.WriteResults(resPath, results);

        Assert.Equal(results, CocoJson.ReadResults(resPath));   // every double survives the trip
        var fromFiles = CocoJson.EvaluateFiles(gtPath, resPath);
        var inMemory = mem.Evaluate();
        Assert.Equal(30, fromFiles.ImageCount);
        Assert.Equal(inMemory.Summary, fromFiles.Summary);      // exact equality of all 13 doubles
        Assert.Equal(inMemory.PerClass.Select(c => (c.AP, c.AP50, c.AP70, c.AP75, c.AR100, c.GroundTruthCount, c.DetectionCount)),
            fromFiles.PerClass.Select(c => (c.AP, c.AP50, c.AP70, c.AP75, c.AR100, c.GroundTruthCount, c.DetectionCount)));
        Assert.Equal([3L, 5L, 17L], fromFiles.PerClass.Select(c => c.CategoryId));
        Assert.InRange(fromFiles.Summary.AP, 0.05, 1.0);          // a non-trivial case
    }

    private static Box RandomBox(Random rng)
    {
        float x = (float)(rng.NextDouble() * 300), y = (float)(rng.NextDouble() * 300);
        return new Box(x, y, x + 2 + (float)(rng.NextDouble() * 120), y + 2 + (float)(rng.NextDouble() * 120));
    }

    [Fact]
    public void StringImageIdsWork()
    {
        const string gtJson = """
            {"images":[{"id":"b"},{"id":"a"}],"categories":[{"id":1,"name":"x"}],
             "annotations":[{"id":5,"image_id":"a","category_id":1,"bbox":[0,0,10,10],"area":100,"iscrowd":0}]}
            """;
        var gt = CocoJson.ReadGroundTruth(Utf8(gtJson), "gt.json");
        Assert.Equal([CocoImageId.FromText("a"), CocoImageId.FromText("b")], gt.ImageIds);
        var r = CocoJson.Evaluate(gt, [new CocoResult("a", 1, 0, 0, 10, 10, 0.5)]);
        Assert.Equal(1.0, r.Summary.AP, 1e-12);
        // The number 1 is not the string "1".
        var e = Assert.Throws<InvalidDataException>(() => CocoJson.Evaluate(gt, [new CocoResult(1, 1, 0, 0, 1, 1, 0.5)], "res.json"));
        Assert.Contains("res.json", e.Message);
        Assert.Contains("image_id 1", e.Message);
    }

    [Fact]
    public void WrittenResultsHaveTheCocoShape()
    {
        using var ms = new MemoryStream();
        CocoJson.WriteResults(ms, [CocoResult.FromDetection(12, new DetectedObject(new Box(1, 2, 11, 22), 0.5f, 1), [7, 9])]);
        using var doc = JsonDocument.Parse(ms.ToArray());
        var e = doc.RootElement[0];
        Assert.Equal(12, e.GetProperty("image_id").GetInt64());
        Assert.Equal(9, e.GetProperty("category_id").GetInt64());
        Assert.Equal([1.0, 2.0, 10.0, 20.0], e.GetProperty("bbox").EnumerateArray().Select(v => v.GetDouble()));
        Assert.Equal(0.5, e.GetProperty("score").GetDouble());
        Assert.Throws<ArgumentException>(() => CocoResult.FromDetection(1, new DetectedObject(new Box(0, 0, 1, 1), 0.5f, 2), [7, 9]));
    }

    [Theory]
    [InlineData("{\"images\":[{\"id\":1}],\"categories\":[{\"id\":1}],\"annotations\":[{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,1]}]}",
        "annotations[0].bbox")]
    [InlineData("{\"images\":[{\"id\":1}],\"categories\":[{\"id\":1}],\"annotations\":[{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,1,\"x\"]}]}",
        "annotations[0].bbox[3]")]
    [InlineData("{\"images\":[{\"id\":1}],\"annotations\":[]}", "\"categories\"")]
    [InlineData("{\"images\":[{\"id\":1}],\"categories\":[]}", "categories is empty")]
    [InlineData("{\"images\":[{\"id\":1},{\"id\":\"a\"}],\"categories\":[{\"id\":1}]}", "mixes string and integer")]
    [InlineData("{\"images\":[{\"id\":1.5}],\"categories\":[{\"id\":1}]}", "images[0].id expected an integer")]
    [InlineData("{\"images\":[{\"id\":1}],\"categories\":[{\"id\":1},{\"id\":1}]}", "listed twice")]
    [InlineData("{\"images\":[{\"id\":1}],\"categories\":[{\"id\":1}],\"annotations\":[{\"id\":3,\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,1,1]},{\"id\":3,\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,1,1]}]}",
        "annotation id 3 is used twice")]
    [InlineData("{\"images\":[{\"id\":1}],\"categories\":[{\"id\":1}],\"annotations\":[{\"image_id\":1,\"bbox\":[0,0,1,1]}]}",
        "annotations[0] has no \"category_id\"")]
    [InlineData("[1,2]", "expected a JSON object")]
    [InlineData("{\"images\":[", "not valid JSON")]
    public void BadGroundTruthNamesFileAndProblem(string json, string problem)
    {
        var e = Assert.Throws<InvalidDataException>(() => CocoJson.ReadGroundTruth(Utf8(json), "bad_gt.json"));
        Assert.StartsWith("bad_gt.json: ", e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Theory]
    [InlineData("{}", "expected a JSON array")]
    [InlineData("[{\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,1,1]}]", "[0] has no \"score\"")]
    [InlineData("[{\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,1,1],\"score\":\"high\"}]", "[0].score expected a number")]
    [InlineData("[{\"image_id\":1,\"category_id\":1.25,\"bbox\":[0,0,1,1],\"score\":1}]", "[0].category_id expected an integer")]
    public void BadResultsNameFileAndProblem(string json, string problem)
    {
        var e = Assert.Throws<InvalidDataException>(() => CocoJson.ReadResults(Utf8(json), "bad_res.json"));
        Assert.StartsWith("bad_res.json: ", e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void ResultsOnUnknownImagesAreAnErrorNamingBothFiles()
    {
        string gtPath = Path.Combine(_dir, "gt.json"), resPath = Path.Combine(_dir, "res.json");
        File.WriteAllText(gtPath, SmallGt);
        File.WriteAllText(resPath, "[{\"image_id\":5,\"category_id\":1,\"bbox\":[0,0,1,1],\"score\":0.5}]");
        var e = Assert.Throws<InvalidDataException>(() => CocoJson.EvaluateFiles(gtPath, resPath));
        Assert.Contains(resPath, e.Message);
        Assert.Contains(gtPath, e.Message);
        Assert.Contains("image_id 5", e.Message);
    }

    [Fact]
    public void MissingFileIsNamed()
    {
        string path = Path.Combine(_dir, "nope.json");
        var e = Assert.Throws<FileNotFoundException>(() => CocoJson.ReadGroundTruth(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void LenientDefaultsForAreaAndIscrowd()
    {
        // No area → w·h (100×100 = 10000: large); no iscrowd → 0; iscrowd true → crowd.
        const string gtJson = """
            {"images":[{"id":1}],"categories":[{"id":1}],
             "annotations":[{"id":1,"image_id":1,"category_id":1,"bbox":[0,0,100,100]},
                            {"id":2,"image_id":1,"category_id":1,"bbox":[200,200,10,10],"iscrowd":true}]}
            """;
        var gt = CocoJson.ReadGroundTruth(Utf8(gtJson), "gt.json");
        var r = CocoJson.Evaluate(gt, [new CocoResult(1, 1, 0, 0, 100, 100, 0.9), new CocoResult(1, 1, 200, 200, 10, 10, 0.95)]);
        Assert.Equal(1.0, r.Summary.APLarge, 1e-12);
        Assert.Equal(-1.0, r.Summary.APSmall);   // the only small object is a crowd region
        Assert.Equal(1.0, r.Summary.AP, 1e-12);  // the detection on the crowd region is ignored
        Assert.Equal(1, r.PerClass[0].GroundTruthCount);
    }
}
