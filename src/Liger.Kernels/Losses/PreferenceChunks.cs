using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Losses;

/// <summary>
/// The chunk loop every preference loss shares. A chunk is a few whole sequences (whole pairs for paired
/// losses: chosen i and rejected i are in one chunk, since the loss of a pair needs both). Per chunk:
/// <list type="number">
/// <item>one matmul makes the chunk's logits;</item>
/// <item>the cross-entropy kernel (reduction None) turns each row into its token's −log p and, in place, the
/// row's gradient softmax − onehot (zero for ignored positions);</item>
/// <item>the sequences' log-probs go through the loss's formula and its hand-derived gradient, giving
/// d loss / d logp per sequence, i.e. a factor per row (its sequence's factor, over its token count when
/// log-probs are averaged, plus α / chosen tokens for the NLL term);</item>
/// <item>the rows are scaled by their factors in place and two matmuls fold them into the hidden states' and
/// the weight's gradients.</item>
/// </list>
/// So the loss never holds more than one chunk of logits, and reads and writes it twice (kernel, scale).
/// </summary>
internal static class PreferenceChunks
{
    /// <summary>
    /// Whether CPU runs drop the positions without a target before lm_head (true; a GPU run never does). Tests turn
    /// it off to run the GPU's all-rows arithmetic on the CPU paths.
    /// </summary>
    internal static bool DropIgnoredOnCpu { get; set; } = true;

    /// <summary>Which gradients to compute.</summary>
    internal readonly record struct Wanted(bool Hidden, bool Weight, bool Bias)
    {
        internal bool Any => Hidden || Weight || Bias;
    }

    /// <summary>Everything the loop computes. Per-sequence tensors are float32 (N) in the input's row order.</summary>
    internal sealed record Result(Tensor Loss, Tensor LogProbs, Tensor Rewards, Tensor LogitsSum, Tensor Counts,
        Tensor NllLoss, Dictionary<string, Tensor> ExtraSums, Tensor? GradHidden, Tensor? GradWeight, Tensor? GradBias);

    internal static void Validate(Tensor hidden, Tensor weight, Tensor target, Tensor? bias, PreferenceLossOptions options, bool paired)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        TensorChecks.NotNull(hidden, nameof(hidden));
        TensorChecks.NotNull(weight, nameof(weight));
        TensorChecks.FloatingPoint(hidden, nameof(hidden));
        if (hidden.dim() != 3)
            throw new ArgumentException($"'{nameof(hidden)}' must be (N, T, H), the final hidden states of each sequence" +
                $"{(paired ? " with the chosen sequences first, then the rejected ones in the same order" : "")}; got shape [{string.Join(", ", hidden.shape)}].", nameof(hidden));
        if (paired && hidden.shape[0] % 2 != 0)
            throw new ArgumentException($"'{nameof(hidden)}' must stack P chosen then P rejected sequences (an even count); got {hidden.shape[0]}.", nameof(hidden));
        if (hidden.shape[0] < (paired ? 2 : 1))
            throw new ArgumentException($"'{nameof(hidden)}' holds no {(paired ? "pair" : "sequence")}.", nameof(hidden));
        ValidateHead(weight, bias, hidden, nameof(weight), nameof(bias));
        CrossEntropyOp.ValidateTargetsAndOptions(target, hidden.shape[..^1], weight.shape[0], hidden, nameof(hidden),
            new CrossEntropyOptions { IgnoreIndex = options.IgnoreIndex });
    }

    internal static void ValidateHead(Tensor weight, Tensor? bias, Tensor hidden, string weightName, string biasName)
    {
        TensorChecks.NotNull(weight, weightName);
        if (weight.dim() != 2 || weight.shape[1] != hidden.shape[^1])
            throw new ArgumentException($"'{weightName}' must be (V, H) with H = {hidden.shape[^1]}, lm_head's weight; got shape [{string.Join(", ", weight.shape)}].", weightName);
        TensorChecks.SameDtype(weight, weightName, hidden, "hidden");
        TensorChecks.SameDevice(weight, weightName, hidden, "hidden");
        if (weight.shape[0] < 1 || weight.shape[0] > CrossEntropyOp.MaxClasses)
            throw new ArgumentException($"'{weightName}' must have between 1 and {CrossEntropyOp.MaxClasses} rows (classes); got {weight.shape[0]}.", weightName);
        if (bias is not null)
        {
            TensorChecks.SameDtype(bias, biasName, hidden, "hidden");
            TensorChecks.SameDevice(bias, biasName, hidden, "hidden");
            TensorChecks.Shape(bias, biasName, weight.shape[0]);
        }
    }

    /// <summary>Sequences per chunk: as many as fit the chunk bytes (whole pairs when paired), at least one pair or sequence.</summary>
    internal static long SequencesPerChunk(long sequences, long length, long vocab, long elementSize, long? chunkBytes, bool paired)
    {
        long unit = paired ? 2 : 1;
        long bytesPerUnit = Math.Max(1, unit * length * vocab * elementSize);
        long units = Math.Max(1, (chunkBytes ?? FusedLinearCrossEntropyOp.DefaultChunkBytes) / bytesPerUnit);
        long total = sequences / unit;
        long chunks = (total + units - 1) / units;
        return chunks == 0 ? 0 : (total + chunks - 1) / chunks;   // spread evenly over the chunks
    }

    /// <summary>
    /// Runs the loop. <paramref name="objective"/> null: log-probs only (a reference model's pass). Without
    /// <paramref name="wanted"/> gradients it only computes the loss and metrics.
    /// </summary>
    internal static Result Run(Tensor hidden, Tensor weight, Tensor target, Tensor? bias, PreferenceLossOptions options,
        SequenceObjective? objective, Tensor? referenceLogProbs, Wanted wanted)
    {
        bool paired = objective?.Paired ?? false;
        long n = hidden.shape[0], length = hidden.shape[1], size = hidden.shape[2], vocab = weight.shape[0];
        var device = hidden.device;
        bool gradients = wanted.Any && objective is not null;
        // Dropping is exact only while lm_head is finite: a NaN there makes every row's logits NaN, and the eager
        // loss then backpropagates NaN through the ignored rows too (see CrossEntropyKernels.IgnoredGradient).
        bool dropIgnored = DropIgnoredOnCpu && device.type == DeviceType.CPU && Finite(weight) && (bias is null || Finite(bias));
        var ce = new CrossEntropyOptions { IgnoreIndex = options.IgnoreIndex, Softcap = options.Softcap, Reduction = CrossEntropyReduction.None };
        int flags = CrossEntropyOp.Flags(ce, gradients, argmax: false);
        var accumulation = options.AccumulateInFloat32 ? ScalarType.Float32 : weight.dtype;

        using var targets = target.reshape(-1).contiguous();
        using var totals = CrossEntropyOp.Totals(targets, null, options.IgnoreIndex, vocab);
        var counts = target.NotEqualTo(options.IgnoreIndex).sum(1, type: ScalarType.Float64);   // target tokens per sequence
        long pairs = n / 2;
        bool nll = paired && options.ComputeNllLoss;
        using var nllTokens = nll ? counts.narrow(0, 0, pairs).sum() : null;

        var logProbs = empty(n, dtype: ScalarType.Float64, device: device);
        var rewards = empty(n, dtype: ScalarType.Float64, device: device);
        var logitsSum = empty(n, dtype: ScalarType.Float64, device: device);
        var loss = zeros(1, dtype: ScalarType.Float64, device: device).squeeze();
        var nllLoss = zeros(1, dtype: ScalarType.Float64, device: device).squeeze();
        var extraSums = new Dictionary<string, Tensor>();
        var gradHidden = gradients && wanted.Hidden ? Outputs.Empty([n * length, size], hidden.dtype, device) : null;
        var gradWeight = gradients && wanted.Weight ? zeros(vocab, size, dtype: accumulation, device: device) : null;
        var gradBias = gradients && wanted.Bias ? zeros(vocab, dtype: accumulation, device: device) : null;

        using var rowsOfHidden = hidden.detach().reshape(n * length, size);
        using var weightD = weight.detach();
        using var weightT = weightD.t();
        using var biasD = bias?.detach();
        using Scalar one = 1.0.ToScalar();   // held for index_add_'s native calls (see ScalarArithmetic)
        long perChunk = SequencesPerChunk(n, length, vocab, hidden.element_size(), options.ChunkBytes, paired);
        long units = paired ? pairs : n;
        for (long start = 0; start < units; start += perChunk)
        {
            using var scope = NewDisposeScope();
            long k = Math.Min(perChunk, units - start);
            // The chunk's sequences: paired, chosen start.. then rejected P + start..; else start..
            var ranges = paired ? new[] { (start, k), (pairs + start, k) } : [(start, k)];
            long seqs = ranges.Sum(r => r.Item2);
            var xs = Gather(rowsOfHidden, ranges, length);
            var ys = Gather(targets, ranges, length);
            var rowSequence = Ranges.Int64(0, seqs, device: device).repeat_interleave(length);

            // On the CPU the positions without a target are dropped before lm_head (reading the targets on the host
            // is free there): they add nothing to the loss or the gradients. On a GPU it would cost a synchronisation.
            Tensor? kept = null;
            var allRowSequence = rowSequence;
            if (dropIgnored)
            {
                var keep = ys.NotEqualTo(options.IgnoreIndex).nonzero().squeeze(1);
                // ... and while the dropped rows' hidden states are finite (a NaN or inf there gives its row NaN gradients)
                var dropped = ys.EqualTo(options.IgnoreIndex).nonzero().squeeze(1);
                if (keep.shape[0] < ys.shape[0] && Finite(xs.index_select(0, dropped)))
                {
                    kept = keep;
                    xs = xs.index_select(0, keep);
                    ys = ys.index_select(0, keep);
                    rowSequence = rowSequence.index_select(0, keep);
                }
            }

            var logits = biasD is null ? xs.mm(weightT) : addmm(biasD, xs, weightT, beta: 1, alpha: 1);
            var rowMask = ys.NotEqualTo(options.IgnoreIndex);
            // Summed in float32: torch reduces bf16 into float32 directly on CUDA, but into float64 only after
            // converting the whole chunk to float64 (4 GiB for a 1 GiB bf16 chunk: it was the peak of the first GPU run).
            var rowLogitSums = logits.sum(1, type: ScalarType.Float32).to(ScalarType.Float64).FilledWhere(rowMask.logical_not(), 0.0);
            var rows = CrossEntropyOp.RowLosses(logits, gradients ? logits : null, ys, null, totals, ce, flags);
            rows.ZLoss.Dispose();
            var tokenLoss = rows.Loss.to(ScalarType.Float64);   // −log p of each row's target; 0 where ignored
            var chunkCounts = Gather(counts, ranges, 1);
            var sums = zeros(seqs, dtype: ScalarType.Float64, device: device).index_add_(0, rowSequence, tokenLoss, one).neg_();
            var chunkLogProbs = options.AverageLogProb ? sums / chunkCounts : sums;
            Scatter(logProbs, ranges, chunkLogProbs, 1);
            Scatter(logitsSum, ranges, zeros(seqs, dtype: ScalarType.Float64, device: device).index_add_(0, rowSequence, rowLogitSums, one), 1);
            if (objective is null)
                continue;

            var reference = referenceLogProbs is null ? null : Gather(referenceLogProbs, ranges, 1);
            var terms = objective.Evaluate(chunkLogProbs, reference, paired ? ranges[0].Item1 : start, k);
            loss.PlusInPlace(terms.Loss);
            Scatter(rewards, ranges, terms.Rewards, 1);
            foreach (var (name, value) in terms.ExtraSums)
            {
                if (!extraSums.TryGetValue(name, out var total))
                    extraSums[name] = total = zeros(1, dtype: ScalarType.Float64, device: device).squeeze().MoveToOuterDisposeScope();
                total.PlusInPlace(value);
            }
            Tensor? chosenRow = null;
            if (nll)
            {
                chosenRow = rowSequence.LessThan(k);   // the chunk's first k sequences are the chosen ones
                nllLoss.PlusInPlace(tokenLoss.FilledWhere(chosenRow.logical_not(), 0.0).sum() / nllTokens!);
            }
            if (!gradients)
                continue;

            // d loss / d logits of a row = −(d loss / d logp of its token) · (softmax − onehot), and the logits hold
            // softmax − onehot now: scale each row by its factor.
            var perSequence = options.AverageLogProb ? terms.Gradient / chunkCounts : terms.Gradient;
            var factor = perSequence.neg().index_select(0, rowSequence);
            if (chosenRow is not null)
                factor = factor.Plus(chosenRow.to(ScalarType.Float64) * (ScalarArithmetic.Times(nllTokens!.reciprocal(), options.Alpha)));
            CrossEntropyOp.ScaleRows(logits, factor.to(ScalarType.Float32).contiguous(), perRow: true);

            if (gradHidden is not null)
            {
                var chunkGrad = logits.mm(weightD);
                if (kept is not null)
                {
                    // A dropped row's gradient is its sequence's factor times 0: 0, or NaN where the factor is not
                    // finite (a NaN loss), as the rows the GPU keeps give.
                    var dropped = perSequence.index_select(0, allRowSequence).Times(0.0).to(chunkGrad.dtype);
                    chunkGrad = dropped.unsqueeze(1).expand(seqs * length, size).contiguous().index_copy_(0, kept, chunkGrad);
                }
                Scatter(gradHidden, ranges, chunkGrad, length);
            }
            if (gradWeight is not null)
            {
                if (accumulation == weight.dtype)
                    gradWeight.addmm_(logits.t(), xs);
                else
                    gradWeight.PlusInPlace(logits.t().mm(xs));
            }
            if (gradBias is not null)
                gradBias.PlusInPlace(logits.sum(0L, type: accumulation));
        }
        if (gradWeight is not null && gradWeight.dtype != weight.dtype)
            gradWeight = Cast(gradWeight, weight.dtype);
        if (gradBias is not null && gradBias.dtype != bias!.dtype)
            gradBias = Cast(gradBias, bias.dtype);
        if (nll)
            loss.PlusInPlace(ScalarArithmetic.Times(nllLoss, options.Alpha));
        return new Result(loss, logProbs, rewards, logitsSum, counts, nllLoss, extraSums,
            gradHidden?.view(hidden.shape), gradWeight, gradBias);
    }

    private static bool Finite(Tensor t)
    {
        using var finite = t.isfinite().all();
        return finite.item<bool>();
    }

    /// <summary>The rows of the given sequence ranges, in order, <paramref name="rowsPerSequence"/> rows a sequence.</summary>
    private static Tensor Gather(Tensor source, (long Start, long Count)[] ranges, long rowsPerSequence) =>
        ranges.Length == 1
            ? source.narrow(0, ranges[0].Start * rowsPerSequence, ranges[0].Count * rowsPerSequence)
            : cat(ranges.Select(r => source.narrow(0, r.Start * rowsPerSequence, r.Count * rowsPerSequence)).ToList(), 0);

    /// <summary>Writes a chunk's rows back to the sequence ranges they came from.</summary>
    private static void Scatter(Tensor destination, (long Start, long Count)[] ranges, Tensor chunk, long rowsPerSequence)
    {
        long offset = 0;
        foreach (var (first, count) in ranges)
        {
            using var slice = destination.narrow(0, first * rowsPerSequence, count * rowsPerSequence);
            using var part = chunk.narrow(0, offset, count * rowsPerSequence);
            slice.copy_(part);
            offset += count * rowsPerSequence;
        }
    }

    private static Tensor Cast(Tensor accumulated, ScalarType dtype)
    {
        var cast = accumulated.to(dtype);
        accumulated.Dispose();
        return cast;
    }
}
