// Sample: train G-RCN on the built-in synthetic shapes through the public API with the tuned
// recipe that `grcn train` runs (TrainingRecipe.Shapes: the detector, its sizes, AdamW with a
// cosine schedule and the from-scratch initialisation), print its AP on the test split and
// save the checkpoint. Under ten CPU minutes on two cores at the default 10000 iterations.
//
//   dotnet run --project samples/TrainShapes -c Release [-- ITERATIONS [CHECKPOINT]]
using System.Diagnostics;
using GRcn.Detection.Data;
using GRcn.Detection.Training;

int iterations = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : TrainingRecipe.Shapes.Iterations;
string checkpoint = args.Length > 1 ? args[1] : "shapes-checkpoint.safetensors";
var clock = Stopwatch.StartNew();

// readme:train-shapes
var recipe = TrainingRecipe.Shapes with { Iterations = iterations };   // what `grcn train` runs
var train = new ShapesDataset(new ShapesOptions { Count = 4000, Split = ShapesSplit.Train });
var test = new ShapesDataset(new ShapesOptions { Count = 500, Split = ShapesSplit.Test });
using var detector = recipe.CreateDetector(train.ClassNames, seed: 0);
var trainer = new Trainer(detector, train, test: null, recipe.CreateTrainerOptions(seed: 0));
trainer.Progress += p => { if (p.Iteration % 500 == 0) Console.WriteLine($"iteration {p.Iteration}: loss {p.Losses.Total:0.000}"); };
trainer.Run();
var report = Trainer.Evaluate(detector, test);
Console.WriteLine($"AP50 {report.Coco.Summary.AP50:0.000}  AP {report.Coco.Summary.AP:0.000}");
detector.Save(checkpoint);                                               // weights + config + optimiser state, atomic
// end readme

Console.WriteLine($"{clock.Elapsed:m\\:ss} in all; saved {checkpoint} (try: dotnet run --project samples/DetectImage -- {checkpoint})");
