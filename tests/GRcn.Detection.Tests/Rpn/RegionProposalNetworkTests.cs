using System.Text.Json;
using GRcn.Detection.Autograd;
using GRcn.Detection.Rpn;
using GRcn.Kernels;

namespace GRcn.Detection.Tests.Rpn;

public class RegionProposalNetworkTests
{
    // proposals from the fixture's own objectness/deltas: same float32 steps, exp may differ by an ulp
    private const double BoxRtol = 0, BoxAtol = 5e-5, ScoreAtol = 5e-7;
    // the head's convolutions against torch's: different summation order
    private const double HeadAtol = 1e-5;
    // losses: double accumulation here, float32 in torch
    private const double LossRtol = 1e-6;
    // end to end: proposals inherit the head's rounding through exp
    private const double EndToEndBoxAtol = 1e-4, EndToEndScoreAtol = 1e-6;

    private static readonly JsonElement Fixture = RpnFixtures.Load("rpn_forward.json");

    private static RpnOptions Options(JsonElement c, int batchSizePerImage = 100000) => new()
    {
        AnchorSizes = [.. Fixture.GetProperty("sizes").EnumerateArray().Select(v => (float)v.GetDouble())],
        AspectRatios = [.. Fixture.GetProperty("ratios").EnumerateArray().Select(v => (float)v.GetDouble())],
        PreNmsTopNTrain = c.GetProperty("pre_nms_top_n").GetInt32(),
        PreNmsTopNTest = c.GetProperty("pre_nms_top_n").GetInt32(),
        PostNmsTopNTrain = c.GetProperty("post_nms_top_n").GetInt32(),
        PostNmsTopNTest = c.GetProperty("post_nms_top_n").GetInt32(),
        ScoreThreshold = (float)c.GetProperty("score_thresh").GetDouble(),
        // every labelled anchor sampled, as in the fixture, so the losses do not depend on the random choice
        BatchSizePerImage = batchSizePerImage,
    };

    private static RegionProposalNetwork LoadedRpn(RpnOptions options)
    {
        var rpn = new RegionProposalNetwork(Device.Cpu, new SplitMix64(0), Fixture.GetProperty("c").GetInt32(), options);
        rpn.Head.Conv.Weight.Load(Fixture.GetProperty("conv_weight").Floats());
        rpn.Head.Conv.Bias!.Load(Fixture.GetProperty("conv_bias").Floats());
        rpn.Head.ClsLogits.Weight.Load(Fixture.GetProperty("cls_weight").Floats());
        rpn.Head.ClsLogits.Bias!.Load(Fixture.GetProperty("cls_bias").Floats());
        rpn.Head.BboxPred.Weight.Load(Fixture.GetProperty("bbox_weight").Floats());
        rpn.Head.BboxPred.Bias!.Load(Fixture.GetProperty("bbox_bias").Floats());
        return rpn;
    }

    private static (int Height, int Width)[] ImageSizes() =>
        [.. Fixture.GetProperty("image_sizes").EnumerateArray().Select(s => (s[0].GetInt32(), s[1].GetInt32()))];

    private static float[][]? Gt(JsonElement c) =>
        c.TryGetProperty("gt", out var gt) ? [.. gt.EnumerateArray().Select(b => b.Floats())] : null;

    [Fact]
    public void AnchorsMatchTorchvision()
    {
        var gen = new AnchorGenerator([16f, 32f], [0.5f, 1f, 2f]);
        int stride = Fixture.GetProperty("stride").GetInt32();
        Assert.Equal(Fixture.GetProperty("anchors").Floats(), gen.Anchors(Fixture.GetProperty("feat_h").GetInt32(), Fixture.GetProperty("feat_w").GetInt32(), stride, stride));
    }

    [Fact]
    public void FilterProposalsMatchesTorchvision()
    {
        int n = Fixture.GetProperty("n").GetInt32(), h = Fixture.GetProperty("feat_h").GetInt32(), w = Fixture.GetProperty("feat_w").GetInt32();
        var objectness = Fixture.GetProperty("objectness").Floats();
        var deltas = Fixture.GetProperty("deltas").Floats();
        var anchors = Fixture.GetProperty("anchors").Floats();
        int a = Fixture.GetProperty("objectness").Shape()[1], p = h * w * a;
        var sizes = ImageSizes();
        foreach (var c in Fixture.GetProperty("cases").EnumerateArray())
        {
            using var rpn = new RegionProposalNetwork(Device.Cpu, new SplitMix64(0), 1, Options(c));
            for (int i = 0; i < n; i++)
            {
                var obj = new float[p];
                var del = new float[4 * p];
                ToAnchorOrder(objectness.AsSpan(i * p, p), 1, a, h, w, obj);
                ToAnchorOrder(deltas.AsSpan(i * 4 * p, 4 * p), 4, a, h, w, del);
                var (boxes, scores) = rpn.FilterProposals(anchors, obj, del, sizes[i].Height, sizes[i].Width, c.GetProperty("training").GetBoolean(), Device.Cpu);
                string what = $"{c.GetProperty("name").GetString()} image {i}";
                RpnFixtures.AssertClose(c.GetProperty("proposals")[i].Floats(), boxes, BoxRtol, BoxAtol, what + " boxes");
                RpnFixtures.AssertClose(c.GetProperty("scores")[i].Floats(), scores, 0, ScoreAtol, what + " scores");
            }
        }
    }

    [Fact]
    public void ForwardMatchesTorchvisionProposalsAndLosses()
    {
        int stride = Fixture.GetProperty("stride").GetInt32();
        var features = Fixture.GetProperty("features");
        foreach (var c in Fixture.GetProperty("cases").EnumerateArray())
        {
            bool training = c.GetProperty("training").GetBoolean();
            using var rpn = LoadedRpn(Options(c));
            using var g = new Graph(Device.Cpu, training, recordGradients: training);
            var x = g.Constant(Tensor.FromSpan<float>(Device.Cpu, features.Floats(), features.Shape()));
            var gt = Gt(c);
            var outp = rpn.Forward(g, x, stride, stride, ImageSizes(), gt, new SplitMix64(5));
            string name = c.GetProperty("name").GetString()!;
            for (int i = 0; i < outp.Proposals.Count; i++)
            {
                RpnFixtures.AssertClose(c.GetProperty("proposals")[i].Floats(), outp.Proposals[i], 0, EndToEndBoxAtol, $"{name} image {i} boxes");
                RpnFixtures.AssertClose(c.GetProperty("scores")[i].Floats(), outp.Scores[i], 0, EndToEndScoreAtol, $"{name} image {i} scores");
            }
            if (gt is null)
            {
                Assert.Null(outp.ObjectnessLoss);
                Assert.Null(outp.BoxLoss);
                continue;
            }
            var labels = c.GetProperty("labels").EnumerateArray().Select(l => l.Floats()).ToArray();
            Assert.Equal(labels.Sum(l => l.Count(v => v == 1f)), outp.SampledPositives);
            Assert.Equal(labels.Sum(l => l.Count(v => v == 0f)), outp.SampledNegatives);
            RpnFixtures.AssertClose([(float)c.GetProperty("loss_objectness").GetDouble()], outp.ObjectnessLoss!.Value.ToArray<float>(), LossRtol, 0, name + " objectness loss");
            RpnFixtures.AssertClose([(float)c.GetProperty("loss_rpn_box_reg").GetDouble()], outp.BoxLoss!.Value.ToArray<float>(), LossRtol, 0, name + " box loss");
        }
    }

    [Fact]
    public void HeadOutputsMatchTorchvision()
    {
        var c = Fixture.GetProperty("cases")[0];
        using var rpn = LoadedRpn(Options(c));
        using var g = new Graph(Device.Cpu, training: false, recordGradients: false);
        var features = Fixture.GetProperty("features");
        var (obj, deltas) = rpn.Head.Forward(g, g.Constant(Tensor.FromSpan<float>(Device.Cpu, features.Floats(), features.Shape())));
        RpnFixtures.AssertClose(Fixture.GetProperty("objectness").Floats(), obj.Value.ToArray<float>(), 0, HeadAtol, "objectness");
        RpnFixtures.AssertClose(Fixture.GetProperty("deltas").Floats(), deltas.Value.ToArray<float>(), 0, HeadAtol, "deltas");
    }

    [Fact]
    public void AssignTargetsMatchesTorchvisionLabels()
    {
        var c = Fixture.GetProperty("cases")[3];
        using var rpn = new RegionProposalNetwork(Device.Cpu, new SplitMix64(0), 1, Options(c));
        var anchors = Fixture.GetProperty("anchors").Floats();
        var gt = Gt(c)!;
        for (int i = 0; i < gt.Length; i++)
        {
            var t = rpn.AssignTargets(anchors, gt[i]);
            Assert.Equal(c.GetProperty("labels")[i].Floats().Select(v => (int)v), t.Labels);
        }
        // no GT: every anchor negative
        Assert.All(rpn.AssignTargets(anchors, []).Labels, l => Assert.Equal(0, l));
    }

    [Fact]
    public void DefaultSamplingIsDeterministicAndBounded()
    {
        var c = Fixture.GetProperty("cases")[3];
        int stride = Fixture.GetProperty("stride").GetInt32();
        var features = Fixture.GetProperty("features");
        float[] Losses(ulong seed, out int pos, out int neg)
        {
            using var rpn = LoadedRpn(Options(c, batchSizePerImage: 32));
            using var g = new Graph(Device.Cpu, training: true, recordGradients: false);
            var x = g.Constant(Tensor.FromSpan<float>(Device.Cpu, features.Floats(), features.Shape()));
            var o = rpn.Forward(g, x, stride, stride, ImageSizes(), Gt(c), new SplitMix64(seed));
            pos = o.SampledPositives;
            neg = o.SampledNegatives;
            return [o.ObjectnessLoss!.Value.ToArray<float>()[0], o.BoxLoss!.Value.ToArray<float>()[0]];
        }
        var l1 = Losses(9, out int p1, out int n1);
        var l2 = Losses(9, out _, out _);
        var l3 = Losses(10, out _, out _);
        Assert.Equal(l1, l2);
        Assert.NotEqual(l1[0], l3[0]);
        // 3 and 4 positives (fewer than 16 each), the rest of 32 per image negative
        Assert.Equal(7, p1);
        Assert.Equal(64 - 7, n1);
    }

    [Fact]
    public void InferenceWithDefaultsGivesSortedClippedProposals()
    {
        using var rpn = new RegionProposalNetwork(Device.Cpu, new SplitMix64(4), 8);
        using var g = new Graph(Device.Cpu, training: false, recordGradients: false);
        var rng = new SplitMix64(8);
        var data = new float[2 * 8 * 6 * 9];
        for (int i = 0; i < data.Length; i++) data[i] = (float)rng.NextGaussian();
        var x = g.Constant(Tensor.FromSpan<float>(Device.Cpu, data, 2, 8, 6, 9));
        var o = rpn.Forward(g, x, 16, 16, [(96, 144), (80, 100)], null, rng);
        Assert.Equal(2, o.Proposals.Count);
        (int H, int W)[] sizes = [(96, 144), (80, 100)];
        for (int i = 0; i < 2; i++)
        {
            var b = o.Proposals[i];
            var s = o.Scores[i];
            Assert.Equal(4 * s.Length, b.Length);
            Assert.InRange(s.Length, 1, 300);
            for (int j = 0; j + 1 < s.Length; j++) Assert.True(s[j] >= s[j + 1], $"scores not descending at {j}");
            for (int j = 0; j < s.Length; j++)
            {
                Assert.InRange(b[4 * j], 0f, b[4 * j + 2] - 1e-3f);
                Assert.InRange(b[4 * j + 1], 0f, b[4 * j + 3] - 1e-3f);
                Assert.InRange(b[4 * j + 2], 0f, sizes[i].W);
                Assert.InRange(b[4 * j + 3], 0f, sizes[i].H);
            }
        }
    }

    [Fact]
    public void RejectsMismatchedInputs()
    {
        using var rpn = new RegionProposalNetwork(Device.Cpu, new SplitMix64(4), 2);
        using var g = new Graph(Device.Cpu, training: true, recordGradients: false);
        var x = g.Constant(Tensor.Zeros(Device.Cpu, 1, 2, 3, 3));
        Assert.Throws<ArgumentException>(() => rpn.Forward(g, x, 16, 16, [(48, 48), (48, 48)], null, new SplitMix64(0)));
        Assert.Throws<ArgumentException>(() => rpn.Forward(g, x, 16, 16, [(48, 48)], [new float[3]], new SplitMix64(0)));
        Assert.Throws<ArgumentException>(() => new RegionProposalNetwork(Device.Cpu, new SplitMix64(4), 2, new RpnOptions { BgIouThreshold = 0.8f }));
    }

    /// <summary>
    /// Reorders one image's head output from channel-major (A·K, H, W) to anchor order (H·W·A, K):
    /// dst[((y·W + x)·A + a)·K + k] = src[(a·K + k)·H·W + y·W + x] (permute_and_flatten).
    /// </summary>
    private static void ToAnchorOrder(ReadOnlySpan<float> src, int k, int a, int h, int w, Span<float> dst)
    {
        int hw = h * w;
        for (int ak = 0; ak < a * k; ak++)
        {
            var plane = src.Slice(ak * hw, hw);
            int anchor = ak / k, comp = ak % k;
            for (int s = 0; s < hw; s++) dst[(s * a + anchor) * k + comp] = plane[s];
        }
    }
}
