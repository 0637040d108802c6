// Parity with torchvision 0.14: the script builds VGG16 / ResNet-50 / ResNet-101 with random weights
// (and random batch-norm statistics), our backbones load its state dict through LoadTorchvision and
// must reproduce its feature maps on the same (2, 3, 64, 80) input, including the pool4 overrides
// and the stride-1 first block of layer3/layer4.
using GRcn.Detection.Autograd;
using GRcn.Detection.Backbones;
using GRcn.Kernels;
using Xunit.Abstractions;

namespace GRcn.Detection.Tests.Backbones;

public sealed class TorchvisionParityTests(ITestOutputHelper output)
{
    /// <summary>
    /// Allowed error relative to the largest |reference| of a feature map: float32 against float32 with
    /// different summation orders through up to 100 layers (observed errors are 0.4e-6 … 3e-6).
    /// </summary>
    private const double RelTolOfMax = 2e-5;

    /// <summary>Absolute floor of the allowed error.</summary>
    private const double AbsTol = 1e-6;

    [Fact]
    public void Vgg16_MatchesTorchvisionFeatures()
    {
        using var reference = TorchvisionReference.Generate("vgg16");
        using var vgg = new Vgg16(Device.Cpu, new SplitMix64(5));
        Assert.Equal(14_714_688, vgg.ParameterCount()); // sum(p.numel() for p in vgg16().features.parameters())
        var loaded = vgg.LoadTorchvision(reference.WeightsPath);
        Assert.Equal(26, loaded.Loaded.Count);
        Assert.Empty(loaded.Missing);
        Assert.Empty(loaded.Unexpected);
        Assert.Equal(6, loaded.Ignored.Count); // classifier.{0,3,6}.{weight,bias}
        output.WriteLine(loaded.ToString());

        using var x = reference.Load("input");
        var conv43 = TestUtil.Infer(x, (g, v) => vgg.Forward(g, v, 0, 23));
        Compare(reference, "conv4_3", conv43);
        using var c43 = Tensor.FromArray(conv43.Values, conv43.Shape);
        // features[:30] as one range and as [0, 23) then [23, 30)
        Compare(reference, "conv5_3", TestUtil.Infer(x, (g, v) => vgg.Forward(g, v, 0, 30)));
        Compare(reference, "conv5_3", TestUtil.Infer(c43, (g, v) => vgg.Forward(g, v, 23, 30)));
        Compare(reference, "pool5", TestUtil.Infer(x, (g, v) => vgg.Forward(g, v, 0, Vgg16Layout.Length)));

        var skip = new Dictionary<int, VggPool> { [23] = new VggPool.Skip() };
        Compare(reference, "conv5_3_nopool4", TestUtil.Infer(x, (g, v) => vgg.Forward(g, v, 0, 30, skip)));
        var s1 = new Dictionary<int, VggPool> { [23] = VggPool.MaxPoolStride1 };
        Compare(reference, "conv5_3_pool4s1", TestUtil.Infer(x, (g, v) => vgg.Forward(g, v, 0, 30, s1)));

        // a cloned conv5 branch with a caller-supplied pool4 (here the same 2×2/s1 max pool)
        using var branch = vgg.CloneRange(23, 30);
        var custom = new Dictionary<int, VggPool> { [23] = new VggPool.Custom((g, v) => g.MaxPool2d(v, MaxPool2dOptions.Create(2, 1))) };
        Compare(reference, "conv5_3_pool4s1", TestUtil.Infer(c43, (g, v) => branch.Forward(g, v, custom)));
    }

    [Theory]
    [InlineData(50)]
    [InlineData(101)]
    public void ResNet_MatchesTorchvisionLayers(int depth)
    {
        using var reference = TorchvisionReference.Generate($"resnet{depth}");
        using var net = new ResNet(Device.Cpu, new SplitMix64(7), depth);
        // torchvision's parameter count without fc and the batch-norm γ, β (buffers of our frozen batch norms)
        Assert.Equal(depth == 50 ? 23_454_912L : 42_394_816L, net.ParameterCount());
        var loaded = net.LoadTorchvision(reference.WeightsPath);
        int expected = depth == 50 ? 265 : 520; // torchvision's state dict without fc.* and num_batches_tracked
        Assert.Equal(expected, loaded.Loaded.Count);
        Assert.Empty(loaded.Missing);
        Assert.Empty(loaded.Unexpected);
        Assert.Contains("fc.weight", loaded.Ignored);
        Assert.Contains("layer1.0.downsample.1.num_batches_tracked", loaded.Ignored);
        output.WriteLine(loaded.ToString());

        using var x = reference.Load("input");
        var stem = TestUtil.Infer(x, net.Stem);
        Compare(reference, "stem", stem);
        var current = stem;
        var outputs = new List<(float[] Values, int[] Shape)>();
        for (int k = 1; k <= 4; k++)
        {
            using var input = Tensor.FromArray(current.Values, current.Shape);
            int layer = k;
            current = TestUtil.Infer(input, (g, v) => net.ForwardLayer(g, v, layer));
            Compare(reference, $"layer{k}", current);
            outputs.Add(current);
        }

        // same weights, first block at stride 1 (the G-RCN localisation branch / a stride-16 C5)
        using var c3 = Tensor.FromArray(outputs[1].Values, outputs[1].Shape);
        Compare(reference, "layer3_s1", TestUtil.Infer(c3, (g, v) => net.ForwardLayer(g, v, 3, firstStride: 1)));
        using var c4 = Tensor.FromArray(outputs[2].Values, outputs[2].Shape);
        Compare(reference, "layer4_s1", TestUtil.Infer(c4, (g, v) => net.ForwardLayer(g, v, 4, firstStride: 1)));
    }

    private void Compare(TorchvisionReference reference, string name, (float[] Values, int[] Shape) got)
    {
        using var want = reference.Load(name);
        Assert.Equal(want.Shape.ToArray(), got.Shape);
        double rel = TestUtil.AssertCloseToMax(want.ToArray<float>(), got.Values, RelTolOfMax, AbsTol, name);
        output.WriteLine($"{name} {want.ShapeString}: max error / max |ref| = {rel:E2}");
    }
}
