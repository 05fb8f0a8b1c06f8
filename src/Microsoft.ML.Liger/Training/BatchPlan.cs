namespace Microsoft.ML.Liger.Training;

/// <summary>One micro-batch as flat row-major arrays of <see cref="Rows"/> × <see cref="Length"/>, ready for tensors.</summary>
/// <param name="Rows">Sequences.</param>
/// <param name="Length">Tokens per sequence.</param>
/// <param name="InputIds">Token ids (padding positions hold the pad id).</param>
/// <param name="Labels">The ids the loss targets, -100 where nothing is predicted (prompt, padding). The model shifts them.</param>
/// <param name="AttentionMask">1 for real tokens, 0 for padding.</param>
/// <param name="TargetTokens">Labels that count after the model's shift (every non -100 label but each row's first).</param>
/// <param name="InputTokens">Real (non-padding) tokens.</param>
internal sealed record MicroBatch(long[] InputIds, long[] Labels, long[] AttentionMask, int Rows, int Length, int TargetTokens, int InputTokens)
{
    public bool HasPadding => InputTokens < Rows * Length;
}

/// <summary>
/// The order of language-model training: which micro-batches make each optimizer step. Each epoch shuffles the
/// examples with a generator seeded by (seed, epoch) (<see cref="EpochOrder"/>), so any step can be rebuilt from its
/// number alone: that is what lets a resumed run see exactly the batches an uninterrupted one would have.
/// </summary>
internal sealed partial class BatchPlan : ITrainingPlan<MicroBatch>
{
    public const long IgnoreIndex = -100;

    private readonly IReadOnlyList<TokenizedExample> examples;
    private readonly CausalLMTrainingOptions options;
    private readonly int padId, separatorId;
    private readonly int[][] packedTokens = [], packedLabels = [];
    private int cachedEpoch = -1;
    private MicroBatch[] cachedBatches = [];

    /// <param name="examples">The training examples.</param>
    /// <param name="options">Batch size, accumulation, context length, packing, epochs or steps, seed.</param>
    /// <param name="padId">Token that fills padding.</param>
    /// <param name="separatorId">Token between packed examples (EOS).</param>
    public BatchPlan(IReadOnlyList<TokenizedExample> examples, CausalLMTrainingOptions options, int padId, int separatorId)
    {
        if (examples.Count == 0)
            throw new ArgumentException("The training data has no examples.", nameof(examples));
        this.examples = examples;
        this.options = options;
        this.padId = padId;
        this.separatorId = separatorId;
        long rows = options.Packing ? (PackedLength() + options.MaxContextLength - 1) / options.MaxContextLength : examples.Count;
        MicroBatchesPerEpoch = (int)((rows + options.GlobalBatchSize - 1) / options.GlobalBatchSize);
        StepsPerEpoch = (MicroBatchesPerEpoch + options.GradientAccumulationSteps - 1) / options.GradientAccumulationSteps;
        TotalSteps = options.MaxSteps ?? StepsPerEpoch * options.Epochs;
    }

    public int MicroBatchesPerEpoch { get; }

    public int StepsPerEpoch { get; }

    public int TotalSteps { get; }

    /// <summary>The micro-batches of optimizer step <paramref name="step"/> (0-based; past the epochs the data repeats).</summary>
    public IReadOnlyList<MicroBatch> Step(int step)
    {
        int epoch = step / StepsPerEpoch, first = step % StepsPerEpoch * options.GradientAccumulationSteps;
        var batches = Epoch(epoch);
        return batches[first..Math.Min(batches.Length, first + options.GradientAccumulationSteps)];
    }

    /// <summary>Fractional epoch after <paramref name="stepsDone"/> steps.</summary>
    public double EpochAt(int stepsDone) => (double)stepsDone / StepsPerEpoch;

    /// <summary>Batches of <paramref name="data"/> in order, padded, for evaluation.</summary>
    public static IEnumerable<MicroBatch> InOrder(IReadOnlyList<TokenizedExample> data, int batchSize, int maxLength, int padId)
    {
        for (int start = 0; start < data.Count; start += batchSize)
            yield return Padded(Enumerable.Range(start, Math.Min(batchSize, data.Count - start)).Select(i => data[i]).ToList(), maxLength, padId);
    }

    private MicroBatch[] Epoch(int epoch)
    {
        if (epoch == cachedEpoch)
            return cachedBatches;
        int[] order = EpochOrder.Shuffled(examples.Count, options.Seed, epoch);
        cachedBatches = options.Packing ? Packed(order) : PaddedBatches(order);
        cachedEpoch = epoch;
        return cachedBatches;
    }

    private MicroBatch[] PaddedBatches(int[] order)
    {
        var batches = new List<MicroBatch>(MicroBatchesPerEpoch);
        for (int start = 0; start < order.Length; start += options.GlobalBatchSize)
        {
            var rows = order[start..Math.Min(order.Length, start + options.GlobalBatchSize)].Select(i => examples[i]).ToList();
            batches.Add(Padded(rows, options.MaxContextLength, padId));
        }
        return [.. batches];
    }

    /// <summary>Right-padded to the longest row (at most <paramref name="maxLength"/>); truncation keeps each example's start.</summary>
    private static MicroBatch Padded(IReadOnlyList<TokenizedExample> rows, int maxLength, int padId)
    {
        int length = Math.Max(1, rows.Max(r => Math.Min(r.Tokens.Length, maxLength)));
        var ids = new long[rows.Count * length];
        var labels = new long[ids.Length];
        var mask = new long[ids.Length];
        Array.Fill(ids, padId);
        Array.Fill(labels, IgnoreIndex);
        int targets = 0, inputs = 0;
        for (int r = 0; r < rows.Count; r++)
        {
            var example = rows[r];
            int n = Math.Min(example.Tokens.Length, length);
            for (int t = 0; t < n; t++)
            {
                int at = r * length + t;
                ids[at] = example.Tokens[t];
                mask[at] = 1;
                if (t >= example.PromptLength)
                {
                    labels[at] = example.Tokens[t];
                    if (t > 0) targets++;
                }
            }
            inputs += n;
        }
        return new MicroBatch(ids, labels, mask, rows.Count, length, targets, inputs);
    }

    private long PackedLength() => examples.Sum(e => (long)e.Tokens.Length + (EndsWithSeparator(e) ? 0 : 1));

    private bool EndsWithSeparator(TokenizedExample example) => example.Tokens.Length > 0 && example.Tokens[^1] == separatorId;

    /// <summary>
    /// Examples (each followed by the separator, whose label is the separator: the model learns to end) laid end
    /// to end and cut into rows of MaxContextLength; the last row is padded so that no token is dropped.
    /// </summary>
    private MicroBatch[] Packed(int[] order)
    {
        int length = options.MaxContextLength;
        var tokens = new List<long>();
        var labels = new List<long>();
        foreach (int i in order)
        {
            var example = examples[i];
            for (int t = 0; t < example.Tokens.Length; t++)
            {
                tokens.Add(example.Tokens[t]);
                labels.Add(t >= example.PromptLength ? example.Tokens[t] : IgnoreIndex);
            }
            if (!EndsWithSeparator(example))
            {
                tokens.Add(separatorId);
                labels.Add(separatorId);
            }
        }
        int rowCount = (tokens.Count + length - 1) / length;
        var batches = new List<MicroBatch>();
        for (int firstRow = 0; firstRow < rowCount; firstRow += options.GlobalBatchSize)
        {
            int rows = Math.Min(options.GlobalBatchSize, rowCount - firstRow);
            var ids = new long[rows * length];
            var lab = new long[ids.Length];
            var mask = new long[ids.Length];
            Array.Fill(ids, padId);
            Array.Fill(lab, IgnoreIndex);
            int targets = 0, inputs = 0;
            for (int r = 0; r < rows; r++)
            {
                int start = (firstRow + r) * length, n = Math.Min(length, tokens.Count - start);
                for (int t = 0; t < n; t++)
                {
                    ids[r * length + t] = tokens[start + t];
                    lab[r * length + t] = labels[start + t];
                    mask[r * length + t] = 1;
                    if (t > 0 && labels[start + t] != IgnoreIndex) targets++;
                }
                inputs += n;
            }
            batches.Add(new MicroBatch(ids, lab, mask, rows, length, targets, inputs));
        }
        return [.. batches];
    }
}
