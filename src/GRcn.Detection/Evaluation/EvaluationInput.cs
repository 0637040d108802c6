// Argument checks shared by the evaluators' AddImage: labels in range, finite boxes and scores.
using GRcn.Detection.Data;

namespace GRcn.Detection.Evaluation;

internal static class EvaluationInput
{
    /// <summary>Throws ArgumentException naming the element when a label is outside [0, classCount) or a box or score is not finite.</summary>
    public static void Validate(IReadOnlyList<ObjectAnnotation> groundTruth, IReadOnlyList<DetectedObject> detections, int classCount)
    {
        ArgumentNullException.ThrowIfNull(groundTruth);
        ArgumentNullException.ThrowIfNull(detections);
        for (int i = 0; i < groundTruth.Count; i++)
        {
            var o = groundTruth[i] ?? throw new ArgumentException($"groundTruth[{i}] is null", nameof(groundTruth));
            if ((uint)o.Label >= (uint)classCount)
                throw new ArgumentException($"groundTruth[{i}].Label = {o.Label}, expected 0..{classCount - 1}", nameof(groundTruth));
            if (!o.Box.IsFinite) throw new ArgumentException($"groundTruth[{i}].Box = {o.Box} has a non-finite coordinate", nameof(groundTruth));
        }
        for (int i = 0; i < detections.Count; i++)
        {
            var d = detections[i];
            if ((uint)d.Label >= (uint)classCount)
                throw new ArgumentException($"detections[{i}].Label = {d.Label}, expected 0..{classCount - 1}", nameof(detections));
            if (!d.Box.IsFinite) throw new ArgumentException($"detections[{i}].Box = {d.Box} has a non-finite coordinate", nameof(detections));
            if (!float.IsFinite(d.Score))
                throw new ArgumentException($"detections[{i}].Score = {d.Score}, expected a finite score", nameof(detections));
        }
    }
}
