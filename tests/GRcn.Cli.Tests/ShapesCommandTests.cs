// grcn shapes export: the PNGs are the synthetic test split's images pixel for pixel, the
// ground truth reads back as COCO, and nothing is ever overwritten (an existing target file
// stops the export before anything is written).
using GRcn.Cli.Commands;
using GRcn.Detection.Data;
using GRcn.Detection.Evaluation;

namespace GRcn.Cli.Tests;

public sealed class ShapesCommandTests
{
    [Fact]
    public void ExportWritesTheTestSplitsImagesAndTheirGroundTruth()
    {
        using var tmp = new TempDir();
        string dir = Path.Combine(tmp.Path, "shapes");
        var (code, output, err) = CommandTests.Run("shapes", "export", "3", "--out", dir, "--first", "2");
        Assert.True(code == 0, output + err);
        var test = new ShapesDataset(new ShapesOptions { Count = 5, Split = ShapesSplit.Test });
        for (int i = 2; i < 5; i++)
        {
            var image = ImageFile.Load(Path.Combine(dir, ShapesCommand.ImageName(ShapesSplit.Test, i) + ".png"));
            var expected = test.Load(i).Image;
            Assert.Equal((expected.Width, expected.Height), (image.Width, image.Height));
            Assert.Equal(expected.Pixels, image.Pixels);
        }
        Assert.Equal(4, Directory.GetFiles(dir).Length);
        var truth = CocoJson.ReadGroundTruth(Path.Combine(dir, ShapesCommand.GroundTruthFile));
        Assert.Equal(3, truth.ImageIds.Count);
        Assert.Equal(Enumerable.Range(2, 3).Sum(i => test.Load(i).Objects.Count), truth.AnnotationCount);
        Assert.Equal(ShapesDataset.ShapeClasses, truth.Categories.Select(c => c.Name));
        Assert.Contains("shapes-test-0002.png", output);
    }

    [Fact]
    public void ExportNeverOverwritesAndWritesNothingWhenATargetExists()
    {
        using var tmp = new TempDir();
        string mine = Path.Combine(tmp.Path, "shapes-test-0001.png");
        File.WriteAllText(mine, "a file the user made");
        var (code, _, err) = CommandTests.Run("shapes", "export", "3", "--out", tmp.Path);
        Assert.Equal(2, code);
        Assert.Contains("shapes-test-0001.png exists", err);
        Assert.Equal("a file the user made", File.ReadAllText(mine));
        Assert.Equal([mine], Directory.GetFiles(tmp.Path));

        Assert.Equal(2, CommandTests.Run("shapes", "export", "0", "--out", tmp.Path).Code);
        Assert.Contains("--split", CommandTests.Run("shapes", "export", "1", "--out", tmp.Path, "--split", "val").Err);
    }
}
