namespace Microsoft.ML.Liger.Distributed;

/// <summary>
/// A training plan whose micro-batches can be split by rows among the ranks: the plan cuts the data into micro-batches
/// of <see cref="Training.CausalLMTrainingOptions.GlobalBatchSize"/> rows (the same on every rank, from the seed and
/// epoch alone), and each rank trains on its own contiguous rows of each.
/// </summary>
internal interface IShardablePlan<TBatch> where TBatch : class
{
    /// <summary>Part <paramref name="part"/> of <paramref name="parts"/> of <paramref name="batch"/>'s rows, or null when that part is empty.</summary>
    TBatch? Shard(TBatch batch, int part, int parts);
}

/// <summary>Which rows of a micro-batch each rank takes.</summary>
internal static class DistributedSampler
{
    /// <summary>
    /// Rows [start, end) of <paramref name="rows"/> for part <paramref name="part"/> of <paramref name="parts"/>: contiguous, in
    /// rank order, sizes differing by at most one, so a full micro-batch of W·B rows gives every rank exactly B and a short last
    /// one is spread as evenly as it can be. The parts partition the rows.
    /// </summary>
    public static (int Start, int End) Rows(int rows, int part, int parts)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfLessThan(parts, 1);
        if (part < 0 || part >= parts)
            throw new ArgumentOutOfRangeException(nameof(part), part, $"The part must be in [0, {parts - 1}].");
        return ((int)((long)rows * part / parts), (int)((long)rows * (part + 1) / parts));
    }
}
