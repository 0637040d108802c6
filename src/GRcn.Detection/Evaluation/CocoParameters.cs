// The fixed COCO bbox evaluation parameters of pycocotools' Params.setDetParams: 10 IoU
// thresholds, 101 recall thresholds, 4 area ranges, 3 detection caps. The thresholds are built
// with numpy.linspace's arithmetic (i·step + start, last = stop) so they are the same doubles
// pycocotools compares against (e.g. the 0.90 threshold is 0.8999999999999999).
namespace GRcn.Detection.Evaluation;

/// <summary>An object-area range [Min, Max] (inclusive on both ends, as pycocotools tests <c>area &lt; min or area &gt; max</c>).</summary>
public readonly record struct CocoAreaRange(string Label, double Min, double Max);

/// <summary>pycocotools' default bbox parameters (iouType 'bbox').</summary>
public static class CocoParameters
{
    private static readonly double[] s_iou = Linspace(0.5, 0.95, 10);
    private static readonly double[] s_recall = Linspace(0.0, 1.0, 101);
    private static readonly int[] s_maxDets = [1, 10, 100];
    private static readonly CocoAreaRange[] s_areas =
    [
        new("all", 0, 1e5 * 1e5),
        new("small", 0, 32 * 32),
        new("medium", 32 * 32, 96 * 96),
        new("large", 96 * 96, 1e5 * 1e5),
    ];

    /// <summary>np.linspace(.5, .95, 10): T = 10 IoU thresholds.</summary>
    public static ReadOnlySpan<double> IouThresholds => s_iou;

    /// <summary>np.linspace(0, 1, 101): R = 101 recall thresholds.</summary>
    public static ReadOnlySpan<double> RecallThresholds => s_recall;

    /// <summary>[1, 10, 100]: M = 3 caps on detections per image and category.</summary>
    public static ReadOnlySpan<int> MaxDetections => s_maxDets;

    /// <summary>all [0, 1e10], small [0, 32²], medium [32², 96²], large [96², 1e10]: A = 4.</summary>
    public static ReadOnlySpan<CocoAreaRange> AreaRanges => s_areas;

    /// <summary>Index of 0.50 in <see cref="IouThresholds"/>.</summary>
    public const int Iou50 = 0;

    /// <summary>Index of 0.70 in <see cref="IouThresholds"/> (the AP70 the G-RCN paper reports).</summary>
    public const int Iou70 = 4;

    /// <summary>Index of 0.75 in <see cref="IouThresholds"/>.</summary>
    public const int Iou75 = 5;

    /// <summary>numpy.linspace(start, stop, num, endpoint=True) in numpy's operation order.</summary>
    internal static double[] Linspace(double start, double stop, int num)
    {
        var y = new double[num];
        double step = (stop - start) / (num - 1);
        for (int i = 0; i < num; i++) y[i] = i * step + start;
        y[num - 1] = stop;
        return y;
    }
}
