// RPN proposal selection on the GPU devices against the CPU backend: random head outputs of
// several images (pre-NMS-N below and above the anchor count, post-NMS-N cutting), quantised logits
// (ties ordered by anchor index), NaN and huge deltas (dropped or clamped), every box filtered
// out, and the bitonic sort path at a small size.
using GRcn.Kernels.Gpu;

namespace GRcn.Kernels.GpuTests;

public class RpnProposalsTests
{
    private static readonly RpnProposalOptions s_options = new(50, 20, 0.7, 1e-3f, 0f, new BoxCoding(1f, 1f, 1f, 1f, 4.135166556742356f));

    /// <summary>Head outputs (N, A, H, W) and (N, 4A, H, W) and valid anchors (H·W·A, 4) in a 64-pixel image.</summary>
    private static (float[] Objectness, float[] Deltas, float[] Anchors) Inputs(int seed, int n, int a, int h, int w, bool quantised = false)
    {
        int p = a * h * w;
        var obj = TestData.Uniform(seed, n * p, -4f, 4f);
        if (quantised) obj = obj.Select(v => MathF.Round(v)).ToArray();
        var deltas = TestData.Uniform(seed + 1, 4 * n * p, -1f, 1f);
        var corners = TestData.Uniform(seed + 2, 4 * p, 0f, 56f);
        var anchors = new float[4 * p];
        for (int i = 0; i < p; i++)
        {
            anchors[4 * i] = corners[4 * i];
            anchors[4 * i + 1] = corners[4 * i + 1];
            anchors[4 * i + 2] = corners[4 * i] + 2f + corners[4 * i + 2] / 4;
            anchors[4 * i + 3] = corners[4 * i + 1] + 2f + corners[4 * i + 3] / 4;
        }
        return (obj, deltas, anchors);
    }

    private static void Compare(GpuDevice d, (float[] Objectness, float[] Deltas, float[] Anchors) x, int n, int a, int h, int w,
        RpnProposalOptions options, string what)
    {
        int p = a * h * w;
        for (int image = 0; image < n; image++)
        {
            var (wantBoxes, wantScores) = Run(Device.Cpu, x, n, a, h, w, image, options);
            var (gotBoxes, gotScores) = Run(d, x, n, a, h, w, image, options);
            Assert.True(wantScores.Length == gotScores.Length, $"{what}, image {image}: {gotScores.Length} proposals, expected {wantScores.Length}");
            // exp and the sigmoid are the device's: the last bit may differ
            Close.Assert(wantBoxes, gotBoxes, 1e-5, 1e-5, $"{what}, image {image}: boxes");
            Close.Assert(wantScores, gotScores, 1e-6, 1e-7, $"{what}, image {image}: scores");
        }
    }

    private static (float[] Boxes, float[] Scores) Run(Device device, (float[] Objectness, float[] Deltas, float[] Anchors) x, int n, int a, int h, int w,
        int image, RpnProposalOptions options)
    {
        using var o = TestData.On(device, x.Objectness, n, a, h, w);
        using var dl = TestData.On(device, x.Deltas, n, 4 * a, h, w);
        using var an = TestData.On(device, x.Anchors, a * h * w, 4);
        var (boxes, scores) = RpnProposals.Select(o, dl, an, image, 64, 60, options);
        using (boxes)
        using (scores)
            return (boxes.ToArray<float>(), scores.ToArray<float>());
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void ProposalsMatchTheCpuBackend(string name)
    {
        var d = GpuDevices.Get(name);
        Compare(d, Inputs(1, 2, 3, 5, 7), 2, 3, 5, 7, s_options, "pre-NMS 50 of 105");
        Compare(d, Inputs(2, 1, 9, 4, 4), 1, 9, 4, 4, s_options with { PreNmsTopN = 1000, PostNmsTopN = 1000, NmsThreshold = 0.5 }, "every anchor");
        Compare(d, Inputs(3, 2, 3, 6, 5, quantised: true), 2, 3, 6, 5, s_options, "tied logits");
        Compare(d, Inputs(4, 1, 3, 5, 5), 1, 3, 5, 5, s_options with { MinSize = 8f, ScoreThreshold = 0.3f }, "size and score filters");
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void NaNAndHugeDeltasAreDroppedOrClampedAsOnTheCpu(string name)
    {
        var d = GpuDevices.Get(name);
        var x = Inputs(5, 1, 3, 4, 4);
        for (int i = 0; i < x.Deltas.Length; i += 7) x.Deltas[i] = float.NaN;
        for (int i = 3; i < x.Deltas.Length; i += 11) x.Deltas[i] = 1e6f;
        x.Objectness[2] = float.NaN;
        Compare(d, x, 1, 3, 4, 4, s_options, "NaN and huge deltas");
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void EveryBoxFilteredGivesNoProposals(string name)
    {
        var d = GpuDevices.Get(name);
        var (boxes, scores) = Run(d, Inputs(6, 1, 3, 3, 3), 1, 3, 3, 3, 0, s_options with { ScoreThreshold = 2f });
        Assert.Empty(boxes);
        Assert.Empty(scores);
    }

    [Theory]
    [MemberData(nameof(GpuDevices.Names), MemberType = typeof(GpuDevices))]
    public void TheBitonicSortPathGivesTheSameProposals(string name)
    {
        var d = GpuDevices.Get(name);
        GpuBackend.NmsForceBitonic = 1;
        GpuBackend.NmsSortChunk = 8;
        try
        {
            Compare(d, Inputs(7, 1, 3, 6, 7, quantised: true), 1, 3, 6, 7, s_options with { PreNmsTopN = 90 }, "bitonic");
        }
        finally
        {
            GpuBackend.NmsForceBitonic = 0;
            GpuBackend.NmsSortChunk = 0;
        }
    }

    [Fact]
    public void BadArgumentsNameTheParameter()
    {
        using var o = Tensor.Zeros(Device.Cpu, 1, 3, 2, 2);
        using var dl = Tensor.Zeros(Device.Cpu, 1, 12, 2, 2);
        using var an = Tensor.Zeros(Device.Cpu, 12, 4);
        using var wrong = Tensor.Zeros(Device.Cpu, 1, 8, 2, 2);
        Assert.Equal("deltas", Assert.Throws<ArgumentException>(() => RpnProposals.Select(o, wrong, an, 0, 10, 10, s_options)).ParamName);
        Assert.Equal("anchors", Assert.Throws<ArgumentException>(() => RpnProposals.Select(o, dl, dl, 0, 10, 10, s_options)).ParamName);
        Assert.Equal("image", Assert.Throws<ArgumentOutOfRangeException>(() => RpnProposals.Select(o, dl, an, 1, 10, 10, s_options)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => RpnProposals.Select(o, dl, an, 0, 10, 10, s_options with { Coding = s_options.Coding with { Wx = 0f } }));
    }
}
