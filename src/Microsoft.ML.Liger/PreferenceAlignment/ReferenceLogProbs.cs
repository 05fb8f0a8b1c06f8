using Microsoft.ML.Liger.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.PreferenceAlignment;

/// <summary>Which data set a batch comes from (precomputed log-probs are kept per set).</summary>
internal enum PreferenceDataSet
{
    Train,
    Validation,
}

/// <summary>
/// The frozen reference model's side of DPO and KTO: per-sequence log-probs, computed without gradients and without
/// its logits (hidden states, then lm_head chunk by chunk), either per batch from the model or looked up from a table
/// computed once before training (after which the model is freed).
/// </summary>
internal sealed class ReferenceLogProbs : IDisposable
{
    private readonly bool average;
    private readonly int batchSize, padId;
    private readonly bool paired;
    private readonly Dictionary<PreferenceDataSet, (float[] First, float[] Second)> tables = [];
    private CausalLM? model;

    /// <param name="model">The frozen reference model (eval mode, no parameter requiring a gradient); owned from here on.</param>
    /// <param name="average">Average log-probs over tokens (as the loss does).</param>
    /// <param name="paired">Paired data (else KTO's).</param>
    /// <param name="batchSize">Examples per batch when precomputing.</param>
    /// <param name="padId">Padding id.</param>
    public ReferenceLogProbs(CausalLM model, bool average, bool paired, int batchSize, int padId)
    {
        this.model = model;
        this.average = average;
        this.paired = paired;
        this.batchSize = batchSize;
        this.padId = padId;
    }

    /// <summary>The reference model while it is held (null after <see cref="Precompute"/>).</summary>
    internal CausalLM? Model => model;

    /// <summary>Computes the log-probs of every sequence of each data set, then frees the model.</summary>
    public void Precompute(IReadOnlyList<PreferenceExample> train, IReadOnlyList<PreferenceExample>? validation)
    {
        var reference = model ?? throw new InvalidOperationException("The reference log-probs are already precomputed.");
        foreach (var (set, data) in new[] { (PreferenceDataSet.Train, train), (PreferenceDataSet.Validation, validation) })
        {
            if (data is null)
                continue;
            var first = new float[data.Count];
            var second = new float[data.Count];
            foreach (var batch in PreferenceBatch.InOrder(data, batchSize, paired, padId))
            {
                using var scope = NewDisposeScope();
                var main = LogProbs(reference, batch.Main).cpu().data<float>().ToArray();
                var kl = batch.Kl is null ? null : LogProbs(reference, batch.Kl).cpu().data<float>().ToArray();
                for (int i = 0; i < batch.Units; i++)
                {
                    int at = batch.Examples[i];
                    first[at] = main[i];
                    second[at] = paired ? main[batch.Units + i] : kl?[i] ?? float.NaN;
                }
            }
            tables[set] = (first, second);
        }
        model = null;
        reference.Dispose();
    }

    /// <summary>The reference log-probs of the batch's main sequences (float32, in the batch's row order), on <paramref name="device"/>.</summary>
    public Tensor Main(PreferenceBatch batch, PreferenceDataSet set, Device device)
    {
        if (model is not null)
            return LogProbs(model, batch.Main);
        var (first, second) = Table(set);
        var values = batch.Examples.Select(i => first[i]);
        if (paired)
            values = values.Concat(batch.Examples.Select(i => second[i]));
        return tensor(values.ToArray(), device: device);
    }

    /// <summary>The reference log-probs of the batch's KL sequences (KTO).</summary>
    public Tensor Kl(PreferenceBatch batch, PreferenceDataSet set, Device device)
    {
        if (model is not null)
            return LogProbs(model, batch.Kl!);
        var (_, second) = Table(set);
        return tensor(batch.Examples.Select(i => second[i]).ToArray(), device: device);
    }

    private (float[] First, float[] Second) Table(PreferenceDataSet set) =>
        tables.TryGetValue(set, out var table) ? table : throw new InvalidOperationException($"No reference log-probs were precomputed for the {set} set.");

    private Tensor LogProbs(CausalLM reference, SequenceRows rows)
    {
        var device = reference.LmHeadWeight.device;
        return reference.SequenceLogProbs(rows.Input(device), rows.Target(device), average);
    }

    public void Dispose()
    {
        model?.Dispose();
        model = null;
    }
}
