using System.Globalization;

namespace Microsoft.ML.Liger.Sweeps.Tuners;

/// <summary>
/// Visits the grid from the cheapest point up, and records as infeasible, without running them, the points that an
/// earlier out-of-memory trial proves cannot fit.
/// </summary>
/// <remarks>
/// <para>Cost, compared in this order (grid order breaks ties):</para>
/// <list type="number">
/// <item>time per optimizer step, taken as proportional to its tokens, <c>BatchSize · GradientAccumulationSteps · MaxContextLength</c>,
/// times 4/3 with <c>GradientCheckpointing</c> (each layer's forward runs twice);</item>
/// <item>memory, taken as proportional to a micro-batch's tokens <c>BatchSize · MaxContextLength</c>, halved with
/// <c>GradientCheckpointing</c>, doubled with <c>Liger</c> off (logits and activations materialised).</item>
/// </list>
/// <para>A dimension missing from the space counts as 1. Cheap points first means a time budget covers as many points as it
/// can, and a point usually runs only after the smaller ones that tell whether it can fit.</para>
/// <para>The infeasibility rule: memory never falls as <c>MaxContextLength</c> or <c>BatchSize</c> grow, and never rises when
/// <c>GradientCheckpointing</c> or <c>Liger</c> is turned on; <c>LearningRate</c> and <c>GradientAccumulationSteps</c> do not change it. So a
/// point needs at least the memory of an out-of-memory point when its context and batch are no smaller, it has checkpointing
/// on only if that point had, Liger on only if that point had, and every other dimension is equal. Such a point is recorded
/// <see cref="TrialStatus.Infeasible"/> with the out-of-memory trial's id.</para>
/// </remarks>
internal sealed class CostAwareTuner : ITuner
{
    internal const string ContextLength = nameof(FineTuneCausalLMSearchSpace.MaxContextLength);
    internal const string BatchSize = nameof(FineTuneCausalLMSearchSpace.BatchSize);
    internal const string Accumulation = nameof(FineTuneCausalLMSearchSpace.GradientAccumulationSteps);
    internal const string Checkpointing = nameof(FineTuneCausalLMSearchSpace.GradientCheckpointing);
    internal const string Liger = nameof(FineTuneCausalLMSearchSpace.Liger);
    internal const string LearningRate = nameof(FineTuneCausalLMSearchSpace.LearningRate);

    private readonly IReadOnlyList<IReadOnlyDictionary<string, object>> order;

    public CostAwareTuner(ISearchSpace space, int pointsPerRange)
    {
        var grid = space.GridPoints(pointsPerRange);
        order = grid.Select((point, index) => (point, index))
            .OrderBy(x => TimeCost(x.point)).ThenBy(x => MemoryCost(x.point)).ThenBy(x => x.index)
            .Select(x => x.point).ToList();
    }

    public Proposal? Propose(IReadOnlyList<TrialResult> history)
    {
        var tried = Points.Tried(history);
        var next = order.FirstOrDefault(p => !tried.Contains(Points.Key(p)));
        if (next is null)
            return null;
        var proof = history.FirstOrDefault(t => t.Status == TrialStatus.Infeasible && NeedsAtLeastTheMemoryOf(next, t.Parameters));
        return proof is null
            ? new Proposal(next)
            : new Proposal(next, $"Skipped: needs at least the memory of trial {proof.Id} ({Describe(proof.Parameters)}), which ran out of memory.");
    }

    /// <summary>Estimated time per optimizer step, in tokens (checkpointing recomputes the forward: about a third more).</summary>
    internal static double TimeCost(IReadOnlyDictionary<string, object> p) =>
        Number(p, BatchSize) * Number(p, Accumulation) * Number(p, ContextLength) * (Flag(p, Checkpointing) ? 4.0 / 3.0 : 1.0);

    /// <summary>Estimated memory, in micro-batch tokens, scaled by what checkpointing saves and what turning Liger off costs.</summary>
    internal static double MemoryCost(IReadOnlyDictionary<string, object> p) =>
        Number(p, BatchSize) * Number(p, ContextLength) * (Flag(p, Checkpointing) ? 0.5 : 1.0) * (p.ContainsKey(Liger) && !Flag(p, Liger) ? 2.0 : 1.0);

    /// <summary>Whether <paramref name="point"/> is proven to need at least as much memory as <paramref name="outOfMemory"/> (the rule above).</summary>
    internal static bool NeedsAtLeastTheMemoryOf(IReadOnlyDictionary<string, object> point, IReadOnlyDictionary<string, object> outOfMemory)
    {
        foreach (var (name, value) in point)
        {
            if (!outOfMemory.TryGetValue(name, out var other))
                return false;
            bool holds = (name, value, other) switch
            {
                (ContextLength or BatchSize, int or double, int or double) => Number(point, name) >= Number(outOfMemory, name),
                (Checkpointing or Liger, bool here, bool there) => !here || there, // on saves memory: on here only if on there
                (LearningRate or Accumulation, _, _) => true,
                _ => Equals(value, other),
            };
            if (!holds)
                return false;
        }
        return point.Count == outOfMemory.Count;
    }

    private static double Number(IReadOnlyDictionary<string, object> p, string name) =>
        p.TryGetValue(name, out var v) && v is int or double ? Convert.ToDouble(v, CultureInfo.InvariantCulture) : 1.0;

    private static bool Flag(IReadOnlyDictionary<string, object> p, string name) => p.TryGetValue(name, out var v) && v is true;

    private static string Describe(IReadOnlyDictionary<string, object> p) =>
        string.Join(", ", p.Select(kv => $"{kv.Key} = {SearchDimension.Format(kv.Value)}"));
}
