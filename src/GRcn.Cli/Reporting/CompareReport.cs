// The report of grcn compare: per variant the mean ± sample standard deviation over seeds of
// AP, AP50, AP70, AP75, APs, APm, APl and VOC AP50 (percent, one decimal, as the paper
// prints), the paper's numbers for the same rows beside them, AP against the IoU threshold per
// variant and the training loss per variant (each term and the sum in its own panel, raw under
// the moving average, means over seeds), and per variant its paired difference to a baseline
// variant with a 95 % confidence interval over seeds (PairedStatistics), as a table and as an
// interval plot (per metric, each variant's per-seed differences, their mean and interval). Written as report.md
// (plots as PNG and SVG files next to it), as a self-contained report.html (plots inlined as
// base64 SVG, which scales) and as report.json (every number of both tables, per run as well).
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using GRcn.Cli.Drawing;
using GRcn.Cli.Training;
using GRcn.Detection.Data;
using GRcn.Detection.Evaluation;
using GRcn.Detection.Variants;

namespace GRcn.Cli.Reporting;

/// <summary>One finished training run of the comparison.</summary>
/// <param name="TimedFromIteration">0, or the iteration from which <paramref name="TrainingSeconds"/> counts (a run resumed
/// from a checkpoint that did not record the training time before it).</param>
internal sealed record CompareRun(ulong Seed, MetricsSummary Metrics, double[] ApByIou, IReadOnlyList<LossRecord> Losses, double TrainingSeconds,
    int TimedFromIteration = 0);

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

    /// <summary>The metrics of the paired-difference table, in <see cref="MetricsSummary.Columns"/> order (AP … APm).</summary>
    public static readonly string[] PairedColumns = ["AP", "AP50", "AP70", "AP75", "APs", "APm"];

    /// <summary>"+3.2 [+1.0, +5.4] *": the mean paired difference and its interval in percentage points, * where it excludes zero.</summary>
    public static string DifferenceCell(PairedDifference? d) => d is null ? "-"
        : d.Pairs == 1 ? string.Create(Inv, $"{100 * d.Mean:+0.0;−0.0;0.0} (1 seed)")
        : string.Create(Inv, $"{100 * d.Mean:+0.0;−0.0;0.0} [{100 * d.Lower:+0.0;−0.0;0.0}, {100 * d.Upper:+0.0;−0.0;0.0}]{(d.ExcludesZero ? " *" : "")}");

    /// <summary>The paired difference of <paramref name="variant"/> to <paramref name="baseline"/> in metric column <paramref name="k"/>.</summary>
    public static PairedDifference? Paired(CompareVariant variant, CompareVariant baseline, int k) =>
        PairedStatistics.Difference(variant.Runs.Select(r => (r.Seed, r.Metrics.Values[k])), baseline.Runs.Select(r => (r.Seed, r.Metrics.Values[k])));

    /// <summary>
    /// "seeds 0, 2 (seed 1 missing for faster-rcnn)" when <paramref name="variant"/> and <paramref name="baseline"/> did not
    /// finish the same seeds, else null.
    /// </summary>
    public static string? PairingNote(CompareVariant variant, CompareVariant baseline)
    {
        var a = variant.Runs.Select(r => r.Seed).ToHashSet();
        var b = baseline.Runs.Select(r => r.Seed).ToHashSet();
        if (a.SetEquals(b)) return null;
        string Seeds(IEnumerable<ulong> seeds) => string.Join(", ", seeds.Order());
        string Missing(ulong[] seeds, string name) => $"seed{(seeds.Length > 1 ? "s" : "")} {Seeds(seeds)} missing for {name}";
        var missing = new List<string>();
        if (b.Except(a).ToArray() is { Length: > 0 } onlyBaseline) missing.Add(Missing(onlyBaseline, variant.Variant));
        if (a.Except(b).ToArray() is { Length: > 0 } onlyVariant) missing.Add(Missing(onlyVariant, baseline.Variant));
        var common = a.Intersect(b).ToArray();
        return $"{variant.Variant}: {(common.Length == 0 ? "pairs no seed" : $"pairs seed{(common.Length > 1 ? "s" : "")} {Seeds(common)} only")} ({string.Join("; ", missing)})";
    }

    /// <summary>
    /// Writes report.md, report.html, report.json, paired.png/.svg, ap_iou.png/.svg and loss.png/.svg into <paramref name="outDir"/>; returns
    /// the Markdown. <paramref name="baseline"/> names the variant the paired differences are taken to.
    /// </summary>
    public static string Write(string outDir, string title, string settings, BackboneKind backbone, IReadOnlyList<CompareVariant> variants, string baseline)
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
            // "≥": a run's time does not count its iterations before a resumed checkpoint that did not record them
            row.Add(v.Runs.Count == 0 ? "-" : (v.Runs.Any(r => r.TimedFromIteration > 0) ? "≥ " : "") + Clock(v.Runs.Average(r => r.TrainingSeconds)));
            var p = PaperResults.For(v.Variant, backbone);
            row.AddRange([Paper(p?.AP), Paper(p?.AP50), Paper(p?.AP75), Paper(p?.APs), Paper(p?.APm), Paper(p?.APl), Paper(p?.VocAP70)]);
            rows.Add(row);
        }

        // paired differences to the baseline, one row per other variant
        var base_ = variants.FirstOrDefault(v => v.Variant == baseline)
                    ?? throw new ArgumentException($"the baseline {baseline} is not one of the variants", nameof(baseline));
        var pairedHeader = new List<string> { "variant", "pairs" };
        pairedHeader.AddRange(PairedColumns.Select(c => "Δ" + c));
        var pairedRows = new List<List<string>>();
        var pairingNotes = new List<string>();
        foreach (var v in variants.Where(v => v != base_))
        {
            var row = new List<string> { v.Variant, v.Runs.Select(r => r.Seed).Intersect(base_.Runs.Select(r => r.Seed)).Count().ToString(Inv) };
            for (int k = 0; k < PairedColumns.Length; k++) row.Add(DifferenceCell(Paired(v, base_, k)));
            pairedRows.Add(row);
            if (PairingNote(v, base_) is { } n) pairingNotes.Add(n);
        }

        var pairedPlot = pairedRows.Count > 0 ? PairedPlot(variants, base_) : null;
        pairedPlot?.Write(outDir, "paired");
        var apPlot = ApIouPlot(variants);
        var lossPlot = LossPlot(variants);
        apPlot.Write(outDir, "ap_iou");
        lossPlot.Write(outDir, "loss");

        const string note = "Ours: mean ± sample standard deviation over seeds, percent. Paper: VGG16/ResNet on COCO (AP … APl) and VOC 2007 (AP70), " +
                            "G-RCN Tables 1–5 (shared/specs/variants.md); a different dataset and budget, so compare the ordering, not the values.";
        string pairedTitle = $"Paired differences to {baseline}";
        string pairedNote =
            $"Per variant, the mean over seeds of (variant − {baseline}) between runs with the same seed (the same images in the same order), " +
            $"in percentage points, with its {(100 * PairedStatistics.Confidence).ToString("0", Inv)} % Student-t confidence interval [low, high] " +
            "(mean ± t·sd/√n, n − 1 degrees of freedom); * marks an interval that excludes zero. One pair gives no interval.";
        var md = new StringBuilder();
        md.Append("# ").Append(title).Append("\n\n").Append(settings).Append("\n\n");
        md.Append(note).Append("\n\n");
        AppendMarkdownTable(md, header, rows);
        var failures = variants.SelectMany(v => v.Failures.Select(f => $"- {v.Variant}: {f}")).ToArray();
        if (failures.Length > 0) md.Append("\nFailed runs:\n\n").Append(string.Join("\n", failures)).Append('\n');
        string? timingNote = TimingNote(variants);
        if (timingNote is not null) md.Append('\n').Append(timingNote).Append('\n');
        md.Append("\n## ").Append(pairedTitle).Append("\n\n").Append(pairedNote).Append("\n\n");
        if (pairedRows.Count > 0) AppendMarkdownTable(md, pairedHeader, pairedRows);
        else md.Append("(no other variant)\n");
        if (pairingNotes.Count > 0) md.Append('\n').Append(string.Concat(pairingNotes.Select(n => "- " + n + "\n")));
        if (pairedPlot is not null) md.Append('\n').Append(PairedPlotNote).Append("\n\n![paired differences](paired.png) ([SVG](paired.svg))\n");
        md.Append("\n## AP against IoU threshold\n\n![AP against IoU threshold](ap_iou.png) ([SVG](ap_iou.svg))\n");
        md.Append("\n## Training loss\n\nEach term and the sum in its own panel; per variant the raw loss (faint) under its moving average, ")
          .Append("both averaged over seeds.\n\n![training loss](loss.png) ([SVG](loss.svg))\n");
        File.WriteAllText(Path.Combine(outDir, "report.md"), md.ToString());

        var html = new StringBuilder();
        html.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>").Append(Enc(title)).Append("</title>\n<style>")
            .Append("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:14px}")
            .Append("th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th:first-child,td:first-child{text-align:left}")
            .Append("th.paper,td.paper{background:#f4f4f4;color:#555}td.sig{font-weight:bold}img{max-width:100%}</style></head><body>\n");
        html.Append("<h1>").Append(Enc(title)).Append("</h1>\n<p>").Append(Enc(settings)).Append("</p>\n<p>").Append(Enc(note)).Append("</p>\n");
        AppendHtmlTable(html, header, rows, paperColumns: paper.Length);
        if (failures.Length > 0) html.Append("<p>Failed runs:</p><ul>").Append(string.Concat(failures.Select(f => "<li>" + Enc(f[2..]) + "</li>"))).Append("</ul>\n");
        if (timingNote is not null) html.Append("<p>").Append(Enc(timingNote)).Append("</p>\n");
        html.Append("<h2>").Append(Enc(pairedTitle)).Append("</h2>\n<p>").Append(Enc(pairedNote)).Append("</p>\n");
        if (pairedRows.Count > 0) AppendHtmlTable(html, pairedHeader, pairedRows, paperColumns: 0);
        else html.Append("<p>(no other variant)</p>\n");
        if (pairingNotes.Count > 0) html.Append("<ul>").Append(string.Concat(pairingNotes.Select(n => "<li>" + Enc(n) + "</li>"))).Append("</ul>\n");
        if (pairedPlot is not null) html.Append("<p>").Append(Enc(PairedPlotNote)).Append("</p>\n").Append(SvgImg("paired differences", pairedPlot.Svg)).Append('\n');
        html.Append("<h2>AP against IoU threshold</h2>\n").Append(SvgImg("AP against IoU threshold", apPlot.Svg)).Append('\n');
        html.Append("<h2>Training loss</h2>\n<p>Each term and the sum in its own panel; per variant the raw loss (faint) under its moving average, ")
            .Append("both averaged over seeds.</p>\n").Append(SvgImg("training loss", lossPlot.Svg)).Append('\n');
        html.Append("</body></html>\n");
        File.WriteAllText(Path.Combine(outDir, "report.html"), html.ToString());

        WriteJson(Path.Combine(outDir, "report.json"), title, settings, backbone, variants, base_);
        return md.ToString();
    }

    private static void AppendMarkdownTable(StringBuilder md, IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows)
    {
        md.Append("| ").Append(string.Join(" | ", header)).Append(" |\n");
        md.Append('|').Append(string.Concat(header.Select((_, i) => i < 2 ? " --- |" : " ---: |"))).Append('\n');
        foreach (var r in rows) md.Append("| ").Append(string.Join(" | ", r.Select(c => c.Replace("|", "\\|", StringComparison.Ordinal)))).Append(" |\n");
    }

    /// <summary>An HTML table; the last <paramref name="paperColumns"/> columns shaded as the paper's, cells ending in " *" bold.</summary>
    private static void AppendHtmlTable(StringBuilder html, IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows, int paperColumns)
    {
        html.Append("<table>\n<tr>");
        for (int i = 0; i < header.Count; i++) html.Append(i >= header.Count - paperColumns ? "<th class=\"paper\">" : "<th>").Append(Enc(header[i])).Append("</th>");
        html.Append("</tr>\n");
        foreach (var r in rows)
        {
            html.Append("<tr>");
            for (int i = 0; i < r.Count; i++)
                html.Append(i >= r.Count - paperColumns ? "<td class=\"paper\">" : r[i].EndsWith(" *", StringComparison.Ordinal) ? "<td class=\"sig\">" : "<td>")
                    .Append(Enc(r[i])).Append("</td>");
            html.Append("</tr>\n");
        }
        html.Append("</table>\n");
    }

    /// <summary>
    /// report.json: the settings, then per variant every run (seed, metrics, AP by IoU, training time), the mean, standard
    /// deviation and count of each metric, the paper's row, and (for all but the baseline) the paired difference of each
    /// paired metric: the seeds paired, mean, sd, t quantile, interval and whether it excludes zero. Undefined values are null.
    /// </summary>
    private static void WriteJson(string path, string title, string settings, BackboneKind backbone, IReadOnlyList<CompareVariant> variants, CompareVariant baseline)
    {
        static string Key(string column) => column.Replace(' ', '_');
        using var stream = File.Create(path);
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("title", title);
        w.WriteString("settings", settings);
        w.WriteString("baseline", baseline.Variant);
        w.WriteNumber("confidence", PairedStatistics.Confidence);
        w.WriteStartArray("variants");
        foreach (var v in variants)
        {
            w.WriteStartObject();
            w.WriteString("variant", v.Variant);
            w.WriteStartArray("failures");
            foreach (var f in v.Failures) w.WriteStringValue(f);
            w.WriteEndArray();
            w.WriteStartArray("runs");
            foreach (var r in v.Runs)
            {
                w.WriteStartObject();
                w.WriteNumber("seed", r.Seed);
                Metrics.Number(w, "training_seconds", r.TrainingSeconds);
                w.WriteNumber("timed_from_iteration", r.TimedFromIteration);
                w.WriteStartObject("metrics");
                for (int k = 0; k < MetricsSummary.Columns.Length; k++) Metrics.Number(w, Key(MetricsSummary.Columns[k]), r.Metrics.Values[k]);
                w.WriteEndObject();
                w.WriteStartArray("ap_by_iou");
                foreach (double ap in r.ApByIou)
                    if (ap >= 0 && double.IsFinite(ap)) w.WriteNumberValue(Math.Round(ap, 6));
                    else w.WriteNullValue();
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartObject("summary");
            for (int k = 0; k < MetricsSummary.Columns.Length; k++)
            {
                w.WritePropertyName(Key(MetricsSummary.Columns[k]));
                if (MeanStd(v.Runs.Select(r => r.Metrics.Values[k])) is { } s)
                {
                    w.WriteStartObject();
                    Metrics.Number(w, "mean", s.Mean);
                    Metrics.Number(w, "std", s.Std);
                    w.WriteNumber("n", s.N);
                    w.WriteEndObject();
                }
                else w.WriteNullValue();
            }
            w.WriteEndObject();
            w.WritePropertyName("paper");
            if (PaperResults.For(v.Variant, backbone) is { } p)
            {
                w.WriteStartObject();
                w.WriteString("source", p.Source);
                foreach (var (name, value) in new[] { ("AP", p.AP), ("AP50", p.AP50), ("AP75", p.AP75), ("APs", p.APs), ("APm", p.APm), ("APl", p.APl), ("VOC_AP70", p.VocAP70) })
                    if (value is double d) w.WriteNumber(name, d / 100);
                    else w.WriteNull(name);
                w.WriteEndObject();
            }
            else w.WriteNullValue();
            w.WritePropertyName("paired");
            if (v == baseline) w.WriteNullValue();
            else
            {
                w.WriteStartObject();
                for (int k = 0; k < PairedColumns.Length; k++)
                {
                    w.WritePropertyName(PairedColumns[k]);
                    if (Paired(v, baseline, k) is { } d)
                    {
                        w.WriteStartObject();
                        w.WriteStartArray("seeds");
                        foreach (ulong seed in d.Seeds) w.WriteNumberValue(seed);
                        w.WriteEndArray();
                        Signed(w, "mean", d.Mean);
                        Signed(w, "std", d.Std);
                        Signed(w, "t", d.T);
                        Signed(w, "lower", d.Lower);
                        Signed(w, "upper", d.Upper);
                        w.WriteBoolean("excludes_zero", d.ExcludesZero);
                        w.WriteEndObject();
                    }
                    else w.WriteNullValue();
                }
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>A number rounded to 6 decimals, or null when not finite (differences may be negative).</summary>
    private static void Signed(Utf8JsonWriter w, string name, double v)
    {
        if (double.IsFinite(v)) w.WriteNumber(name, Math.Round(v, 6));
        else w.WriteNull(name);
    }

    private const string PairedPlotNote =
        "The same differences drawn: per metric and variant, each seed's difference (faint dots), their mean (dot) and the interval (bar); " +
        "the dashed line is no difference.";

    /// <summary>
    /// The paired differences to <paramref name="baseline"/>, one panel per <see cref="PairedColumns"/> metric: per other variant, in
    /// percentage points, each shared seed's difference, the mean and the confidence interval.
    /// </summary>
    internal static PlotImage PairedPlot(IReadOnlyList<CompareVariant> variants, CompareVariant baseline)
    {
        var panels = new List<ScottPlot.Plot>();
        for (int k = 0; k < PairedColumns.Length; k++)
        {
            var rows = new List<IntervalRow>();
            for (int i = 0; i < variants.Count; i++)
            {
                var v = variants[i];
                if (v == baseline) continue;
                var d = Paired(v, baseline, k);
                var perSeed = d is null ? [] : d.Seeds.Select(s =>
                    100 * (v.Runs.First(r => r.Seed == s).Metrics.Values[k] - baseline.Runs.First(r => r.Seed == s).Metrics.Values[k])).ToArray();
                rows.Add(new IntervalRow(v.Variant, perSeed, d is null ? double.NaN : 100 * d.Mean,
                    d is null ? double.NaN : 100 * d.Lower, d is null ? double.NaN : 100 * d.Upper, DetectionPainter.Palette(i)));
            }
            panels.Add(Plots.Intervals($"Δ{PairedColumns[k]} to {baseline.Variant}", "percentage points", rows));
        }
        return Plots.Stacked(panels, 900, 80 + 34 * (variants.Count - 1));
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

    /// <summary>
    /// What a "≥" before a train time means, naming the runs timed from a later iteration than 0; null when there are none.
    /// </summary>
    internal static string? TimingNote(IReadOnlyList<CompareVariant> variants)
    {
        var runs = variants.SelectMany(v => v.Runs.Where(r => r.TimedFromIteration > 0)
            .Select(r => $"{v.Variant} seed {r.Seed} from iteration {r.TimedFromIteration}")).ToArray();
        return runs.Length == 0 ? null
            : "≥: the mean train time includes a run resumed from a checkpoint that did not record the training time before it, " +
              $"so its time counts from that iteration only: {string.Join("; ", runs)}.";
    }

    /// <summary>Seconds as m:ss (h:mm:ss from an hour).</summary>
    private static string Clock(double seconds) => ProgressDisplay.Clock(TimeSpan.FromSeconds(Math.Round(seconds)));
}
