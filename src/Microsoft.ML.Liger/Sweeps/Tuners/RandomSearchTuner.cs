namespace Microsoft.ML.Liger.Sweeps.Tuners;

/// <summary>
/// Points drawn independently from the space (<see cref="SearchSpace{T}.Sample"/>) with a seeded generator, so a sweep
/// repeats with the same seed. A point already tried is drawn again; when every point of a finite space (choices only)
/// has been tried, or many draws in a row bring only repeats, the tuner is done.
/// </summary>
internal sealed class RandomSearchTuner(ISearchSpace space, int seed) : ITuner
{
    private const int DrawsBeforeGivingUp = 1000;
    private readonly Random random = new(seed);

    public Proposal? Propose(IReadOnlyList<TrialResult> history)
    {
        var tried = Points.Tried(history);
        if (FiniteSize(space) is long size && tried.Count >= size)
            return null;
        for (int draw = 0; draw < DrawsBeforeGivingUp; draw++)
        {
            var point = space.SamplePoint(random);
            if (!tried.Contains(Points.Key(point)))
                return new Proposal(point);
        }
        return null;
    }

    private static long? FiniteSize(ISearchSpace space)
    {
        long size = 1;
        foreach (var d in space.Dimensions)
        {
            long count = d.Choices?.Count ?? (d.ValueType == typeof(int) ? (long)(d.Max - d.Min + 1) : -1);
            if (count < 0)
                return null;
            size = size > long.MaxValue / Math.Max(count, 1) ? long.MaxValue : size * count;
        }
        return size;
    }
}
