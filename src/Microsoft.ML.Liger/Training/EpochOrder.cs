namespace Microsoft.ML.Liger.Training;

/// <summary>The order examples are visited in one epoch: a shuffle fixed by (seed, epoch) alone.</summary>
internal static class EpochOrder
{
    /// <summary>Names the shuffle in a checkpoint's run shape: a resume under another shuffle would not continue the run.</summary>
    public const string Version = "splitmix64-seeded";

    /// <summary>
    /// 0..<paramref name="count"/>−1 shuffled by a generator seeded from (<paramref name="seed"/>, <paramref name="epoch"/>).
    /// System.Random with a seed is the same sequence on every platform and .NET version (its seeded legacy
    /// algorithm); the seed is mixed by hand because HashCode.Combine is salted per process, which would give a
    /// resumed process another order than the run it continues.
    /// </summary>
    public static int[] Shuffled(int count, int seed, int epoch)
    {
        int[] order = Enumerable.Range(0, count).ToArray();
        unchecked
        {
            // SplitMix64's finaliser over both numbers: neighbouring (seed, epoch) give unrelated streams.
            ulong z = (ulong)(uint)seed * 0x9E3779B97F4A7C15UL + (ulong)(uint)epoch + 0x632BE59BD9B4E019UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            new Random((int)(z & int.MaxValue)).Shuffle(order);
        }
        return order;
    }
}
