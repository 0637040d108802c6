// A small counter-free random generator (SeededRandom) and hash mixing for reproducible,
// order-independent randomness: each image, flip or shuffle derives its own generator from
// (seed, purpose, epoch, index), so results do not depend on thread timing. A value type;
// each user owns its copy.
namespace GRcn.Detection.Data;

/// <summary>SeededRandom: a 64-bit state advanced by a Weyl step, output through a bijective mixer.</summary>
internal struct SeededRandom
{
    private ulong _state;

    public SeededRandom(ulong seed) => _state = seed;

    /// <summary>A generator for the tuple (a, b, c, d): each component hashed in turn.</summary>
    public static SeededRandom For(ulong a, ulong b = 0, ulong c = 0, ulong d = 0) => new(Hash(a, b, c, d));

    /// <summary>Mixes four values into one well-distributed 64-bit key.</summary>
    public static ulong Hash(ulong a, ulong b = 0, ulong c = 0, ulong d = 0)
    {
        ulong h = Mix(a + 0x9E3779B97F4A7C15UL);
        h = Mix(h ^ (b + 0xBF58476D1CE4E5B9UL));
        h = Mix(h ^ (c + 0x94D049BB133111EBUL));
        return Mix(h ^ (d + 0xD6E8FEB86659FD93UL));
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public ulong NextULong()
    {
        _state += 0x9E3779B97F4A7C15UL;
        return Mix(_state);
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextULong() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform in [lo, hi).</summary>
    public double NextDouble(double lo, double hi) => lo + (hi - lo) * NextDouble();

    /// <summary>Uniform integer in [0, n), n &gt; 0 (Lemire's multiply-shift; bias below 2^-32 for the n used here).</summary>
    public int NextInt(int n) => (int)(((NextULong() >> 32) * (ulong)n) >> 32);

    /// <summary>Uniform integer in [lo, hi] inclusive.</summary>
    public int NextInt(int lo, int hi) => lo + NextInt(hi - lo + 1);

    /// <summary>True with probability <paramref name="p"/>.</summary>
    public bool Chance(double p) => NextDouble() < p;
}
