// grcn compare: trains every listed variant with every seed on the same data and budget
// (the grcn train code path, one folder per run under OUT/<variant>/seed-<s>), then writes the
// comparison report (CompareReport: report.md, report.html, report.json, plots; paired
// differences to --baseline). A run that diverges is listed as failed and the comparison goes
// on; Ctrl-C stops after the current run's checkpoint and reports what finished. Run again with
// the same options and --out, a comparison continues where it stopped: a run folder with a
// metrics.json of the same settings is reused as it is, one with only a checkpoint of the same
// run resumes from it, and one holding another run is left alone (listed as failed).
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using GRcn.Cli.Reporting;
using GRcn.Cli.Training;
using GRcn.Detection.Model;
using GRcn.Detection.Variants;

namespace GRcn.Cli.Commands;

internal static class CompareCommand
{
    public static Command Create()
    {
        var shared = new TrainOptions();
        var variants = new Option<string[]>("--variants")
        {
            Description = "Variants to compare, comma-separated (commas inside parentheses belong to the name): e.g. faster-rcnn,-pool/loc,conv(2,2,2)/loc,g-rcn",
            Required = true,
            AllowMultipleArgumentsPerToken = true,
        };
        var seeds = new Option<int>("--seeds") { Description = "Seeds per variant (0 … N−1)", DefaultValueFactory = _ => 1 };
        var output = new Option<string>("--out")
        {
            Description = "Output folder of the runs and the report; run again with the same options, finished runs are reused and interrupted ones resumed",
            DefaultValueFactory = _ => Path.Combine("runs", "compare"),
        };
        var baseline = new Option<string?>("--baseline") { Description = "The variant the paired differences are taken to (default: the first of --variants)" };
        var command = new Command("compare", "Train several variants on the same data, budget and seeds and write a comparison report (Markdown and HTML)");
        shared.AddTo(command);
        command.Options.Add(variants);
        command.Options.Add(seeds);
        command.Options.Add(output);
        command.Options.Add(baseline);
        command.SetAction(p =>
        {
            var o = p.InvocationConfiguration.Output;
            var e = p.InvocationConfiguration.Error;
            string outDir = p.GetValue(output)!;
            var plan = new List<(string Variant, List<TrainSettings> Runs)>();
            string baselineName;
            try
            {
                var names = SplitVariants(p.GetValue(variants) ?? []);
                if (names.Count == 0) throw new ArgumentException("--variants names no variant");
                if (names.Distinct().Count() != names.Count) throw new ArgumentException("--variants names a variant twice");
                int n = p.GetValue(seeds);
                if (n is < 1 or > 1000) throw new ArgumentException($"--seeds must be in [1, 1000]; got {n}");
                baselineName = p.GetValue(baseline)?.Trim() ?? names[0];
                if (!names.Contains(baselineName)) throw new ArgumentException($"--baseline {baselineName} is not one of --variants ({string.Join(", ", names)})");
                foreach (var v in names)
                    plan.Add((v, Enumerable.Range(0, n).Select(s =>
                        shared.Resolve(p, v, (ulong)s, Path.Combine(outDir, TrainOptions.Slug(v), $"seed-{s}"), resume: false)).ToList()));
            }
            catch (ArgumentException ex)
            {
                e.WriteLine($"grcn compare: {GrcnApp.Message(ex)}");
                return 2;
            }
            return GrcnApp.WithCtrlC(token => Run(plan, baselineName, outDir, o, e, token), e);
        });
        return command;
    }

    /// <summary>Splits "a,b,conv(2,2,2)/loc" at the commas outside parentheses; repeated option values add up.</summary>
    public static List<string> SplitVariants(IEnumerable<string> values)
    {
        var names = new List<string>();
        foreach (var value in values)
        {
            int depth = 0, start = 0;
            for (int i = 0; i <= value.Length; i++)
            {
                if (i < value.Length && value[i] == '(') depth++;
                else if (i < value.Length && value[i] == ')') depth--;
                else if (i == value.Length || (value[i] == ',' && depth == 0))
                {
                    string name = value[start..i].Trim();
                    if (name.Length > 0) names.Add(name);
                    start = i + 1;
                }
            }
        }
        return names;
    }

    /// <summary>
    /// What a run's folder holds from an earlier comparison: a metrics.json whose run description matches
    /// <paramref name="s"/> is that run, finished (returned); a checkpoint of the same variant and seed at or before
    /// <paramref name="s"/>'s last iteration is resumed (the settings returned with Resume); an empty folder starts fresh.
    /// </summary>
    /// <exception cref="IOException">The folder holds another run; nothing in it is touched.</exception>
    /// <exception cref="InvalidDataException">Its metrics.json, losses.csv or checkpoint cannot be read.</exception>
    internal static (CompareRun? Finished, TrainSettings Settings) Continue(TrainSettings s)
    {
        string dir = s.OutputDirectory;
        string metrics = Path.Combine(dir, "metrics.json"), checkpoint = Path.Combine(dir, TrainSession.CheckpointFile);
        // class names do not enter the fields compared
        var config = s.BuildConfig(["x"]);
        string Other(string what, string file) => $"{file} is a run with other settings ({what}); give another --out or move the folder away";
        if (File.Exists(metrics))
        {
            var (summary, apByIou, doc) = Metrics.ReadJson(metrics);
            foreach (var (key, value) in TrainSession.RunFields(s, config, s.Iterations, s.Seed))
            {
                var expected = JsonSerializer.SerializeToElement(value);
                if (!doc.TryGetProperty(key, out var found) || !JsonElement.DeepEquals(found, expected))
                    throw new IOException(Other($"{key} {(found.ValueKind == JsonValueKind.Undefined ? "missing" : found.GetRawText())}, here {expected.GetRawText()}", metrics));
            }
            double seconds = doc.TryGetProperty("training_seconds", out var t) && t.ValueKind == JsonValueKind.Number ? t.GetDouble() : 0;
            // absent from the metrics.json of runs written before resumed runs counted their earlier time
            int timedFrom = doc.TryGetProperty("timed_from_iteration", out var f) && f.TryGetInt32(out int from) ? from : 0;
            return (new CompareRun(s.Seed, summary, apByIou, TrainSession.ReadLosses(Path.Combine(dir, "losses.csv")), seconds, timedFrom), s);
        }
        if (File.Exists(checkpoint))
        {
            using var d = Detector.Load(checkpoint);
            var c = d.Config;
            string? other = c.Variant != config.Variant ? $"variant {c.Variant}"
                : c.Backbone != config.Backbone || c.Width != config.Width ? $"backbone {c.Backbone} ×{c.Width}"
                : d.Seed != s.Seed ? $"seed {d.Seed}"
                : d.Iteration > s.Iterations ? $"iteration {d.Iteration}, beyond --iters {s.Iterations}"
                : null;
            if (other is not null) throw new IOException(Other(other, checkpoint));
            return (null, s with { Resume = true });
        }
        return (null, s);
    }

    private static int Run(List<(string Variant, List<TrainSettings> Runs)> plan, string baseline, string outDir, TextWriter o, TextWriter e, CancellationToken token)
    {
        var first = plan[0].Runs[0];
        var results = new List<CompareVariant>();
        int total = plan.Sum(p => p.Runs.Count), done = 0;
        bool interrupted = false;
        foreach (var (variant, runs) in plan)
        {
            var finished = new List<CompareRun>();
            var failures = new List<string>();
            foreach (var planned in runs)
            {
                if (token.IsCancellationRequested) { interrupted = true; break; }
                var s = planned;
                o.Write($"[{++done}/{total}] {variant}, seed {s.Seed} → {s.OutputDirectory}");
                try
                {
                    (var earlier, s) = Continue(planned);
                    if (earlier is not null)
                    {
                        o.WriteLine(": finished earlier, reusing its metrics.json");
                        finished.Add(earlier);
                        continue;
                    }
                    o.WriteLine(s.Resume ? ": resuming its checkpoint" : "");
                    var r = TrainSession.Run(s, o, e, interactive: false, token);
                    if (r.ExitCode == 0) finished.Add(new CompareRun(s.Seed, r.Metrics!, r.ApByIou!, r.Losses, r.TrainingTime.TotalSeconds, r.TimedFromIteration));
                    else if (r.ExitCode == 130) interrupted = true;
                    else failures.Add($"seed {s.Seed}: training diverged (see {s.OutputDirectory})");
                }
                catch (Exception ex) when (ex is ArgumentException or IOException or InvalidDataException or PlatformNotSupportedException)
                {
                    e.WriteLine($"grcn compare: {variant}, seed {s.Seed}: {GrcnApp.Message(ex)}");
                    failures.Add($"seed {s.Seed}: {GrcnApp.Message(ex)}");
                }
                o.WriteLine();
            }
            results.Add(new CompareVariant(variant, finished, failures));
            if (interrupted) break;
        }
        string title = $"grcn compare: {string.Join(", ", results.Select(r => r.Variant))}";
        string settings = string.Create(CultureInfo.InvariantCulture,
            $"Data {first.Data}, backbone {first.Backbone.ToString().ToLowerInvariant()} ×{first.Width}, {first.Iterations} iterations × {first.BatchSize} images, lr {first.LearningRate}, " +
            $"shorter side {TrainSession.SizeText(first.TrainSizes.Length > 0 ? first.TrainSizes : [first.Size], first.Size)}, seeds 0–{plan[0].Runs.Count - 1}{(interrupted ? " (interrupted: partial results)" : "")}.");
        var md = CompareReport.Write(outDir, title, settings, first.Backbone, results, results.Any(r => r.Variant == baseline) ? baseline : results[0].Variant);
        o.WriteLine(md);
        o.WriteLine($"wrote {Path.Combine(outDir, "report.md")}, {Path.Combine(outDir, "report.html")} and {Path.Combine(outDir, "report.json")}");
        if (interrupted) o.WriteLine("interrupted: run the same command again to continue (finished runs are reused, the interrupted one resumes)");
        return interrupted ? 130 : results.Any(r => r.Failures.Count > 0) ? 1 : 0;
    }
}
