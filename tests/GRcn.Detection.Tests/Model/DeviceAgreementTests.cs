// The engine on a GPU device, verified on the emulator (ILGPU's CPU accelerator running the
// same kernels as CUDA): for tiny detectors of three variants, the first training steps on
// the emulator give the CPU's losses and parameter updates within float tolerance, Detect
// gives the CPU's detections, training steps on the emulator make the loss fall, and
// checkpoints move between the emulator and the CPU in both directions, and a run resumed on the
// emulator continues as the original (bit for bit from its own checkpoint).
//
// Size: the emulator runs every GPU thread as an OS thread; a 64-pixel image costs ~40 s per
// inference and ~2.5 min per training step of even the tiniest detector on a 2-core machine,
// a 32-pixel one ~5 s and ~25 s. So these cases use one 32-pixel image, a sixteenth-width
// VGG16 and few proposals and RoIs (Tiny below).
//
// Tolerances: the GPU kernels sum in another order than the CPU's (GEMM tiles, reductions in
// trees and warps), so values differ in the last bits of float32 and the differences grow
// through the layers and back. Losses agree to 1e-4 relative (observed: equal; summed in
// double on the host from logits that differ by ~1e-7 relative); each parameter tensor's
// update Δw = w_after − w_before agrees to 2e-3 of its largest |Δw| plus 1e-6 absolute
// (observed ≤ 1.1e-3: gradients of tiny weights are themselves sums of many products);
// detections agree in count and label, boxes within 1e-3·(1 + |x|) px and scores within 1e-4.
// Discrete choices (top-N, NMS, sampling) must then agree, as they do for the losses to agree.
using GRcn.Detection.Data;
using GRcn.Detection.Model;
using GRcn.Detection.Training;
using GRcn.Detection.Variants;
using GRcn.Kernels;
using Xunit.Abstractions;

namespace GRcn.Detection.Tests.Model;

public sealed class DeviceAgreementTests(ITestOutputHelper output)
{
    private const double LossRelTolerance = 1e-4;
    private const double UpdateRelTolerance = 2e-3;
    private const double UpdateAbsTolerance = 1e-6;
    private const int Size = 32;

    private static readonly TrainingOptions Sgd = new() { LearningRate = 0.02, WeightDecay = 5e-4 };

    /// <summary>A detector small enough for the emulator: 32-pixel images, 3 anchor sizes, few proposals and RoIs.</summary>
    private static DetectorConfig Tiny(string variant)
    {
        var c = DetectorTests.Small(variant);
        return c with
        {
            Rpn = c.Rpn with { AnchorSizes = [8, 16, 32], PreNmsTopNTrain = 128, PostNmsTopNTrain = 32, PreNmsTopNTest = 64, PostNmsTopNTest = 16 },
            RoiHeads = c.RoiHeads with { BatchSizePerImage = 16, FcDim = 16 },
            Input = c.Input with { MinSize = Size, MaxSize = Size },
        };
    }

    [Theory]
    [InlineData("faster-rcnn")]
    [InlineData("g-rcn")]
    [InlineData("g-rcn+roi-align-v2+double-head")]
    public void FirstTrainingStepsAndDetectionsAgreeWithTheCpu(string variant)
    {
        var config = Tiny(variant);
        using var cpu = Detector.Create(config, Device.Cpu, seed: 7, options: Sgd);
        using var emu = Detector.Create(config, Device.Emulator, seed: 7, options: Sgd);
        Assert.Equal(Device.Emulator, emu.Device);
        AssertSameParameters(cpu, emu, 0, "initial weights");
        var batch = TinyData.Batch(0, 1, Size);
        // g-rcn also trains a third step and must lower the loss (on the same image)
        int steps = variant == "g-rcn" ? 3 : 2;
        double worstLoss = 0, worstUpdate = 0;
        var totals = new List<double>();
        for (int step = 0; step < steps; step++)
        {
            var before = Snapshot(cpu);
            var tc = cpu.TrainStep(batch);
            var te = emu.TrainStep(batch);
            totals.Add(te.Total);
            output.WriteLine($"{variant} step {step}: cpu {tc}, emulator {te}");
            foreach (var (name, c, e) in new[]
                     {
                         ("rpn objectness", tc.RpnObjectness, te.RpnObjectness), ("rpn box", tc.RpnBox, te.RpnBox),
                         ("classifier", tc.Classifier, te.Classifier), ("box regression", tc.BoxRegression, te.BoxRegression),
                     })
            {
                double rel = Math.Abs(c - e) / Math.Max(Math.Abs(c), 1e-3);
                worstLoss = Math.Max(worstLoss, rel);
                Assert.True(rel <= LossRelTolerance, $"{variant} step {step} {name}: cpu {c}, emulator {e} (relative {rel:E2})");
            }
            worstUpdate = Math.Max(worstUpdate, AssertSameUpdates(before, cpu, emu, $"{variant} step {step}"));
        }
        if (steps == 3) Assert.True(totals[2] < totals[0] * 0.995, $"emulator loss {totals[0]:F4} → {totals[2]:F4} did not fall");
        // parameters (and so gradients and optimiser state) stayed on the device
        Assert.All(emu.Parameters, p => Assert.Equal(Device.Emulator, p.Parameter.Value.Device));
        var images = TinyData.Batch(4, 1, Size);
        var dc = cpu.Detect(images);
        var de = emu.Detect(images);
        AssertSameDetections(dc, de, variant);
        Assert.True(dc.Sum(d => d.Count) > 0, $"{variant}: no detections to compare");
        output.WriteLine($"{variant}: worst loss difference {worstLoss:E2} relative, worst update difference {worstUpdate:E2} of the largest update; " +
                         $"{dc.Sum(d => d.Count)} detections agree");
        if (variant == "g-rcn") CheckpointsMoveBetweenDevices(cpu, emu, de, images);
    }

    /// <summary>
    /// The emulator's checkpoint loads on the CPU and detects what the emulator detected; the CPU's
    /// loads on the emulator with the same weights, iteration and optimiser state.
    /// </summary>
    private void CheckpointsMoveBetweenDevices(Detector cpu, Detector emu, IReadOnlyList<DetectedObject>[] emuDetections, PreparedImage[] images)
    {
        var dir = Directory.CreateTempSubdirectory("grcn-device-ckpt");
        try
        {
            string fromEmu = Path.Combine(dir.FullName, "emu.safetensors"), fromCpu = Path.Combine(dir.FullName, "cpu.safetensors");
            emu.Save(fromEmu);
            cpu.Save(fromCpu);
            using (var onCpu = Detector.Load(fromEmu, Device.Cpu))
            {
                Assert.Equal(Device.Cpu, onCpu.Device);
                Assert.Equal(emu.Iteration, onCpu.Iteration);
                AssertSameParameters(emu, onCpu, 0, "emulator checkpoint on the cpu");
                AssertSameDetections(emuDetections, onCpu.Detect(images), "emulator checkpoint detecting on the cpu");
            }
            using var onEmu = Detector.Load(fromCpu, Device.Emulator);
            Assert.Equal(Device.Emulator, onEmu.Device);
            Assert.Equal(cpu.Iteration, onEmu.Iteration);
            AssertSameParameters(cpu, onEmu, 0, "cpu checkpoint on the emulator");
            int sc = cpu.Parameters.Count;
            output.WriteLine($"checkpoints moved both ways ({sc} parameter tensors)");

            // resume: the emulator's checkpoint, loaded on the emulator, takes the step the original
            // takes (same weights, optimiser state, iteration, hence seeds), bit for bit; the CPU's,
            // loaded on the emulator, takes the CPU's next step within the update tolerance
            var batch = TinyData.Batch(2, 1, Size);
            using (var resumed = Detector.Load(fromEmu, Device.Emulator))
            {
                var want = emu.TrainStep(batch);
                var got = resumed.TrainStep(batch);
                Assert.Equal(want, got);
                AssertSameParameters(emu, resumed, 0, "emulator run resumed on the emulator");
            }
            var before = Snapshot(cpu);
            var tc = cpu.TrainStep(batch);
            var te = onEmu.TrainStep(batch);
            Assert.True(Math.Abs(tc.Total - te.Total) <= LossRelTolerance * Math.Abs(tc.Total), $"cpu run resumed on the emulator: loss {te.Total}, cpu {tc.Total}");
            AssertSameUpdates(before, cpu, onEmu, "cpu run resumed on the emulator");
            output.WriteLine("runs resumed on the emulator: from its own checkpoint bit for bit, from the cpu's within tolerance");
        }
        finally
        {
            dir.Delete(true);
        }
    }

    private static Dictionary<string, float[]> Snapshot(Detector d) =>
        d.Parameters.ToDictionary(p => p.Name, p => p.Parameter.Value.ToArray<float>());

    private static void AssertSameParameters(Detector a, Detector b, double tolerance, string what)
    {
        var pb = b.Parameters.ToDictionary(p => p.Name, p => p.Parameter);
        Assert.Equal(a.Parameters.Count, pb.Count);
        foreach (var (name, p) in a.Parameters)
        {
            var va = p.Value.ToArray<float>();
            var vb = pb[name].Value.ToArray<float>();
            Assert.Equal(va.Length, vb.Length);
            for (int i = 0; i < va.Length; i++)
                if (Math.Abs(va[i] - vb[i]) > tolerance)
                    Assert.Fail($"{what}: {name}[{i}] {va[i]} vs {vb[i]}");
        }
    }

    /// <summary>Asserts Δw agree per tensor; returns the worst difference relative to that tensor's largest |Δw|.</summary>
    private static double AssertSameUpdates(Dictionary<string, float[]> before, Detector cpu, Detector emu, string what)
    {
        var pe = emu.Parameters.ToDictionary(p => p.Name, p => p.Parameter);
        double worst = 0;
        int moved = 0;
        foreach (var (name, p) in cpu.Parameters)
        {
            var w0 = before[name];
            var wc = p.Value.ToArray<float>();
            var we = pe[name].Value.ToArray<float>();
            double largest = 0;
            for (int i = 0; i < w0.Length; i++) largest = Math.Max(largest, Math.Abs((double)wc[i] - w0[i]));
            if (largest > 0) moved++;
            for (int i = 0; i < w0.Length; i++)
            {
                double dc = (double)wc[i] - w0[i], de = (double)we[i] - w0[i];
                double diff = Math.Abs(dc - de);
                if (largest > 0) worst = Math.Max(worst, diff / largest);
                if (diff > UpdateAbsTolerance + UpdateRelTolerance * largest)
                    Assert.Fail($"{what}: {name}[{i}] moved by {dc:E4} on the cpu, {de:E4} on the emulator (largest update {largest:E3})");
            }
        }
        Assert.True(moved > 10, $"{what}: only {moved} parameter tensors moved");
        return worst;
    }

    private static void AssertSameDetections(IReadOnlyList<DetectedObject>[] a, IReadOnlyList<DetectedObject>[] b, string what)
    {
        Assert.Equal(a.Length, b.Length);
        for (int i = 0; i < a.Length; i++)
        {
            Assert.True(a[i].Count == b[i].Count, $"{what}, image {i}: {a[i].Count} detections vs {b[i].Count}");
            for (int j = 0; j < a[i].Count; j++)
            {
                var (x, y) = (a[i][j], b[i][j]);
                Assert.True(x.Label == y.Label && Math.Abs(x.Score - y.Score) <= 1e-4 &&
                            Close(x.Box.X1, y.Box.X1) && Close(x.Box.Y1, y.Box.Y1) && Close(x.Box.X2, y.Box.X2) && Close(x.Box.Y2, y.Box.Y2),
                    $"{what}, image {i}, detection {j}: {x} vs {y}");
            }
        }

        static bool Close(float p, float q) => Math.Abs(p - q) <= 1e-3 * (1 + Math.Abs(p));
    }
}
