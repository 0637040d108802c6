// grcn train: trains a detector variant (TrainSession) with live progress, periodic
// evaluation and checkpoints; Ctrl-C writes a checkpoint and exits (code 130; SIGTERM 143,
// SIGHUP 129), a diverged run prints why and exits 1. A folder that holds a checkpoint is
// continued with --resume or replaced with --overwrite, never replaced silently. With no options it trains the eighth-width VGG16 G-RCN (aligned RoIAlign, group norm, AdamW) on the
// built-in synthetic shapes in a few CPU minutes.
using System.CommandLine;
using GRcn.Cli.Training;

namespace GRcn.Cli.Commands;

internal static class TrainCommand
{
    public static Command Create()
    {
        var shared = new TrainOptions();
        var variant = new Option<string?>("--variant") { Description = "Variant name (docs/variants.md), e.g. g-rcn, faster-rcnn, -pool/loc, g-rcn+roi-align (default: g-rcn+roi-align-v2 on shapes and shapes-large, g-rcn otherwise)" };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the initial weights, sampling and data order", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out") { Description = "Output folder: checkpoint.safetensors, metrics.json, detections.png, loss.png/.svg, lr.png/.svg, losses.csv", DefaultValueFactory = _ => Path.Combine("runs", "latest") };
        var resume = new Option<bool>("--resume") { Description = "Continue from OUT/checkpoint.safetensors (weights, optimiser state, iteration)" };
        var plain = new Option<bool>("--plain") { Description = "Plain progress lines even on a terminal" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Start afresh even though OUT holds a checkpoint (without it, or --resume, train refuses to replace one)" };
        var command = new Command("train", "Train a detector (default: G-RCN with aligned RoIAlign, eighth-width VGG16 with group norm, on the built-in synthetic shapes, CPU) and evaluate it. " + GrcnApp.ExitCodes);
        shared.AddTo(command);
        command.Options.Add(variant);
        command.Options.Add(seed);
        command.Options.Add(output);
        command.Options.Add(resume);
        command.Options.Add(plain);
        command.Options.Add(overwrite);
        command.SetAction(p =>
        {
            var o = p.InvocationConfiguration.Output;
            var e = p.InvocationConfiguration.Error;
            TrainSettings settings;
            try
            {
                settings = shared.Resolve(p, p.GetValue(variant), p.GetValue(seed), p.GetValue(output)!, p.GetValue(resume)) with
                {
                    Overwrite = p.GetValue(overwrite),
                    Given = command.Options.Where(o => p.GetResult(o) is { Implicit: false }).Select(o => o.Name).ToHashSet(),
                };
            }
            catch (ArgumentException ex)
            {
                e.WriteLine($"grcn train: {GrcnApp.Message(ex)}");
                return 2;
            }
            bool interactive = !p.GetValue(plain) && ReferenceEquals(o, Console.Out) && !Console.IsOutputRedirected;
            return GrcnApp.WithCtrlC(token =>
            {
                try
                {
                    return TrainSession.Run(settings, o, e, interactive, token).ExitCode;
                }
                catch (Exception ex) when (ex is ArgumentException or IOException or InvalidDataException or NotSupportedException or UnauthorizedAccessException
                                           or GRcn.Detection.Nn.StateDictException)
                {
                    e.WriteLine($"grcn train: {GrcnApp.Message(ex)}");
                    return 2;
                }
            }, e);
        });
        return command;
    }
}
