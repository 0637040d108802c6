// Shapes, names, block ranges and cloning of the VGG16 and ResNet backbones (small widths, small inputs).
using GRcn.Detection.Autograd;
using GRcn.Detection.Backbones;
using GRcn.Kernels;

namespace GRcn.Detection.Tests.Backbones;

public sealed class BackboneTests
{
    [Fact]
    public void Vgg16_NamesChannelsAndShapesFollowTorchvision()
    {
        using var vgg = new Vgg16(Device.Cpu, new SplitMix64(1), width: 0.25);
        var names = vgg.NamedParameters().Select(p => p.Name).ToList();
        var expected = Vgg16Layout.ConvIndices.SelectMany(i => new[] { $"features.{i}.weight", $"features.{i}.bias" }).ToList();
        Assert.Equal(expected, names);
        Assert.Equal(3, vgg.OutChannelsAt(0));
        Assert.Equal(16, vgg.OutChannelsAt(1));
        Assert.Equal(16, vgg.OutChannelsAt(5));   // after pool1
        Assert.Equal(32, vgg.OutChannelsAt(6));   // after conv2_1
        Assert.Equal(64, vgg.OutChannelsAt(16));
        Assert.Equal(128, vgg.OutChannelsAt(23)); // conv4_3
        Assert.Equal(128, vgg.OutChannelsAt(30)); // conv5_3 at width 0.25
        Assert.Equal(128, vgg.OutChannelsAt(Vgg16Layout.Length));
        Assert.Equal([32, 16, 3, 3], vgg.Conv(5).Weight.Shape.ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => vgg.Conv(4));
        Assert.Throws<ArgumentOutOfRangeException>(() => vgg.OutChannelsAt(32));

        using var x = TestUtil.Normal(new SplitMix64(2), 1, 3, 48, 40);
        Assert.Equal([1, 128, 3, 2], TestUtil.Infer(x, (g, v) => vgg.Forward(g, v, 0, 30)).Shape);         // stride 16
        Assert.Equal([1, 128, 6, 5], TestUtil.Infer(x, (g, v) => vgg.Forward(g, v, 0, 23)).Shape);         // stride 8
        var noPool4 = new Dictionary<int, VggPool> { [23] = new VggPool.Skip() };
        Assert.Equal([1, 128, 6, 5], TestUtil.Infer(x, (g, v) => vgg.Forward(g, v, 0, 30, noPool4)).Shape);
        var s1 = new Dictionary<int, VggPool> { [23] = VggPool.MaxPoolStride1 };
        Assert.Equal([1, 128, 5, 4], TestUtil.Infer(x, (g, v) => vgg.Forward(g, v, 0, 30, s1)).Shape);
        var bad = new Dictionary<int, VggPool> { [22] = new VggPool.Skip() };
        Assert.Throws<ArgumentException>(() => TestUtil.Infer(x, (g, v) => vgg.Forward(g, v, 0, 30, bad)));
        Assert.Throws<ArgumentException>(() => TestUtil.Infer(x, (g, v) => vgg.Forward(g, v, 5, 30))); // needs 16 channels
    }

    [Fact]
    public void Vgg16_KaimingFanOutInitAndZeroBias()
    {
        using var vgg = new Vgg16(Device.Cpu, new SplitMix64(3), width: 0.25);
        var w = vgg.Conv(28).Weight.Value.ToArray<float>(); // 128·128·9 values, σ = √(2 / fan_out), fan_out = 128·9
        double mean = w.Average(v => (double)v), std = Math.Sqrt(w.Average(v => (double)v * v) - mean * mean);
        Assert.InRange(mean, -0.01 * std, 0.01 * std);
        Assert.InRange(std / Math.Sqrt(2.0 / (128 * 9)), 0.99, 1.01);
        Assert.All(vgg.Conv(28).Bias!.Value.ToArray<float>(), b => Assert.Equal(0f, b));
    }

    [Fact]
    public void Vgg16_CloneRangeCopiesValuesIntoIndependentParameters()
    {
        using var vgg = new Vgg16(Device.Cpu, new SplitMix64(4), width: 0.125);
        using var branch = vgg.CloneRange(23, 31);
        Assert.Equal(["features.24.weight", "features.24.bias", "features.26.weight", "features.26.bias", "features.28.weight", "features.28.bias"],
            branch.NamedParameters().Select(p => p.Name).ToArray());
        Assert.Equal(vgg.OutChannelsAt(23), branch.InChannels);
        Assert.Equal(vgg.OutChannelsAt(31), branch.OutChannels);

        using var x = TestUtil.Normal(new SplitMix64(5), 2, vgg.OutChannelsAt(23), 8, 6);
        var pools = new Dictionary<int, VggPool> { [23] = VggPool.MaxPoolStride1 };
        var original = TestUtil.Infer(x, (g, v) => vgg.Forward(g, v, 23, 31, pools));
        var cloned = TestUtil.Infer(x, (g, v) => branch.Forward(g, v, pools));
        Assert.Equal(original.Shape, cloned.Shape);
        Assert.Equal(original.Values, cloned.Values);

        // changing the branch leaves the backbone alone
        Assert.NotSame(vgg.Conv(26).Weight, branch.Conv(26).Weight);
        branch.Conv(26).Weight.Value.Fill(0.01f);
        Assert.Equal(original.Values, TestUtil.Infer(x, (g, v) => vgg.Forward(g, v, 23, 31, pools)).Values);
        Assert.NotEqual(original.Values, TestUtil.Infer(x, (g, v) => branch.Forward(g, v, pools)).Values);
    }

    [Fact]
    public void Vgg16_GroupNormFollowsEveryConvNamedAfterItsRelu()
    {
        using var vgg = new Vgg16(Device.Cpu, new SplitMix64(6), width: 0.125, groupNormGroups: 32);
        var names = vgg.NamedParameters().Select(p => p.Name).ToList();
        var expected = Vgg16Layout.ConvIndices.SelectMany(i => new[]
            { $"features.{i}.weight", $"features.{i}.bias", $"features.{i + 1}.weight", $"features.{i + 1}.bias" }).ToList();
        Assert.Equal(expected, names);
        Assert.Equal(8, vgg.Norm(0)!.Groups);   // 8 channels at width 1/8: one channel per group
        Assert.Equal(32, vgg.Norm(28)!.Groups); // 64 channels
        Assert.Equal(24, GRcn.Detection.Nn.GroupNorm2d.GroupsFor(48, 32));
        Assert.Null(new Vgg16(Device.Cpu, new SplitMix64(6), width: 0.125).Norm(0));

        // each conv's output is normalised per sample and group before the ReLU: with γ = 1, β = 0 the
        // pre-ReLU map of conv1_1 has mean 0 and variance ≈ 1 in every (sample, channel) plane
        using var x = TestUtil.Normal(new SplitMix64(7), 2, 3, 16, 12);
        var y = TestUtil.Infer(x, (g, v) => vgg.Norm(0)!.Forward(g, vgg.Conv(0).Forward(g, v)));
        for (int plane = 0; plane < 2 * 8; plane++)
        {
            var values = y.Values.Skip(plane * 16 * 12).Take(16 * 12).Select(v => (double)v).ToArray();
            double mean = values.Average(), variance = values.Average(v => (v - mean) * (v - mean));
            Assert.InRange(mean, -1e-5, 1e-5);
            Assert.InRange(variance, 0.999, 1.0);
        }

        // a cloned branch copies the norms too
        vgg.Norm(26)!.Weight.Value.Fill(2f);
        using var branch = vgg.CloneRange(24, 30);
        Assert.Contains("features.27.weight", branch.NamedParameters().Select(p => p.Name));
        using var c4 = TestUtil.Normal(new SplitMix64(8), 1, vgg.OutChannelsAt(24), 6, 5);
        Assert.Equal(TestUtil.Infer(c4, (g, v) => vgg.Forward(g, v, 24, 30)).Values, TestUtil.Infer(c4, (g, v) => branch.Forward(g, v)).Values);
    }

    [Fact]
    public void ResNet50_NamesAndWidthFollowTorchvision()
    {
        using var net = new ResNet(Device.Cpu, new SplitMix64(6), 50, width: 0.25);
        var names = net.NamedParameters().Select(p => p.Name).ToList();
        Assert.Equal(265, names.Count); // torchvision resnet50 state dict: 320 − 53 num_batches_tracked − fc.{weight,bias}
        Assert.Equal(["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "layer1.0.conv1.weight", "layer1.0.bn1.weight"],
            names.Take(7).ToArray());
        Assert.Contains("layer1.0.downsample.0.weight", names);
        Assert.Contains("layer1.0.downsample.1.running_var", names);
        Assert.DoesNotContain("layer1.1.downsample.0.weight", names);
        Assert.Contains("layer4.2.bn3.running_var", names);
        Assert.DoesNotContain(names, n => n.EndsWith("conv1.bias", StringComparison.Ordinal));
        Assert.Equal(16, net.StemChannels);
        Assert.Equal([64, 128, 256, 512], Enumerable.Range(1, 4).Select(net.OutChannels).ToArray());
        Assert.Equal([3, 4, 6, 3], Enumerable.Range(1, 4).Select(k => net.Layer(k).Count).ToArray());
        Assert.Equal(2, net.Layer(3)[0].Stride);
        Assert.Equal([32, 32, 3, 3], net.Layer(2)[1].Conv2.Weight.Shape.ToArray());

        using var x = TestUtil.Normal(new SplitMix64(7), 1, 3, 64, 72);
        var c = TestUtil.Infer(x, net.Stem);
        Assert.Equal([1, 16, 16, 18], c.Shape);
        int[][] want = [[1, 64, 16, 18], [1, 128, 8, 9], [1, 256, 4, 5], [1, 512, 2, 3]];
        for (int k = 1; k <= 4; k++)
        {
            using var input = Tensor.FromArray(c.Values, c.Shape);
            int layer = k;
            c = TestUtil.Infer(input, (g, v) => net.ForwardLayer(g, v, layer));
            Assert.Equal(want[k - 1], c.Shape);
        }
    }

    [Fact]
    public void ResNet101_HasTorchvisionBlocks()
    {
        using var net = new ResNet(Device.Cpu, new SplitMix64(8), 101, width: 0.25);
        Assert.Equal([3, 4, 23, 3], Enumerable.Range(1, 4).Select(k => net.Layer(k).Count).ToArray());
        Assert.Equal(520, net.NamedParameters().Count);
        Assert.Contains(net.NamedParameters(), p => p.Name == "layer3.22.bn3.running_mean");
        Assert.Equal(512, net.OutChannels(4));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ResNet(Device.Cpu, new SplitMix64(1), 34));
    }

    [Fact]
    public void ResNet_ForwardLayerRangesAndStrideOverride()
    {
        using var net = new ResNet(Device.Cpu, new SplitMix64(9), 50, width: 0.125);
        using var c3 = TestUtil.Normal(new SplitMix64(10), 2, net.OutChannels(2), 8, 10);
        var full = TestUtil.Infer(c3, (g, v) => net.ForwardLayer(g, v, 3));
        Assert.Equal([2, net.OutChannels(3), 4, 5], full.Shape);
        var split = TestUtil.Infer(c3, (g, v) => net.ForwardLayer(g, net.ForwardLayer(g, v, 3, 0, 2), 3, 2));
        Assert.Equal(full.Values, split.Values);

        var s1 = TestUtil.Infer(c3, (g, v) => net.ForwardLayer(g, v, 3, firstStride: 1));
        Assert.Equal([2, net.OutChannels(3), 8, 10], s1.Shape);
        Assert.Throws<ArgumentException>(() => TestUtil.Infer(c3, (g, v) => net.ForwardLayer(g, v, 3, 1, firstStride: 1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => TestUtil.Infer(c3, (g, v) => net.ForwardLayer(g, v, 5)));
        // a block without a downsample path cannot change stride
        using var c4 = TestUtil.Normal(new SplitMix64(11), 1, net.OutChannels(3), 4, 4);
        Assert.Throws<ArgumentException>(() => TestUtil.Infer(c4, (g, v) => net.Layer(3)[1].Forward(g, v, 2)));
    }

    [Fact]
    public void Bottleneck_CloneCopiesValuesIntoIndependentParameters()
    {
        using var net = new ResNet(Device.Cpu, new SplitMix64(12), 50, width: 0.125);
        var block = net.Layer(3)[0];
        RandomiseBatchNorm(block, new SplitMix64(13));
        using var copy = block.Clone();
        Assert.Equal(block.NamedParameters().Select(p => p.Name), copy.NamedParameters().Select(p => p.Name));
        using var x = TestUtil.Normal(new SplitMix64(14), 1, block.InChannels, 8, 6);
        var a = TestUtil.Infer(x, (g, v) => block.Forward(g, v));
        var b = TestUtil.Infer(x, (g, v) => copy.Forward(g, v));
        Assert.Equal(a.Values, b.Values);
        Assert.Equal(TestUtil.Infer(x, (g, v) => block.Forward(g, v, 1)).Values, TestUtil.Infer(x, (g, v) => copy.Forward(g, v, 1)).Values);

        copy.Conv2.Weight.Value.Fill(0.02f);
        Assert.Equal(a.Values, TestUtil.Infer(x, (g, v) => block.Forward(g, v)).Values);
        Assert.NotEqual(a.Values, TestUtil.Infer(x, (g, v) => copy.Forward(g, v)).Values);
    }

    /// <summary>Random non-trivial frozen batch-norm statistics for every BN of <paramref name="module"/>.</summary>
    internal static void RandomiseBatchNorm(GRcn.Detection.Nn.Module module, SplitMix64 rng)
    {
        foreach (var (name, p) in module.NamedParameters())
        {
            if (!p.IsBuffer) continue;
            var v = new float[p.Value.Length];
            for (int i = 0; i < v.Length; i++)
            {
                v[i] = name.EndsWith("running_var", StringComparison.Ordinal) ? 0.5f + 1.5f * rng.NextFloat()
                    : name.EndsWith(".weight", StringComparison.Ordinal) ? 0.5f + rng.NextFloat()
                    : (float)(0.2 * rng.NextGaussian());
            }
            p.Load(v);
        }
        GRcn.Detection.Nn.StateVersion.Bump();
    }
}
