using GRcn.Detection.Data;

namespace GRcn.Detection.Tests.Data;

public sealed class DataLoaderTests
{
    private static readonly ShapesDataset Shapes = new(new ShapesOptions { Count = 23, Seed = 4, Width = 48, Height = 40, MinObjectSize = 8, MaxObjectSize = 24 });

    private static DataLoaderOptions Options(int workers, int prefetch) => new()
    {
        BatchSize = 3, Seed = 17, Resize = new ResizeSpec(60, 70), Workers = workers, PrefetchBatches = prefetch,
    };

    /// <summary>Everything a batch delivers, copied out so it outlives the batch.</summary>
    private sealed record Snapshot(int Index, string Id, int Width, int Height, bool Flipped, float[] Pixels, ObjectAnnotation[] Objects);

    private static List<Snapshot[]> Run(DetectionDataLoader loader, int epoch)
    {
        var batches = new List<Snapshot[]>();
        foreach (var batch in loader.Epoch(epoch))
            using (batch)
                batches.Add(batch.Select(s => new Snapshot(s.DatasetIndex, s.Id, s.Width, s.Height, s.Flipped, s.Pixels.ToArray(), [.. s.Objects])).ToArray());
        return batches;
    }

    private static void AssertSame(List<Snapshot[]> a, List<Snapshot[]> b)
    {
        Assert.Equal(a.Count, b.Count);
        for (int i = 0; i < a.Count; i++)
        {
            Assert.Equal(a[i].Length, b[i].Length);
            for (int j = 0; j < a[i].Length; j++)
            {
                var (x, y) = (a[i][j], b[i][j]);
                Assert.Equal((x.Index, x.Id, x.Width, x.Height, x.Flipped), (y.Index, y.Id, y.Width, y.Height, y.Flipped));
                Assert.Equal(x.Pixels, y.Pixels);
                Assert.Equal(x.Objects, y.Objects);
            }
        }
    }

    [Fact]
    public void OutputIsIdenticalWhateverTheWorkersAndPrefetch()
    {
        List<Snapshot[]> reference;
        using (var inline = new DetectionDataLoader(Shapes, Options(0, 1))) reference = Run(inline, 2);
        Assert.Equal(8, reference.Count);
        Assert.Equal(2, reference[^1].Length);
        foreach (var (workers, prefetch) in new[] { (1, 1), (3, 1), (3, 4), (8, 2) })
        {
            using var loader = new DetectionDataLoader(Shapes, Options(workers, prefetch));
            AssertSame(reference, Run(loader, 2));
            AssertSame(reference, Run(loader, 2));
            Assert.Equal(0, loader.LiveWorkers);
            Assert.Equal(0, loader.ActiveRuns);
        }
    }

    [Fact]
    public void EachEpochIsADifferentPermutation()
    {
        using var loader = new DetectionDataLoader(Shapes, Options(2, 2));
        int[] e0 = loader.EpochOrder(0), e1 = loader.EpochOrder(1);
        Assert.Equal(Enumerable.Range(0, 23), e0.Order());
        Assert.Equal(Enumerable.Range(0, 23), e1.Order());
        Assert.NotEqual(e0, e1);
        Assert.Equal(e0, loader.EpochOrder(0));
        Assert.Equal(e1, Run(loader, 1).SelectMany(b => b).Select(s => s.Index));

        using var ordered = new DetectionDataLoader(Shapes, Options(2, 2) with { Shuffle = false });
        Assert.Equal(Enumerable.Range(0, 23), ordered.EpochOrder(5));
    }

    [Fact]
    public void FlipsAreSeededPerEpochAndIndex()
    {
        var big = new ShapesDataset(new ShapesOptions { Count = 400 });
        using var loader = new DetectionDataLoader(big, new DataLoaderOptions { Seed = 3 });
        int flips = Enumerable.Range(0, 400).Count(i => loader.IsFlipped(0, i));
        Assert.InRange(flips, 160, 240); // probability 0.5
        Assert.NotEqual(Enumerable.Range(0, 400).Select(i => loader.IsFlipped(0, i)), Enumerable.Range(0, 400).Select(i => loader.IsFlipped(1, i)));
        using var never = new DetectionDataLoader(big, new DataLoaderOptions { FlipProbability = 0 });
        Assert.DoesNotContain(Enumerable.Range(0, 400), i => never.IsFlipped(0, i));
    }

    [Fact]
    public void SamplesCarryResizedPixelsAndMappedBoxes()
    {
        using var loader = new DetectionDataLoader(Shapes, Options(2, 2));
        var resizer = new ImageResizer();
        int flippedSeen = 0;
        foreach (var batch in loader.Epoch(0))
        {
            using (batch)
            {
                foreach (var s in batch)
                {
                    var sample = Shapes.Load(s.DatasetIndex);
                    // 48×40 with S = 60, L = 70: scale = min(60/40, 70/48) = 1.4583334 → 70×58.
                    Assert.Equal((48, 40), (s.OriginalWidth, s.OriginalHeight));
                    Assert.Equal((70, 58), (s.Width, s.Height));
                    Assert.Equal(70f / 48f, (float)s.Scale, 1e-6f);
                    Assert.Equal((70f / 48, 58f / 40), (s.ScaleX, s.ScaleY));
                    Assert.Equal(loader.IsFlipped(0, s.DatasetIndex), s.Flipped);
                    var expected = new float[3 * 70 * 58];
                    resizer.ResizeNormalize(sample.Image, 70, 58, s.Flipped, ImageNormalization.ImageNet, expected);
                    Assert.Equal(expected, s.Pixels.ToArray());
                    Assert.Equal(sample.Objects.Count, s.Objects.Count);
                    for (int k = 0; k < s.Objects.Count; k++)
                    {
                        Box b = sample.Objects[k].Box;
                        if (s.Flipped) b = new Box(48 - b.X2, b.Y1, 48 - b.X1, b.Y2);
                        Assert.Equal(new Box(b.X1 * s.ScaleX, b.Y1 * s.ScaleY, b.X2 * s.ScaleX, b.Y2 * s.ScaleY), s.Objects[k].Box);
                        Assert.Equal(sample.Objects[k].Label, s.Objects[k].Label);
                        Box back = s.ToOriginal(s.Objects[k].Box);
                        Assert.Equal(sample.Objects[k].Box.X1, back.X1, 1e-4f);
                        Assert.Equal(sample.Objects[k].Box.X2, back.X2, 1e-4f);
                        Assert.Equal(sample.Objects[k].Box.Y2, back.Y2, 1e-4f);
                    }
                    if (s.Flipped) flippedSeen++;
                }
            }
        }
        Assert.InRange(flippedSeen, 1, 22);
    }

    [Fact]
    public void MultiScaleDrawsOneSizePerBatchFromTheSeed()
    {
        // 48×40 images, shorter-side choices 40 / 60 / 80 under L = 100: 48×40, 72×60 or 96×80
        var options = Options(3, 2) with { MinSizeChoices = [40, 60, 80], Resize = new ResizeSpec(999, 100) };
        using var loader = new DetectionDataLoader(Shapes, options);
        var seen = new HashSet<int>();
        for (int epoch = 0; epoch < 3; epoch++)
        {
            var batches = Run(loader, epoch);
            for (int b = 0; b < batches.Count; b++)
            {
                int h = loader.ResizeFor(epoch, b)!.Value.MinSize;
                Assert.Contains(h, options.MinSizeChoices);
                Assert.All(batches[b], s => Assert.Equal((h * 6 / 5, h), (s.Width, s.Height)));
                seen.Add(h);
            }
            using var inline = new DetectionDataLoader(Shapes, options with { Workers = 0 });
            AssertSame(batches, Run(inline, epoch));
        }
        Assert.Equal(3, seen.Count);
        // one choice replaces MinSize outright; none keeps Resize
        using var one = new DetectionDataLoader(Shapes, Options(0, 1) with { MinSizeChoices = [50] });
        Assert.Equal(new ResizeSpec(50, 70), one.ResizeFor(4, 2));
        using var none = new DetectionDataLoader(Shapes, Options(0, 1) with { MinSizeChoices = [] });
        Assert.Equal(new ResizeSpec(60, 70), none.ResizeFor(4, 2));
    }

    [Fact]
    public void DropLastAndBatchCount()
    {
        using var keep = new DetectionDataLoader(Shapes, Options(0, 1) with { BatchSize = 5 });
        Assert.Equal(5, keep.BatchCount);
        Assert.Equal([5, 5, 5, 5, 3], keep.Epoch(0).Select(b => { using (b) return b.Count; }));
        using var drop = new DetectionDataLoader(Shapes, Options(2, 1) with { BatchSize = 5, DropLast = true });
        Assert.Equal(4, drop.BatchCount);
        Assert.Equal([5, 5, 5, 5], drop.Epoch(0).Select(b => { using (b) return b.Count; }));
    }

    [Fact]
    public void ClipBoxesClampsAndDropsDegenerateBoxes()
    {
        var ds = new FixedDataset(new RgbImage(10, 10), [
            new ObjectAnnotation(new Box(-2, 1, 5, 12), 0),
            new ObjectAnnotation(new Box(11, 1, 14, 3), 1),   // wholly outside after clipping
            new ObjectAnnotation(new Box(3, 3, 3, 6), 0) { Area = 0 },
        ]);
        using var loader = new DetectionDataLoader(ds, new DataLoaderOptions { Resize = null, FlipProbability = 0, Workers = 0 });
        using var batch = loader.Epoch(0).First();
        Assert.Equal([new Box(0, 1, 5, 10)], batch[0].Objects.Select(o => o.Box));
        using var raw = new DetectionDataLoader(ds, new DataLoaderOptions { Resize = null, FlipProbability = 0, Workers = 0, ClipBoxes = false });
        using var rawBatch = raw.Epoch(0).First();
        Assert.Equal(3, rawBatch[0].Objects.Count);
    }

    [Fact]
    public void CopyToPadsWithZeros()
    {
        using var loader = new DetectionDataLoader(Shapes, Options(0, 1) with { Resize = null, BatchSize = 2 });
        using var batch = loader.Epoch(0).First();
        var (w, h) = batch.PaddedSize(32);
        Assert.Equal((64, 64), (w, h));
        var nchw = new float[2 * 3 * h * w];
        Array.Fill(nchw, float.NaN);
        batch.CopyTo(nchw, w, h);
        for (int n = 0; n < 2; n++)
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++)
                    {
                        float v = nchw[((n * 3 + c) * h + y) * w + x];
                        float expected = x < 48 && y < 40 ? batch[n].Pixels[(c * 40 + y) * 48 + x] : 0f;
                        Assert.Equal(expected, v);
                    }
        Assert.Throws<ArgumentException>(() => batch.CopyTo(nchw, 40, 40));
    }

    [Fact]
    public void DisposedBatchReleasesItsPixels()
    {
        using var loader = new DetectionDataLoader(Shapes, Options(0, 1));
        var batch = loader.Epoch(0).First();
        Assert.Equal(3 * batch[0].Width * batch[0].Height, batch[0].Pixels.Length);
        batch.Dispose();
        Assert.Throws<ObjectDisposedException>(() => batch[0].Pixels.Length);
    }

    [Fact]
    public void BreakingOutAndDisposingStopTheWorkers()
    {
        var loader = new DetectionDataLoader(Shapes, Options(3, 2));
        foreach (var batch in loader.Epoch(0))
        {
            batch.Dispose();
            break;
        }
        Assert.Equal(0, loader.LiveWorkers);
        Assert.Equal(0, loader.ActiveRuns);

        using var e = loader.Epoch(1).GetEnumerator();
        Assert.True(e.MoveNext());
        e.Current.Dispose();
        Assert.Equal(1, loader.ActiveRuns);
        loader.Dispose();
        Assert.Equal(0, loader.LiveWorkers);
        Assert.Equal(0, loader.ActiveRuns);
        Assert.Throws<ObjectDisposedException>(() => e.MoveNext());
        Assert.Throws<ObjectDisposedException>(() => loader.Epoch(2));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    public void LoadErrorsSurfaceAtTheirBatch(int workers)
    {
        var failing = new FailingDataset(Shapes, failAt: 13);
        using var loader = new DetectionDataLoader(failing, Options(workers, 2) with { Shuffle = false });
        int delivered = 0;
        var e = Assert.Throws<InvalidDataException>(() =>
        {
            foreach (var batch in loader.Epoch(0))
            {
                batch.Dispose();
                delivered++;
            }
        });
        Assert.Equal("sample 13 is broken", e.Message);
        Assert.Equal(4, delivered); // batches 0–3 hold samples 0–11; batch 4 holds 12–14
        Assert.Equal(0, loader.LiveWorkers);
        Assert.Equal(0, loader.ActiveRuns);
    }

    [Fact]
    public void OptionsAreValidated()
    {
        foreach (var bad in new[]
        {
            new DataLoaderOptions { BatchSize = 0 }, new DataLoaderOptions { Workers = -1 }, new DataLoaderOptions { PrefetchBatches = 0 },
            new DataLoaderOptions { FlipProbability = 1.5 }, new DataLoaderOptions { MinSizeChoices = [100, 0] },
            new DataLoaderOptions { MinSizeChoices = [100], Resize = null },
        })
        {
            var e = Assert.Throws<ArgumentException>(() => new DetectionDataLoader(Shapes, bad));
            Assert.Equal("options", e.ParamName);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => new DetectionDataLoader(Shapes, new DataLoaderOptions { Resize = new ResizeSpec(0, 10) }));
    }

    private sealed class FixedDataset(RgbImage image, ObjectAnnotation[] objects) : IDetectionDataset
    {
        public IReadOnlyList<string> ClassNames { get; } = ["a", "b"];
        public int Count => 1;
        public DetectionSample Load(int index) => new("fixed", image, objects);
    }

    private sealed class FailingDataset(IDetectionDataset inner, int failAt) : IDetectionDataset
    {
        public IReadOnlyList<string> ClassNames => inner.ClassNames;
        public int Count => inner.Count;
        public DetectionSample Load(int index) => index == failAt ? throw new InvalidDataException($"sample {index} is broken") : inner.Load(index);
    }
}
