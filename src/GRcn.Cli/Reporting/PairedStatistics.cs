// Paired differences of grcn compare. Runs of two variants with the same seed see the same
// images in the same order, so a variant is compared with the baseline seed by seed: over the
// n seeds both have, the differences d_s = variant_s − baseline_s give the mean d̄, the sample
// standard deviation s_d and the 95 % Student-t confidence interval d̄ ± t_{0.975, n−1}·s_d/√n
// (no interval from one pair). The t quantile is MathNet.Numerics' inverse CDF.
using MathNet.Numerics.Distributions;

namespace GRcn.Cli.Reporting;

/// <summary>The paired difference of one metric between a variant and the baseline (fractions, as the metrics).</summary>
/// <param name="Seeds">The seeds both have a defined value for, ascending.</param>
/// <param name="Mean">Mean of the per-seed differences.</param>
/// <param name="Std">Sample standard deviation of the differences (0 for one pair).</param>
/// <param name="T">The t quantile t_{(1+confidence)/2, n−1} (NaN for one pair).</param>
/// <param name="Lower">Lower end of the confidence interval (NaN for one pair).</param>
/// <param name="Upper">Upper end of the confidence interval (NaN for one pair).</param>
internal sealed record PairedDifference(IReadOnlyList<ulong> Seeds, double Mean, double Std, double T, double Lower, double Upper)
{
    /// <summary>Number of pairs.</summary>
    public int Pairs => Seeds.Count;

    /// <summary>Whether there is an interval and zero lies outside it.</summary>
    public bool ExcludesZero => Pairs > 1 && (Lower > 0 || Upper < 0);
}

internal static class PairedStatistics
{
    /// <summary>The two-sided confidence level of the intervals.</summary>
    public const double Confidence = 0.95;

    /// <summary>The <paramref name="p"/> quantile of Student's t distribution with <paramref name="degreesOfFreedom"/> degrees of freedom.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="p"/> outside (0, 1) or <paramref name="degreesOfFreedom"/> not positive.</exception>
    public static double StudentTQuantile(double p, double degreesOfFreedom)
    {
        if (!(p > 0 && p < 1)) throw new ArgumentOutOfRangeException(nameof(p), p, "the probability must be in (0, 1)");
        if (!(degreesOfFreedom > 0) || double.IsNaN(degreesOfFreedom))
            throw new ArgumentOutOfRangeException(nameof(degreesOfFreedom), degreesOfFreedom, "the degrees of freedom must be positive");
        return StudentT.InvCDF(0, 1, degreesOfFreedom, p);
    }

    /// <summary>
    /// The paired difference <paramref name="variant"/> − <paramref name="baseline"/> over the seeds both have a defined
    /// (finite, ≥ 0) value for; null when they share none.
    /// </summary>
    public static PairedDifference? Difference(IEnumerable<(ulong Seed, double Value)> variant, IEnumerable<(ulong Seed, double Value)> baseline)
    {
        static bool Defined(double v) => v >= 0 && double.IsFinite(v);
        var byseed = new Dictionary<ulong, double>();
        foreach (var (seed, value) in baseline)
            if (Defined(value)) byseed[seed] = value;
        var pairs = variant.Where(x => Defined(x.Value) && byseed.ContainsKey(x.Seed))
            .Select(x => (x.Seed, Delta: x.Value - byseed[x.Seed])).OrderBy(x => x.Seed).ToArray();
        if (pairs.Length == 0) return null;
        int n = pairs.Length;
        double mean = pairs.Average(x => x.Delta);
        if (n == 1) return new PairedDifference([pairs[0].Seed], mean, 0, double.NaN, double.NaN, double.NaN);
        double std = Math.Sqrt(pairs.Sum(x => (x.Delta - mean) * (x.Delta - mean)) / (n - 1));
        double t = StudentTQuantile(0.5 + Confidence / 2, n - 1);
        double half = t * std / Math.Sqrt(n);
        return new PairedDifference(pairs.Select(x => x.Seed).ToArray(), mean, std, t, mean - half, mean + half);
    }
}
