// The check of a VOC or COCO set before the first training step: every listed image exists and
// its header is readable (ImageFile.ReadSize: format and size from the first kilobytes, no
// decoding) with the size its annotation declares, so a missing or corrupt image is reported
// in seconds instead of after hours of training. Training boxes that reach outside their image
// are counted: training clips them to the image (DataLoaderOptions.ClipBoxes) and skips those
// left empty, and the run's log says how many. The synthetic shapes need no check.
using System.Collections.Concurrent;
using GRcn.Detection.Data;

namespace GRcn.Cli.Training;

/// <summary>What <see cref="DataCheck.Run"/> found in a set whose images are all readable.</summary>
/// <param name="Images">Images checked (0 for sets without image files).</param>
/// <param name="ClippedBoxes">Boxes (crowd and difficult ones aside) that reach outside their image.</param>
/// <param name="EmptiedBoxes">Of those, boxes with nothing left inside the image.</param>
internal readonly record struct DataCheckResult(int Images, int ClippedBoxes, int EmptiedBoxes);

internal static class DataCheck
{
    /// <summary>Bad images listed in the error at most.</summary>
    private const int Listed = 3;

    /// <summary>Checks every image of <paramref name="data"/> (the <paramref name="role"/> set: "training" or "evaluation").</summary>
    /// <exception cref="InvalidDataException">Some images are missing or unreadable: how many, and the first few with the reason.</exception>
    public static DataCheckResult Run(IDetectionDataset data, string role)
    {
        Func<int, string> pathOf;
        Func<int, (int Width, int Height)> declared;
        Func<int, IReadOnlyList<ObjectAnnotation>> objectsOf;
        switch (data)
        {
            case VocDataset voc:
                (pathOf, declared, objectsOf) = (voc.GetImagePath, voc.GetDeclaredSize, voc.GetObjects);
                break;
            case CocoDataset coco:
                (pathOf, declared, objectsOf) = (coco.GetImagePath, coco.GetDeclaredSize, coco.GetObjects);
                break;
            default:
                return default;
        }
        var bad = new ConcurrentBag<(int Index, string Problem)>();
        int clipped = 0, emptied = 0;
        Parallel.For(0, data.Count, i =>
        {
            string path = pathOf(i);
            int w, h;
            try
            {
                if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such image file");
                (_, w, h) = ImageFile.ReadSize(path);
                var (dw, dh) = declared(i);
                if (dw > 0 && dh > 0 && (dw != w || dh != h))
                    throw new InvalidDataException($"{path}: image is {w}×{h} but its annotation declares {dw}×{dh}");
            }
            catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
            {
                bad.Add((i, e.Message));
                return;
            }
            foreach (var o in objectsOf(i))
            {
                if (o.IsCrowd || o.Difficult) continue;
                var b = o.Box;
                if (b.X1 >= 0 && b.Y1 >= 0 && b.X2 <= w && b.Y2 <= h) continue;
                Interlocked.Increment(ref clipped);
                if (Math.Min(b.X2, w) <= Math.Max(b.X1, 0) || Math.Min(b.Y2, h) <= Math.Max(b.Y1, 0)) Interlocked.Increment(ref emptied);
            }
        });
        if (!bad.IsEmpty)
        {
            var first = bad.OrderBy(b => b.Index).Take(Listed).Select(b => b.Problem);
            throw new InvalidDataException($"{bad.Count} of {data.Count} {role} images cannot be used, found before training: {string.Join("; ", first)}{(bad.Count > Listed ? "; …" : "")}");
        }
        return new DataCheckResult(data.Count, clipped, emptied);
    }
}
