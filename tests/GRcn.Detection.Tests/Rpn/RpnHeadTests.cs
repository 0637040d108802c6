using GRcn.Detection.Autograd;
using GRcn.Detection.Rpn;
using GRcn.Kernels;

namespace GRcn.Detection.Tests.Rpn;

public class RpnHeadTests
{
    [Fact]
    public void NamesAndShapesFollowTorchvision()
    {
        using var head = new RpnHead(Device.Cpu, new SplitMix64(1), 16, 9);
        var names = head.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter.Value.ShapeString);
        Assert.Equal(new Dictionary<string, string>
        {
            ["conv.weight"] = "(16, 16, 3, 3)",
            ["conv.bias"] = "(16,)",
            ["cls_logits.weight"] = "(9, 16, 1, 1)",
            ["cls_logits.bias"] = "(9,)",
            ["bbox_pred.weight"] = "(36, 16, 1, 1)",
            ["bbox_pred.bias"] = "(36,)",
        }, names);
    }

    [Fact]
    public void InitialisesWeightsNormal001AndBiasesZero()
    {
        using var head = new RpnHead(Device.Cpu, new SplitMix64(2), 32, 9);
        var w = head.Conv.Weight.Value.ToArray<float>();
        double std = Math.Sqrt(w.Select(v => (double)v * v).Average());
        // 9216 draws: the sample standard deviation is within a few percent of 0.01
        Assert.InRange(std, 0.0095, 0.0105);
        Assert.All(head.Conv.Bias!.Value.ToArray<float>(), b => Assert.Equal(0f, b));
        Assert.All(head.BboxPred.Bias!.Value.ToArray<float>(), b => Assert.Equal(0f, b));
    }

    [Fact]
    public void ForwardGivesObjectnessAndDeltaMaps()
    {
        using var head = new RpnHead(Device.Cpu, new SplitMix64(3), 4, 3);
        using var g = new Graph(Device.Cpu, training: false, recordGradients: false);
        var x = g.Constant(Tensor.Zeros(Device.Cpu, 2, 4, 5, 7));
        var (obj, deltas) = head.Forward(g, x);
        Assert.Equal([2, 3, 5, 7], obj.Shape.ToArray());
        Assert.Equal([2, 12, 5, 7], deltas.Shape.ToArray());
        Assert.Throws<ArgumentException>(() => head.Forward(g, g.Constant(Tensor.Zeros(Device.Cpu, 2, 5, 5, 7))));
    }
}
