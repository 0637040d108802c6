// Gradient check of a whole tiny G-RCN detector: the sum of the RPN and RoI-head losses
// (sampling fixed by the seed) against central finite differences in a sample of weights of
// every part — trunk, loc branch copy, RPN, context attention, head, predictors. The RPN's
// proposals are held at those of the analytic pass, since their selection is discontinuous.
using GRcn.Detection.Autograd;
using GRcn.Detection.Model;
using GRcn.Kernels;

namespace GRcn.Detection.Tests.Model;

public sealed class DetectorGradientTests
{
    private static double Loss(GRcnNetwork net, PreparedImage[] batch, bool record, out Graph? graph)
    {
        var g = new Graph(Device.Cpu, training: true, recordGradients: record, seed: 9);
        int h = batch[0].Height, w = batch[0].Width;
        var px = batch.SelectMany(b => b.Pixels).ToArray();
        var images = g.Constant(Tensor.FromSpan<float>(Device.Cpu, px, batch.Length, 3, h, w));
        var (loss, terms, _) = net.Forward(g, images, batch.Select(b => new BatchImage(b.Height, b.Width, b.OriginalHeight, b.OriginalWidth, b.Boxes, b.Labels)).ToArray(),
            training: true, new SplitMix64(21));
        if (record) g.Backward(loss!);
        graph = g;
        return terms.Total;
    }

    [Theory]
    [InlineData("g-rcn", "backbone.features.10.weight", "backbone_loc.features.26.weight", "rpn.head.conv.weight", "context_cls.w_q", "roi_head.fc6.weight", "box_predictor.bbox_pred.weight")]
    [InlineData("conv(2,2,2)/loc+double-head", "loc_pool4.weight", "roi_head_loc.block0.conv1.weight", "box_predictor_loc.bbox_pred.weight", "box_predictor.cls_score.weight")]
    public void WholeDetectorLossMatchesFiniteDifferences(string variant, params string[] names)
    {
        using var det = Detector.Create(DetectorTests.Small(variant, width: 0.0625), seed: 4);
        var batch = TinyData.Batch(0, 2);
        var net = det.Network;
        net.ZeroGrad();
        Loss(net, batch, record: true, out var g0);
        g0!.Dispose();
        // proposals are a discrete choice (top-N, NMS): hold them fixed so the loss is continuous in the weights
        net.FixedProposals = net.LastProposals;
        var rng = new Random(3);
        int checkedCount = 0;
        foreach (var name in names)
        {
            var p = det.Parameters.Single(x => x.Name == name).Parameter;
            var grad = p.Grad!.ToArray<float>();
            var values = p.Value.ToArray<float>();
            // probe the largest-gradient element and a few random ones
            var probes = new List<int> { Array.IndexOf(grad, grad.MaxBy(MathF.Abs)) };
            for (int i = 0; i < 3; i++) probes.Add(rng.Next(values.Length));
            foreach (int i in probes)
            {
                float orig = values[i];
                float eps = 1e-2f * MathF.Max(1e-1f, MathF.Abs(orig));
                values[i] = orig + eps;
                p.Value.CopyFrom<float>(values);
                double plus = Loss(net, batch, false, out var g1);
                g1!.Dispose();
                values[i] = orig - eps;
                p.Value.CopyFrom<float>(values);
                double minus = Loss(net, batch, false, out var g2);
                g2!.Dispose();
                values[i] = orig;
                p.Value.CopyFrom<float>(values);
                double numeric = (plus - minus) / (2 * eps);
                double tol = 0.03 * Math.Max(Math.Abs(numeric), Math.Abs(grad[i])) + 3e-4;
                Assert.True(Math.Abs(numeric - grad[i]) <= tol, $"{name}[{i}]: analytic {grad[i]:G5}, numeric {numeric:G5}");
                checkedCount++;
            }
        }
        Assert.Equal(4 * names.Length, checkedCount);
    }
}
