using Liger.Kernels.Losses;
using Liger.Kernels.Runtime;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.PreferenceAlignment;

/// <summary>
/// TRL's preference metrics gathered on the device (sums of per-pair or per-sequence values, as float64 scalars) and
/// moved to the host in one synchronisation when taken. Means are over pairs (KTO: over the desirable or undesirable
/// sequences) since the last take.
/// </summary>
internal sealed class PreferenceMetrics
{
    private readonly Dictionary<string, (Tensor Sum, long Count)> sums = [];

    /// <summary>A paired loss's metrics for a batch of <paramref name="pairs"/> pairs.</summary>
    public void Add(PreferenceLossResult result, long pairs, bool nll)
    {
        using var scope = NewDisposeScope();
        Add("rewards/chosen", result.ChosenRewards.sum(), pairs);
        Add("rewards/rejected", result.RejectedRewards.sum(), pairs);
        Add("rewards/accuracies", result.ChosenRewards.gt(result.RejectedRewards).sum(), pairs);
        Add("rewards/margins", (result.ChosenRewards - result.RejectedRewards).sum(), pairs);
        Add("logps/chosen", result.ChosenLogProbs.sum(), pairs);
        Add("logps/rejected", result.RejectedLogProbs.sum(), pairs);
        Add("logits/chosen", result.ChosenLogitsMean.Times(pairs), pairs);
        Add("logits/rejected", result.RejectedLogitsMean.Times(pairs), pairs);
        if (nll)
            Add("nll_loss", result.NllLoss.Times(pairs), pairs);
        foreach (var (name, value) in result.Extras)
            Add(name, value.Times(pairs), pairs);
    }

    /// <summary>KTO's metrics: desirable sequences as "chosen", undesirable ones as "rejected", and the KL baseline.</summary>
    public void Add(KtoLossResult result, bool[] desirable)
    {
        using var scope = NewDisposeScope();
        long wanted = desirable.Count(d => d), unwanted = desirable.Length - wanted;
        var mask = tensor(desirable, device: result.Rewards.device).to(ScalarType.Float64);
        var inverse = mask.neg().Plus(1.0);
        foreach (var (name, values) in new[] { ("rewards", result.Rewards), ("logps", result.LogProbs), ("logits", result.LogitsMean) })
        {
            var v = values.to(ScalarType.Float64);
            if (wanted > 0) Add($"{name}/chosen", (v * mask).sum(), wanted);
            if (unwanted > 0) Add($"{name}/rejected", (v * inverse).sum(), unwanted);
        }
        Add("kl", result.Kl.Times(desirable.Length), desirable.Length);
    }

    /// <summary>The means since the last take (one host synchronisation), with rewards/margins derived for KTO; null when nothing was added.</summary>
    public IReadOnlyDictionary<string, double>? Take()
    {
        if (sums.Count == 0)
            return null;
        var names = sums.Keys.ToList();
        double[] values;
        using (var stacked = stack(names.Select(n => sums[n].Sum).ToList()).cpu())
            values = stacked.data<double>().ToArray();
        var means = new Dictionary<string, double>();
        for (int i = 0; i < names.Count; i++)
            means[names[i]] = values[i] / sums[names[i]].Count;
        if (!means.ContainsKey("rewards/margins") && means.TryGetValue("rewards/chosen", out double c) && means.TryGetValue("rewards/rejected", out double r))
            means["rewards/margins"] = c - r;
        foreach (var (sum, _) in sums.Values)
            sum.Dispose();
        sums.Clear();
        return means;
    }

    private void Add(string name, Tensor value, long count)
    {
        var v = value.detach().to(ScalarType.Float64);
        if (sums.TryGetValue(name, out var entry))
        {
            entry.Sum.PlusInPlace(v);
            sums[name] = (entry.Sum, entry.Count + count);
        }
        else
        {
            sums[name] = (v.clone().DetachFromDisposeScope(), count); // kept across micro-batches until taken
        }
    }
}
