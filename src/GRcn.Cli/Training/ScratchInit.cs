// Initialisation for training from scratch: the RoI head's fully connected layers (fc6, fc7
// and their copies in two-head variants) are redrawn with He/Kaiming normal initialisation,
// σ = √(2 / fan_in), the ReLU-preserving choice. The engine draws them with PyTorch's nn.Linear
// default (uniform, bound 1/√fan_in, √6 times smaller in σ), which suits heads on a pretrained
// backbone but shrinks the signal of a from-scratch network at every layer; on the synthetic
// shapes the He initialisation fits the training images about half as fast again.
using GRcn.Detection.Model;

namespace GRcn.Cli.Training;

internal static class ScratchInit
{
    /// <summary>Redraws every 2-D "roi_head*.weight" (fc layers of the RoI heads) of <paramref name="detector"/>; returns how many.</summary>
    public static int HeInitRoiHeads(Detector detector, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(detector);
        var rng = new Random(unchecked((int)(seed * 0x9E3779B1UL) ^ 0x5EED));
        int count = 0;
        foreach (var (name, p) in detector.Parameters)
        {
            if (!name.StartsWith("roi_head", StringComparison.Ordinal) || !name.EndsWith(".weight", StringComparison.Ordinal) || p.Value.Shape.Length != 2)
                continue;
            int outF = p.Value.Shape[0], fanIn = p.Value.Shape[1];
            var w = new float[outF * fanIn];
            double sigma = Math.Sqrt(2.0 / fanIn);
            // Box–Muller pairs
            for (int i = 0; i < w.Length; i += 2)
            {
                double r = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())), t = 2 * Math.PI * rng.NextDouble();
                w[i] = (float)(sigma * r * Math.Cos(t));
                if (i + 1 < w.Length) w[i + 1] = (float)(sigma * r * Math.Sin(t));
            }
            p.Load(w);
            count++;
        }
        return count;
    }
}
