// The plain training log: the first line shows step 1 without a speed it cannot know yet, and
// every later line the mean of each loss term over the iterations since the previous line.
using GRcn.Cli.Training;
using GRcn.Detection.Model;
using GRcn.Detection.Training;

namespace GRcn.Cli.Tests;

public sealed class ProgressDisplayTests
{
    [Fact]
    public void PlainLinesShowTheLossMeansOverTheInterval()
    {
        var output = new StringWriter();
        ProgressDisplay.Run(interactive: false, output, logEvery: 3, start: 0, total: 4, sink =>
        {
            for (int i = 1; i <= 4; i++)
                sink.Step(new TrainProgress(i, 4, new LossTerms(i, 0.1 * i, 2 * i, 0), i == 1 ? 0 : 10, TimeSpan.FromSeconds(4 - i), 0.001));
            return 0;
        });
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(3, lines.Length);
        Assert.Equal("it 1/4  loss 3.100 (obj 1.000 rpn-box 0.100 cls 2.000 box 0.000; it 1)  lr 0.001", lines[0]);
        // iterations 2 and 3: obj (2 + 3) / 2, rpn-box 0.25, cls 5
        Assert.Equal("it 3/4  loss 7.750 (obj 2.500 rpn-box 0.250 cls 5.000 box 0.000; mean of it 2–3)  lr 0.001  10.0 img/s  ETA 0:01", lines[1]);
        Assert.StartsWith("it 4/4  loss 12.400 (obj 4.000 rpn-box 0.400 cls 8.000 box 0.000; it 4)", lines[2]);
    }
}
