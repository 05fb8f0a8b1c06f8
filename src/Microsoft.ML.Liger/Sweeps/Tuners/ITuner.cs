namespace Microsoft.ML.Liger.Sweeps.Tuners;

/// <summary>What a tuner asks the sweep to do next: run a point, or record it as infeasible without running it.</summary>
/// <param name="Parameters">The point.</param>
/// <param name="InfeasibleBecause">Non-null: the point is known not to fit (the reason, for <see cref="TrialResult.Error"/>).</param>
internal sealed record Proposal(IReadOnlyDictionary<string, object> Parameters, string? InfeasibleBecause = null);

/// <summary>Chooses a sweep's next point from the trials so far (AutoML's <c>ITuner</c>, reduced to what a sweep needs).</summary>
internal interface ITuner
{
    /// <summary>The next point, or null when the tuner has nothing left to try.</summary>
    Proposal? Propose(IReadOnlyList<TrialResult> history);
}

/// <summary>Points as dictionaries: a key for "was this point tried".</summary>
internal static class Points
{
    public static string Key(IReadOnlyDictionary<string, object> point) =>
        string.Join("\u001f", point.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={SearchDimension.Format(p.Value)}"));

    public static HashSet<string> Tried(IReadOnlyList<TrialResult> history) => history.Select(t => Key(t.Parameters)).ToHashSet();
}
