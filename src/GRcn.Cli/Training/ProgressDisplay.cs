// Training progress on the console. On a terminal: a Spectre.Console live progress bar whose
// description shows the iteration, the loss terms, images/s, the ETA and the latest periodic
// evaluation. Otherwise (CI logs, pipes, tests): one plain line every N iterations with the
// loss terms' means over those iterations, and a line per evaluation.
using System.Globalization;
using GRcn.Detection.Model;
using GRcn.Detection.Training;
using Spectre.Console;

namespace GRcn.Cli.Training;

/// <summary>Receives the events of a training run.</summary>
internal interface IProgressSink
{
    /// <summary>After a step.</summary>
    void Step(TrainProgress progress);

    /// <summary>After a periodic evaluation.</summary>
    void Evaluated(int iteration, double ap, double ap50);
}

internal static class ProgressDisplay
{
    /// <summary>Runs <paramref name="body"/> with a sink that shows progress on <paramref name="output"/>.</summary>
    /// <param name="interactive">Use the live display (the caller checked that the output is a terminal).</param>
    public static T Run<T>(bool interactive, TextWriter output, int logEvery, int start, int total, Func<IProgressSink, T> body)
    {
        if (!interactive) return body(new PlainSink(output, Math.Max(1, logEvery)));
        T result = default!;
        var sink = new LiveSink(start, total);
        AnsiConsole.Live(sink.Render()).AutoClear(false).Start(ctx =>
        {
            sink.Context = ctx;
            result = body(sink);
            ctx.UpdateTarget(sink.Render());
        });
        return result;
    }

    /// <summary>
    /// "it 200/1500  loss 1.234 (obj 0.100 rpn-box 0.050 cls 0.600 box 0.484; mean of it 101–200)  lr 0.0020  12.3 img/s  ETA 4:05":
    /// the loss terms are <paramref name="mean"/>, the means over iterations <paramref name="from"/> to the progress's own
    /// (one step's value alone jumps by a factor 3 from step to step); no speed or ETA until the trainer has measured one.
    /// </summary>
    public static string Describe(TrainProgress p, LossTerms mean, int from)
    {
        var inv = CultureInfo.InvariantCulture;
        string over = from >= p.Iteration ? string.Create(inv, $"it {p.Iteration}") : string.Create(inv, $"mean of it {from}–{p.Iteration}");
        string speed = p.ImagesPerSecond > 0 ? string.Create(inv, $"  {p.ImagesPerSecond:0.0} img/s  ETA {Clock(p.Eta)}") : "";
        return string.Create(inv,
            $"it {p.Iteration}/{p.Total}  loss {mean.Total:0.000} (obj {mean.RpnObjectness:0.000} rpn-box {mean.RpnBox:0.000} cls {mean.Classifier:0.000} box {mean.BoxRegression:0.000}; {over})  lr {p.LearningRate:0.#####}{speed}");
    }

    /// <summary>m:ss or h:mm:ss.</summary>
    public static string Clock(TimeSpan t) => t.TotalHours >= 1
        ? t.ToString(@"h\:mm\:ss", CultureInfo.InvariantCulture)
        : t.ToString(@"m\:ss", CultureInfo.InvariantCulture);

    /// <summary>A line at the first step, every <c>every</c> iterations and at the last, with the loss terms' means since the previous line.</summary>
    private sealed class PlainSink(TextWriter output, int every) : IProgressSink
    {
        private double _obj, _rpnBox, _cls, _box;
        private int _steps, _from;

        public void Step(TrainProgress p)
        {
            if (_steps == 0) _from = p.Iteration;
            var l = p.Losses;
            (_obj, _rpnBox, _cls, _box) = (_obj + l.RpnObjectness, _rpnBox + l.RpnBox, _cls + l.Classifier, _box + l.BoxRegression);
            _steps++;
            if (p.Iteration % every != 0 && p.Iteration != p.Total && p.Iteration != 1) return;
            output.WriteLine(Describe(p, new LossTerms(_obj / _steps, _rpnBox / _steps, _cls / _steps, _box / _steps), _from));
            (_obj, _rpnBox, _cls, _box, _steps) = (0, 0, 0, 0, 0);
        }

        public void Evaluated(int iteration, double ap, double ap50) =>
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"eval @ {iteration}: AP {ap:0.000}  AP50 {ap50:0.000}"));
    }

    /// <summary>Three lines redrawn at most 5 times a second: a bar with counts and speed, the loss terms, the latest evaluation.</summary>
    private sealed class LiveSink(int start, int total) : IProgressSink
    {
        private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
        private long _lastDraw = -1;
        private TrainProgress? _last;
        private string _eval = "no evaluation yet";

        public LiveDisplayContext? Context { get; set; }

        public void Step(TrainProgress p)
        {
            _last = p;
            long now = _clock.ElapsedMilliseconds;
            if (_lastDraw >= 0 && now - _lastDraw < 200 && p.Iteration < p.Total) return;
            _lastDraw = now;
            Context?.UpdateTarget(Render());
        }

        public void Evaluated(int iteration, double ap, double ap50)
        {
            _eval = string.Create(CultureInfo.InvariantCulture, $"eval @ {iteration}: AP {ap:0.000}  AP50 {ap50:0.000}");
            Context?.UpdateTarget(Render());
        }

        public Spectre.Console.Rendering.IRenderable Render()
        {
            var inv = CultureInfo.InvariantCulture;
            int done = _last?.Iteration ?? start;
            double fraction = total > 0 ? Math.Clamp((double)done / total, 0, 1) : 1;
            const int width = 30;
            int filled = (int)Math.Round(fraction * width);
            string bar = $"[green]{new string('━', filled)}[/][grey]{new string('━', width - filled)}[/]";
            string speed = _last is { } p ? string.Create(inv, $"{p.ImagesPerSecond:0.0} img/s  ETA {Clock(p.Eta)}") : "starting";
            string line1 = string.Create(inv, $"{bar} {100 * fraction,3:0}%  it {done}/{total}  {Clock(_clock.Elapsed)}  {speed}");
            string line2 = _last is { } q
                ? Markup.Escape(string.Create(inv,
                    $"loss {q.Losses.Total:0.000} = obj {q.Losses.RpnObjectness:0.000} + rpn-box {q.Losses.RpnBox:0.000} + cls {q.Losses.Classifier:0.000} + box {q.Losses.BoxRegression:0.000}  lr {q.LearningRate:0.#####}"))
                : "";
            return new Rows(new Markup(line1), new Markup(line2), new Markup("[grey]" + Markup.Escape(_eval) + "[/]"));
        }
    }
}
