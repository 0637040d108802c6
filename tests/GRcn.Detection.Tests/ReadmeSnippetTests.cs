// The READMEs' C# snippets cannot rot: every ```csharp block of README.md and of each package's
// README (src/*/README.md) must appear verbatim (up to indentation) in a region
// "// readme:NAME" … "// end readme" of a file that builds in the solution (the samples, or this
// file, where the kernel snippet also runs on small inputs). The recipe tests check that
// TrainingRecipe.Shapes builds what its documentation says, that its detector's fc head is
// He-initialised, and that Detect's threshold and class names hold.
using System.Text.RegularExpressions;
using GRcn.Detection.Data;
using GRcn.Detection.Model;
using GRcn.Detection.Training;
using GRcn.Detection.Variants;
using GRcn.Kernels;

namespace GRcn.Detection.Tests;

public sealed partial class ReadmeSnippetTests
{
    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "GRcn.Kernels.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no GRcn.Kernels.sln above {AppContext.BaseDirectory}");
    }

    [GeneratedRegex(@"^```csharp\n(.*?)^```", RegexOptions.Singleline | RegexOptions.Multiline)]
    private static partial Regex CSharpBlock();

    [GeneratedRegex(@"^[ \t]*// readme:[\w-]+\n(.*?)^[ \t]*// end readme", RegexOptions.Singleline | RegexOptions.Multiline)]
    private static partial Regex Region();

    /// <summary>Lines without trailing blanks and without the indentation they all share; no empty first or last line.</summary>
    private static string Dedent(string text)
    {
        var lines = text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n').Select(l => l.TrimEnd()).ToList();
        while (lines.Count > 0 && lines[0].Length == 0) lines.RemoveAt(0);
        while (lines.Count > 0 && lines[^1].Length == 0) lines.RemoveAt(lines.Count - 1);
        int indent = lines.Where(l => l.Length > 0).Select(l => l.Length - l.TrimStart().Length).DefaultIfEmpty(0).Min();
        return string.Join('\n', lines.Select(l => l.Length == 0 ? l : l[indent..]));
    }

    [Fact]
    public void EveryReadmeSnippetIsARegionOfCodeThatBuilds()
    {
        string root = RepositoryRoot();
        var sources = Directory.GetFiles(Path.Combine(root, "samples"), "*.cs", SearchOption.AllDirectories)
            .Append(Path.Combine(root, "tests", "GRcn.Detection.Tests", "ReadmeSnippetTests.cs"))
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal));
        var regions = sources.SelectMany(f => Region().Matches(File.ReadAllText(f).Replace("\r\n", "\n", StringComparison.Ordinal))
            .Select(m => Dedent(m.Groups[1].Value))).ToHashSet();
        Assert.True(regions.Count >= 3, $"found only {regions.Count} readme regions");
        // the repository's README and each package's own
        var readmes = Directory.GetFiles(Path.Combine(root, "src"), "README.md", SearchOption.AllDirectories).Append(Path.Combine(root, "README.md"));
        int checkedSnippets = 0;
        foreach (var readme in readmes)
        {
            var text = File.ReadAllText(readme).Replace("\r\n", "\n", StringComparison.Ordinal);
            foreach (var snippet in CSharpBlock().Matches(text).Select(m => Dedent(m.Groups[1].Value)))
            {
                Assert.True(regions.Contains(snippet), $"{readme}: snippet is not a '// readme:' region of a sample or of this file:\n{snippet}");
                checkedSnippets++;
            }
        }
        Assert.True(checkedSnippets >= 6, $"only {checkedSnippets} snippets found");
    }

    [Fact]
    public void TheKernelSnippetRuns()
    {
        const int k = 3;
        var random = new Random(5);
        var features = new float[1 * 512 * 38 * 50];
        for (int i = 0; i < features.Length; i++) features[i] = (float)random.NextDouble();
        float[] boxes = [0, 10, 20, 200, 180, 0, 0, 0, 799, 607, 0, 300, 100, 340, 120];
        using var gradPooled = Tensor.FromArray(new float[k * 512 * 7 * 7], k, 512, 7, 7);
        // readme:kernels
        using var x = Tensor.FromArray(features, 1, 512, 38, 50);          // (N, C, H, W)
        using var rois = Tensor.FromArray(boxes, k, 5);                      // [batch, x1, y1, x2, y2]
        var options = new RoiAlignOptions(7, 7, SpatialScale: 1.0 / 16, SamplingRatio: 2, Aligned: true);
        using var pooled = RoiAlign.Forward(x, rois, options);               // (K, 512, 7, 7)
        using var dx = RoiAlign.Backward(gradPooled, rois, x.Shape, options);
        // end readme
        Assert.Equal([k, 512, 7, 7], pooled.Shape);
        Assert.Equal(x.Shape, dx.Shape);
    }

    [Fact]
    public void TheShapesRecipeIsTheDocumentedSetting()
    {
        var r = TrainingRecipe.Shapes;
        var c = r.CreateConfig(ShapesDataset.ShapeClasses);
        Assert.Equal("g-rcn+roi-align-v2", c.Variant);
        Assert.Equal(0.125, c.Width);
        Assert.Equal(32, c.GroupNormGroups);
        Assert.Equal((160, 266), (c.Input.MinSize, c.Input.MaxSize));
        Assert.Equal([128], c.Input.TrainingSizes());
        Assert.Equal([16f, 32, 64, 128], c.Rpn.AnchorSizes);
        Assert.Equal((32, 256, 0f, 7), (c.RoiHeads.BatchSizePerImage, c.RoiHeads.FcDim, c.RoiHeads.Dropout, c.ContextSize));
        var o = r.CreateTrainingOptions();
        Assert.Equal((OptimizerKind.AdamW, 0.002, 1e-4, 10000, 200), (o.Optimizer, o.LearningRate, o.WeightDecay, o.CosineIterations, o.WarmupIterations));
        Assert.Null(o.ClipGradientNorm);
        var loop = r.CreateTrainerOptions(seed: 7);
        Assert.Equal((10000, 2, 7UL), (loop.Iterations, loop.BatchSize, loop.Seed));
        // a new instance each time: changing one does not change the preset
        Assert.NotSame(TrainingRecipe.Shapes.TrainSizes, TrainingRecipe.Shapes.TrainSizes);
        Assert.Equal("Iterations", Assert.Throws<ArgumentException>(() => (r with { Iterations = 0 }).CreateTrainingOptions()).ParamName);
        Assert.Equal("MaxSize", Assert.Throws<ArgumentException>(() => (r with { MaxSize = 100 }).CreateConfig(ShapesDataset.ShapeClasses)).ParamName);
    }

    [Fact]
    public void TheRecipeHeInitialisesTheHeadAndDetectionsHonourTheThresholdAndNameTheirClass()
    {
        var recipe = TrainingRecipe.Shapes with { Width = 0.0625, TestSize = 64, TrainSizes = [64], MaxSize = 64, Iterations = 6 };
        var train = new ShapesDataset(new ShapesOptions { Count = 8, Width = 64, Height = 64, MinObjectSize = 12, MaxObjectSize = 32 });
        using var detector = recipe.CreateDetector(train.ClassNames, seed: 2);
        using var plain = Detector.Create(recipe.CreateConfig(train.ClassNames), seed: 2);
        float[] Fc6(Detector d) => d.Parameters.Single(p => p.Name == "roi_head.fc6.weight").Parameter.Value.ToArray<float>();
        Assert.NotEqual(Fc6(plain), Fc6(detector));
        Assert.Equal(Fc6(plain).Length, Fc6(detector).Length);
        using var again = recipe.CreateDetector(train.ClassNames, seed: 2);
        Assert.Equal(Fc6(detector), Fc6(again));

        // every proposal's every class scores over 0: plenty of detections without training
        var config = recipe.CreateConfig(train.ClassNames);
        using var open = Detector.Create(config with { RoiHeads = config.RoiHeads with { ScoreThreshold = 0f } }, seed: 2);
        Assert.Equal(2, TrainingRecipe.HeNormalRoiHeads(open, 2));
        var image = train.Load(0).Image;
        var all = open.Detect(image);
        Assert.NotEmpty(all);
        Assert.All(all, d => Assert.Equal(train.ClassNames[d.Label], d.ClassName));
        Assert.Equal(all.OrderByDescending(d => d.Score).Select(d => d.Score), all.Select(d => d.Score));
        float threshold = all[all.Count / 2].Score;
        var kept = open.Detect(image, scoreThreshold: threshold);
        Assert.Equal(all.Where(d => d.Score >= threshold), kept);
        Assert.Throws<ArgumentOutOfRangeException>(() => open.Detect(image, scoreThreshold: float.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => open.Detect(image, scoreThreshold: 1.5f));
    }
}
