// The report of grcn compare: per variant the mean ± sample standard deviation over seeds of
// AP, AP50, AP70, AP75, APs, APm, APl and VOC AP50 (percent, one decimal, as the paper
// prints), the paper's numbers for the same rows beside them, AP against the IoU threshold per
// variant and the training loss per variant (each term and the sum in its own panel, raw under
// the moving average, means over seeds). Written as report.md (plots as PNG and SVG files next to
// it) and as a self-contained report.html (plots inlined as base64 SVG, which scales).
using System.Globalization;
using System.Net;
using System.Text;
using GRcn.Cli.Drawing;
using GRcn.Cli.Training;
using GRcn.Detection.Data;
using GRcn.Detection.Evaluation;
using GRcn.Detection.Variants;

namespace GRcn.Cli.Reporting;

/// <summary>One finished training run of the comparison.</summary>
internal sealed record CompareRun(ulong Seed, MetricsSummary Metrics, double[] ApByIou, IReadOnlyList<LossRecord> Losses, double TrainingSeconds);

/// <summary>All runs of one variant (failed seeds listed apart).</summary>
internal sealed record CompareVariant(string Variant, IReadOnlyList<CompareRun> Runs, IReadOnlyList<string> Failures);

internal static class CompareReport
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Mean and sample standard deviation (0 for one value) of the defined (≥ 0) values; null when none.</summary>
    public static (double Mean, double Std, int N)? MeanStd(IEnumerable<double> values)
    {
        var v = values.Where(x => x >= 0 && double.IsFinite(x)).ToArray();
        if (v.Length == 0) return null;
        double mean = v.Average();
        double std = v.Length > 1 ? Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Length - 1)) : 0;
        return (mean, std, v.Length);
    }

    /// <summary>"21.3 ± 0.4" in percent ("21.3" for one seed, "-" when undefined).</summary>
    public static string Cell((double Mean, double Std, int N)? s) => s is not { } x ? "-"
        : x.N > 1 ? string.Create(Inv, $"{100 * x.Mean:0.0} ± {100 * x.Std:0.0}") : string.Create(Inv, $"{100 * x.Mean:0.0}");

    private static string Paper(double? v) => v is double d ? d.ToString("0.0", Inv) : "";

    /// <summary>Writes report.md, report.html, ap_iou.png/.svg and loss.png/.svg into <paramref name="outDir"/>; returns the Markdown.</summary>
    public static string Write(string outDir, string title, string settings, BackboneKind backbone, IReadOnlyList<CompareVariant> variants)
    {
        Directory.CreateDirectory(outDir);
        string[] ours = ["AP", "AP50", "AP70", "AP75", "APs", "APm", "APl", "VOC AP50"];
        string[] paper = ["paper AP", "paper AP50", "paper AP75", "paper APs", "paper APm", "paper APl", "paper VOC AP70"];
        var header = new List<string> { "variant", "seeds" };
        header.AddRange(ours);
        header.Add("train time");
        header.AddRange(paper);
        var rows = new List<List<string>>();
        foreach (var v in variants)
        {
            var row = new List<string> { v.Variant, v.Runs.Count.ToString(Inv) + (v.Failures.Count > 0 ? $" ({v.Failures.Count} failed)" : "") };
            for (int k = 0; k < ours.Length; k++) row.Add(Cell(MeanStd(v.Runs.Select(r => r.Metrics.Values[k]))));
            row.Add(v.Runs.Count == 0 ? "-" : Clock(v.Runs.Average(r => r.TrainingSeconds)));
            var p = PaperResults.For(v.Variant, backbone);
            row.AddRange([Paper(p?.AP), Paper(p?.AP50), Paper(p?.AP75), Paper(p?.APs), Paper(p?.APm), Paper(p?.APl), Paper(p?.VocAP70)]);
            rows.Add(row);
        }

        var apPlot = ApIouPlot(variants);
        var lossPlot = LossPlot(variants);
        apPlot.Write(outDir, "ap_iou");
        lossPlot.Write(outDir, "loss");

        const string note = "Ours: mean ± sample standard deviation over seeds, percent. Paper: VGG16/ResNet on COCO (AP … APl) and VOC 2007 (AP70), " +
                            "G-RCN Tables 1–5 (shared/specs/variants.md); a different dataset and budget, so compare the ordering, not the values.";
        var md = new StringBuilder();
        md.Append("# ").Append(title).Append("\n\n").Append(settings).Append("\n\n");
        md.Append(note).Append("\n\n");
        md.Append("| ").Append(string.Join(" | ", header)).Append(" |\n");
        md.Append('|').Append(string.Concat(header.Select((_, i) => i < 2 ? " --- |" : " ---: |"))).Append('\n');
        foreach (var r in rows) md.Append("| ").Append(string.Join(" | ", r.Select(c => c.Replace("|", "\\|", StringComparison.Ordinal)))).Append(" |\n");
        var failures = variants.SelectMany(v => v.Failures.Select(f => $"- {v.Variant}: {f}")).ToArray();
        if (failures.Length > 0) md.Append("\nFailed runs:\n\n").Append(string.Join("\n", failures)).Append('\n');
        md.Append("\n## AP against IoU threshold\n\n![AP against IoU threshold](ap_iou.png) ([SVG](ap_iou.svg))\n");
        md.Append("\n## Training loss\n\nEach term and the sum in its own panel; per variant the raw loss (faint) under its moving average, ")
          .Append("both averaged over seeds.\n\n![training loss](loss.png) ([SVG](loss.svg))\n");
        File.WriteAllText(Path.Combine(outDir, "report.md"), md.ToString());

        var html = new StringBuilder();
        html.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>").Append(Enc(title)).Append("</title>\n<style>")
            .Append("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:14px}")
            .Append("th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th:first-child,td:first-child{text-align:left}")
            .Append("th.paper,td.paper{background:#f4f4f4;color:#555}img{max-width:100%}</style></head><body>\n");
        html.Append("<h1>").Append(Enc(title)).Append("</h1>\n<p>").Append(Enc(settings)).Append("</p>\n<p>").Append(Enc(note)).Append("</p>\n<table>\n<tr>");
        for (int i = 0; i < header.Count; i++) html.Append(i >= header.Count - paper.Length ? "<th class=\"paper\">" : "<th>").Append(Enc(header[i])).Append("</th>");
        html.Append("</tr>\n");
        foreach (var r in rows)
        {
            html.Append("<tr>");
            for (int i = 0; i < r.Count; i++) html.Append(i >= r.Count - paper.Length ? "<td class=\"paper\">" : "<td>").Append(Enc(r[i])).Append("</td>");
            html.Append("</tr>\n");
        }
        html.Append("</table>\n");
        if (failures.Length > 0) html.Append("<p>Failed runs:</p><ul>").Append(string.Concat(failures.Select(f => "<li>" + Enc(f[2..]) + "</li>"))).Append("</ul>\n");
        html.Append("<h2>AP against IoU threshold</h2>\n").Append(SvgImg("AP against IoU threshold", apPlot.Svg)).Append('\n');
        html.Append("<h2>Training loss</h2>\n<p>Each term and the sum in its own panel; per variant the raw loss (faint) under its moving average, ")
            .Append("both averaged over seeds.</p>\n").Append(SvgImg("training loss", lossPlot.Svg)).Append('\n');
        html.Append("</body></html>\n");
        File.WriteAllText(Path.Combine(outDir, "report.html"), html.ToString());
        return md.ToString();
    }

    /// <summary>Mean AP over seeds at each COCO IoU threshold, one line per variant.</summary>
    internal static PlotImage ApIouPlot(IReadOnlyList<CompareVariant> variants)
    {
        var series = new List<PlotSeries>();
        for (int i = 0; i < variants.Count; i++)
        {
            var v = variants[i];
            if (v.Runs.Count == 0) continue;
            var points = new List<(double, double)>();
            for (int t = 0; t < CocoParameters.IouThresholds.Length; t++)
                if (MeanStd(v.Runs.Select(r => r.ApByIou[t])) is { } s) points.Add((CocoParameters.IouThresholds[t], s.Mean));
            series.Add(new PlotSeries(v.Variant, points, DetectionPainter.Palette(i)));
        }
        return Plots.Image("AP against IoU threshold", "IoU threshold", "AP", series, yMin: 0, yMax: 1);
    }

    /// <summary>The loss terms and their sum, one panel each, one colour per variant: raw and moving average, means over seeds.</summary>
    internal static PlotImage LossPlot(IReadOnlyList<CompareVariant> variants) =>
        TrainSession.LossPlot("Training loss (mean over seeds)",
            variants.Where(v => v.Runs.Count > 0)
                .Select(v => (v.Variant, (IReadOnlyList<IReadOnlyList<LossRecord>>)v.Runs.Select(r => r.Losses).ToArray())).ToArray());

    /// <summary>An img element with the SVG inlined as a base64 data URI (an inline svg element could clash with another's ids).</summary>
    private static string SvgImg(string alt, string svg) =>
        $"<img alt=\"{Enc(alt)}\" src=\"data:image/svg+xml;base64,{Convert.ToBase64String(Encoding.UTF8.GetBytes(svg))}\">";

    private static string Enc(string s) => WebUtility.HtmlEncode(s);

    /// <summary>Seconds as m:ss (h:mm:ss from an hour).</summary>
    private static string Clock(double seconds) => ProgressDisplay.Clock(TimeSpan.FromSeconds(Math.Round(seconds)));
}
