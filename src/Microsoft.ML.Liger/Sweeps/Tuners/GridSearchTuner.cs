namespace Microsoft.ML.Liger.Sweeps.Tuners;

/// <summary>Every grid point (<see cref="SearchSpace{T}.Grid"/>) once, in grid order: the first dimension varies slowest.</summary>
internal sealed class GridSearchTuner(ISearchSpace space, int pointsPerRange) : ITuner
{
    private readonly IReadOnlyList<IReadOnlyDictionary<string, object>> grid = space.GridPoints(pointsPerRange);

    public Proposal? Propose(IReadOnlyList<TrialResult> history)
    {
        var tried = Points.Tried(history);
        return grid.FirstOrDefault(p => !tried.Contains(Points.Key(p))) is { } next ? new Proposal(next) : null;
    }
}
