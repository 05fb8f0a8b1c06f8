using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger.PreferenceAlignment;

/// <summary>
/// Sequences as flat row-major arrays of <see cref="Rows"/> × <see cref="Length"/>, right-padded, with the targets already
/// shifted as the preference losses take them (position t holds token t + 1 where that token is a response token, the
/// ignore index elsewhere).
/// </summary>
internal sealed record SequenceRows(long[] InputIds, long[] Targets, long[] AttentionMask, int Rows, int Length, int InputTokens)
{
    public bool HasPadding => InputTokens < Rows * Length;

    /// <summary>Prompt + response rows, padded to the longest.</summary>
    public static SequenceRows Pad(IReadOnlyList<(int[] Prompt, int[] Response)> rows, int padId)
    {
        int length = Math.Max(1, rows.Max(r => r.Prompt.Length + r.Response.Length));
        var ids = new long[rows.Count * length];
        var targets = new long[ids.Length];
        var mask = new long[ids.Length];
        Array.Fill(ids, padId);
        Array.Fill(targets, BatchPlan.IgnoreIndex);
        int inputs = 0;
        for (int r = 0; r < rows.Count; r++)
        {
            var (prompt, response) = rows[r];
            int n = prompt.Length + response.Length, at = r * length;
            for (int t = 0; t < n; t++)
            {
                ids[at + t] = t < prompt.Length ? prompt[t] : response[t - prompt.Length];
                mask[at + t] = 1;
                if (t >= 1 && t >= prompt.Length)
                    targets[at + t - 1] = ids[at + t];
            }
            inputs += n;
        }
        return new SequenceRows(ids, targets, mask, rows.Count, length, inputs);
    }
}

/// <summary>
/// A micro-batch of preference data. Paired: <see cref="Main"/> holds the chosen sequences of its examples, then their
/// rejected ones in the same order (the losses' layout). KTO: one sequence per example, with <see cref="Desirable"/>,
/// and the KL sequences in <see cref="Kl"/> when the baseline is on.
/// </summary>
/// <param name="Main">The sequences the loss is computed on.</param>
/// <param name="Units">Pairs (paired) or sequences (KTO): what the loss averages over.</param>
/// <param name="Desirable">KTO's labels, per sequence.</param>
/// <param name="Kl">KTO's KL sequences, or null.</param>
/// <param name="Examples">Indices of the examples in their data set (to find precomputed reference log-probs).</param>
internal sealed record PreferenceBatch(SequenceRows Main, int Units, bool[]? Desirable, SequenceRows? Kl, int[] Examples)
{
    public static PreferenceBatch Of(IReadOnlyList<PreferenceExample> data, int[] indices, bool paired, int padId)
    {
        var examples = indices.Select(i => data[i]).ToList();
        if (paired)
        {
            var rows = examples.Select(e => (e.Prompt, e.First)).Concat(examples.Select(e => (e.Prompt, e.Second!))).ToList();
            return new PreferenceBatch(SequenceRows.Pad(rows, padId), examples.Count, null, null, indices);
        }
        var main = SequenceRows.Pad(examples.Select(e => (e.Prompt, e.First)).ToList(), padId);
        var kl = examples[0].Second is null ? null : SequenceRows.Pad(examples.Select(e => (e.Prompt, e.Second!)).ToList(), padId);
        return new PreferenceBatch(main, examples.Count, examples.Select(e => e.Desirable).ToArray(), kl, indices);
    }

    /// <summary><paramref name="data"/> in order, <paramref name="batchSize"/> examples a batch (evaluation, precomputation).</summary>
    public static IEnumerable<PreferenceBatch> InOrder(IReadOnlyList<PreferenceExample> data, int batchSize, bool paired, int padId)
    {
        for (int start = 0; start < data.Count; start += batchSize)
            yield return Of(data, Enumerable.Range(start, Math.Min(batchSize, data.Count - start)).ToArray(), paired, padId);
    }
}

/// <summary>
/// The order of preference training: each epoch shuffles the examples (<see cref="EpochOrder"/>, as fine-tuning does) and
/// cuts them into micro-batches of BatchSize examples, GradientAccumulationSteps micro-batches a step.
/// </summary>
internal sealed partial class PreferenceBatchPlan : ITrainingPlan<PreferenceBatch>
{
    private readonly IReadOnlyList<PreferenceExample> examples;
    private readonly CausalLMTrainingOptions options;
    private readonly bool paired;
    private readonly int padId;
    private readonly int microBatchesPerEpoch;
    private int cachedEpoch = -1;
    private PreferenceBatch[] cachedBatches = [];

    public PreferenceBatchPlan(IReadOnlyList<PreferenceExample> examples, CausalLMTrainingOptions options, bool paired, int padId)
    {
        if (examples.Count == 0)
            throw new ArgumentException("The training data has no examples.", nameof(examples));
        this.examples = examples;
        this.options = options;
        this.paired = paired;
        this.padId = padId;
        microBatchesPerEpoch = (examples.Count + options.GlobalBatchSize - 1) / options.GlobalBatchSize;
        StepsPerEpoch = (microBatchesPerEpoch + options.GradientAccumulationSteps - 1) / options.GradientAccumulationSteps;
        TotalSteps = options.MaxSteps ?? StepsPerEpoch * options.Epochs;
    }

    public int StepsPerEpoch { get; }

    public int TotalSteps { get; }

    public IReadOnlyList<PreferenceBatch> Step(int step)
    {
        int epoch = step / StepsPerEpoch, first = step % StepsPerEpoch * options.GradientAccumulationSteps;
        if (epoch != cachedEpoch)
        {
            int[] order = EpochOrder.Shuffled(examples.Count, options.Seed, epoch);
            cachedBatches = Enumerable.Range(0, microBatchesPerEpoch)
                .Select(b => PreferenceBatch.Of(examples, order[(b * options.GlobalBatchSize)..Math.Min(order.Length, (b + 1) * options.GlobalBatchSize)], paired, padId))
                .ToArray();
            cachedEpoch = epoch;
        }
        return cachedBatches[first..Math.Min(cachedBatches.Length, first + options.GradientAccumulationSteps)];
    }

    public double EpochAt(int stepsDone) => (double)stepsDone / StepsPerEpoch;
}

/// <summary>Tensors of <see cref="SequenceRows"/>.</summary>
internal static class SequenceRowsTensors
{
    /// <summary>The model's input (a mask only when something is padded: attention then takes the causal fast path).</summary>
    public static Models.CausalLMInput Input(this SequenceRows rows, TorchSharp.torch.Device device)
    {
        long[] shape = [rows.Rows, rows.Length];
        return new Models.CausalLMInput
        {
            InputIds = Training.DeviceUpload.Of(rows.InputIds, shape, device),
            AttentionMask = rows.HasPadding ? Training.DeviceUpload.Of(rows.AttentionMask, shape, device) : null,
        };
    }

    /// <summary>The shifted targets (Rows, Length).</summary>
    public static TorchSharp.torch.Tensor Target(this SequenceRows rows, TorchSharp.torch.Device device) =>
        Training.DeviceUpload.Of(rows.Targets, [rows.Rows, rows.Length], device);
}
