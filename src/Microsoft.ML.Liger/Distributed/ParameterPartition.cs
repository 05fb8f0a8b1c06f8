namespace Microsoft.ML.Liger.Distributed;

/// <summary>ZeRO-1's split of the trainable parameters among the ranks, by element count.</summary>
internal static class ParameterPartition
{
    /// <summary>
    /// The owner rank of each of <paramref name="sizes"/>: largest first, each to the rank with the fewest elements so far
    /// (lowest rank on ties), which keeps every rank within one parameter of the mean. Depends only on the sizes, so every
    /// rank computes the same split.
    /// </summary>
    public static int[] Balance(IReadOnlyList<long> sizes, int ranks)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(ranks, 1);
        var owners = new int[sizes.Count];
        var load = new long[ranks];
        foreach (int i in Enumerable.Range(0, sizes.Count).OrderByDescending(i => sizes[i]).ThenBy(i => i))
        {
            int least = 0;
            for (int r = 1; r < ranks; r++)
                if (load[r] < load[least])
                    least = r;
            owners[i] = least;
            load[least] += sizes[i];
        }
        return owners;
    }
}
