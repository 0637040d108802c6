// Sample: load a detector checkpoint (from grcn train or samples/TrainShapes), detect the
// objects of an image (score ≥ 0.5), print them and write a copy of the image with the boxes
// drawn (never over an existing file).
// Without an image argument (or with "") it uses a synthetic shapes test image.
//
//   dotnet run --project samples/DetectImage -c Release -- CHECKPOINT [IMAGE] [OUT.png]
using GRcn.Detection.Data;
using GRcn.Detection.Model;

if (args.Length < 1)
{
    Console.Error.WriteLine("usage: DetectImage CHECKPOINT [IMAGE] [OUT.png]");
    return 2;
}
// readme:detect-image
using var detector = Detector.Load(args[0]);                            // a checkpoint of grcn train or TrainShapes
// PNG, JPEG, BMP, GIF, WebP or PPM; or the first synthetic test image
RgbImage image = args.Length > 1 && args[1].Length > 0
    ? ImageFile.Load(args[1])
    : new ShapesDataset(new ShapesOptions { Count = 1, Split = ShapesSplit.Test }).Load(0).Image;
var detections = detector.Detect(image, scoreThreshold: 0.5f);          // highest score first
foreach (var d in detections)
    Console.WriteLine($"{d.ClassName,-12} {d.Score:0.000}  ({d.Box.X1:0.0}, {d.Box.Y1:0.0}) – ({d.Box.X2:0.0}, {d.Box.Y2:0.0})");
// end readme
Console.WriteLine($"{detections.Count} detections (score ≥ 0.5) by {detector.Config.Variant} after {detector.Iteration} iterations");

// draw each box's outline in a colour per class
byte[][] colours = [[31, 119, 180], [255, 127, 14], [214, 39, 40], [148, 103, 189], [23, 190, 207]];
var pixels = (byte[])image.Pixels.Clone();
void Put(int x, int y, byte[] c)
{
    if ((uint)x < (uint)image.Width && (uint)y < (uint)image.Height) c.CopyTo(pixels, 3 * (y * image.Width + x));
}
foreach (var d in detections)
{
    var c = colours[d.Label % colours.Length];
    int x1 = (int)d.Box.X1, y1 = (int)d.Box.Y1, x2 = (int)MathF.Ceiling(d.Box.X2) - 1, y2 = (int)MathF.Ceiling(d.Box.Y2) - 1;
    for (int x = x1; x <= x2; x++) { Put(x, y1, c); Put(x, y2, c); }
    for (int y = y1; y <= y2; y++) { Put(x1, y, c); Put(x2, y, c); }
}
string output = args.Length > 2 ? args[2] : "detections.png";
if (File.Exists(output))
{
    Console.Error.WriteLine($"{output} exists; name another output file");
    return 2;
}
File.WriteAllBytes(output, ImageFile.EncodePng(new RgbImage(image.Width, image.Height, pixels)));
Console.WriteLine($"wrote {output}");
return 0;
