using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Losses;

/// <summary>
/// Any of the chunked preference losses, chosen by the type of its options (ORPO, DPO, CPO, SimPO for pairs;
/// KTO has its own entry, <see cref="LigerFusedLinearKtoLoss"/>, for its labels). Inputs are the lm_head
/// weight and the final hidden states of P chosen sequences followed by their P rejected ones; targets are
/// already shifted (position t holds the token that follows it), with the ignore index on the prompt and padding.
/// </summary>
public static class LigerFusedLinearPreferenceLoss
{
    /// <summary>The loss and its metrics; gradients flow to hidden, weight and bias through autograd.</summary>
    /// <param name="hidden">(2P, T, H): chosen sequences, then the rejected ones in the same order.</param>
    /// <param name="weight">lm_head's weight (V, H).</param>
    /// <param name="target">(2P, T) int64 next-token targets; the ignore index where nothing is predicted.</param>
    /// <param name="options"><see cref="OrpoLossOptions"/>, <see cref="DpoLossOptions"/>, <see cref="CpoLossOptions"/> or <see cref="SimPoLossOptions"/>.</param>
    /// <param name="bias">lm_head's bias (V), or null.</param>
    /// <param name="reference">DPO's reference model (null: reference-free, log-ratios against 0).</param>
    public static PreferenceLossResult Apply(Tensor hidden, Tensor weight, Tensor target, PreferenceLossOptions options,
        Tensor? bias = null, PreferenceReference? reference = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options is DpoLossOptions { LossType: DpoLossType.Ipo, AverageLogProb: false } ipo)
            options = ipo with { AverageLogProb = true };   // IPO is defined on per-token averages (as TRL computes it)
        PreferenceChunks.Validate(hidden, weight, target, bias, options, paired: true);
        long pairs = hidden.shape[0] / 2;
        SequenceObjective objective = options switch
        {
            OrpoLossOptions o => new OrpoObjective(pairs, o),
            DpoLossOptions o => new DpoObjective(pairs, o),
            CpoLossOptions o => new CpoObjective(pairs, o.Beta, o.LabelSmoothing, 0),
            SimPoLossOptions o => new CpoObjective(pairs, o.Beta, o.LabelSmoothing, o.Gamma),
            KtoLossOptions => throw new ArgumentException($"KTO is unpaired: use {nameof(LigerFusedLinearKtoLoss)}.{nameof(LigerFusedLinearKtoLoss.Apply)} with its labels.", nameof(options)),
            _ => throw new ArgumentException($"Unknown preference loss options {options.GetType().Name}.", nameof(options)),
        };
        if (reference is not null && !options.UsesReference)
            throw new ArgumentException($"{options.GetType().Name[..^"LossOptions".Length].ToUpperInvariant()} uses no reference model; pass none.", nameof(reference));
        var referenceLogProbs = ReferenceLogProbs(reference, hidden, target, options);
        var run = Run(hidden, weight, target, bias, options, objective, referenceLogProbs);
        long vocab = weight.shape[0];
        using var scope = NewDisposeScope();
        var chosen = run.LogitsSum.narrow(0, 0, pairs).sum() / run.Counts.narrow(0, 0, pairs).sum().Times(vocab);
        var rejected = run.LogitsSum.narrow(0, pairs, pairs).sum() / run.Counts.narrow(0, pairs, pairs).sum().Times(vocab);
        var result = new PreferenceLossResult(run.Loss,
            Metric(run.LogProbs.narrow(0, 0, pairs)), Metric(run.LogProbs.narrow(0, pairs, pairs)),
            Metric(run.Rewards.narrow(0, 0, pairs)), Metric(run.Rewards.narrow(0, pairs, pairs)),
            Metric(chosen), Metric(rejected), Metric(run.NllLoss),
            run.ExtraSums.ToDictionary(e => e.Key, e => Metric(e.Value)));
        run.Dispose();
        return result;
    }

    /// <summary>The loop's result after autograd: the loss (float32 scalar, differentiable) and the metrics (float64, detached).</summary>
    internal sealed record Outcome(Tensor Loss, Tensor LogProbs, Tensor Rewards, Tensor LogitsSum, Tensor Counts, Tensor NllLoss,
        Dictionary<string, Tensor> ExtraSums) : IDisposable
    {
        public void Dispose()
        {
            foreach (var t in new[] { LogProbs, Rewards, LogitsSum, Counts, NllLoss }.Concat(ExtraSums.Values))
                t.Dispose();
        }
    }

    /// <summary>Runs the chunk loop, through the autograd node when a gradient is wanted.</summary>
    internal static Outcome Run(Tensor hidden, Tensor weight, Tensor target, Tensor? bias, PreferenceLossOptions options,
        SequenceObjective objective, Tensor? referenceLogProbs)
    {
        var sink = new PreferenceAutograd.Sink();
        bool gradients = is_grad_enabled() && (hidden.requires_grad || weight.requires_grad || bias?.requires_grad == true);
        Tensor loss;
        if (gradients)
            loss = AutogradOutputCache.Release(PreferenceAutograd.apply(hidden, weight, target, bias!, options, objective, referenceLogProbs!, sink))[0];
        else
        {
            sink.Result = PreferenceChunks.Run(hidden, weight, target, bias, options, objective, referenceLogProbs, default);
            loss = sink.Result.Loss.to(ScalarType.Float32);
            sink.Result.Loss.Dispose();
        }
        var r = sink.Result!;
        return new Outcome(loss, r.LogProbs, r.Rewards, r.LogitsSum, r.Counts, r.NllLoss, r.ExtraSums);
    }

    /// <summary>The reference's per-sequence log-probs (float64), computed chunk by chunk without gradients, or null.</summary>
    internal static Tensor? ReferenceLogProbs(PreferenceReference? reference, Tensor hidden, Tensor target, PreferenceLossOptions options)
    {
        if (reference is null)
            return null;
        if (reference.LogProbs is { } given)
        {
            TensorChecks.NotNull(given, "reference.LogProbs");
            TensorChecks.SameDevice(given, "reference.LogProbs", hidden, nameof(hidden));
            TensorChecks.Shape(given, "reference.LogProbs", hidden.shape[0]);
            TensorChecks.FloatingPoint(given, "reference.LogProbs");
            return given.detach().to(ScalarType.Float64);
        }
        if (reference.Hidden is null || reference.Weight is null)
            throw new ArgumentException("A reference needs either LogProbs, or Hidden and Weight.", nameof(reference));
        TensorChecks.NotNull(reference.Hidden, "reference.Hidden");
        TensorChecks.SameShape(reference.Hidden, "reference.Hidden", hidden, nameof(hidden));
        TensorChecks.SameDevice(reference.Hidden, "reference.Hidden", hidden, nameof(hidden));
        PreferenceChunks.ValidateHead(reference.Weight, reference.Bias, reference.Hidden, "reference.Weight", "reference.Bias");
        using var _ = no_grad();
        var run = PreferenceChunks.Run(reference.Hidden, reference.Weight, target, reference.Bias, options, null, null, default);
        foreach (var t in new[] { run.Loss, run.Rewards, run.LogitsSum, run.Counts, run.NllLoss })
            t.Dispose();
        return run.LogProbs;
    }

    /// <summary>A float32 detached copy, kept past the caller's dispose scope.</summary>
    internal static Tensor Metric(Tensor value) => value.detach().to(ScalarType.Float32).MoveToOuterDisposeScope();
}

/// <summary>
/// The autograd node of the preference losses: the gradients are computed in the forward (chunk by chunk) and
/// the backward only scales them by the incoming gradient, as Liger-Kernel's preference base does.
/// </summary>
internal sealed class PreferenceAutograd : autograd.MultiTensorFunction<PreferenceAutograd>
{
    /// <summary>Carries the loop's metrics out of the forward (autograd returns only the loss).</summary>
    internal sealed class Sink
    {
        internal PreferenceChunks.Result? Result;
    }

    public override string Name => "LigerFusedLinearPreferenceBackward";

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradOutputCache.Track(ctx, Name, vars);
        var (hidden, weight, target, bias) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], vars[3] as Tensor);
        var (options, objective, reference, sink) = ((PreferenceLossOptions)vars[4], (SequenceObjective)vars[5], vars[6] as Tensor, (Sink)vars[7]);
        var wanted = new PreferenceChunks.Wanted(hidden.requires_grad, weight.requires_grad, bias?.requires_grad == true);
        ctx.save_data("wanted", wanted);
        var run = PreferenceChunks.Run(hidden, weight, target, bias, options, objective, reference, wanted);
        sink.Result = run;
        // Saved as aliases with their own version counters, next to the factor they carry so far (see FusedLinearCrossEntropyAutograd).
        using var applied = ones(1, dtype: ScalarType.Float32, device: hidden.device);
        var saved = new List<Tensor> { BackwardLifetime.SavedInForward(SavedAlias(applied)) };
        foreach (var g in new[] { run.GradHidden, run.GradWeight, run.GradBias })
            if (g is not null)
            {
                saved.Add(BackwardLifetime.SavedInForward(SavedAlias(g)));
                g.Dispose();
            }
        ctx.save_for_backward(saved);
        var loss = run.Loss.to(ScalarType.Float32);
        run.Loss.Dispose();
        return [loss];
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grads) =>
        BackwardLifetime.Run(ctx, grads, incoming => Backward(ctx, incoming));

    private static List<Tensor> Backward(autograd.AutogradContext ctx, List<Tensor> grads)
    {
        if (grads[0] is null || grads[0].IsInvalid)
            return [null!, null!, null!, null!, null!, null!, null!, null!];
        var wanted = (PreferenceChunks.Wanted)ctx.get_data("wanted");
        var saved = ctx.get_saved_variables();
        int next = 1;
        var gradHidden = wanted.Hidden ? saved[next++] : null;
        var gradWeight = wanted.Weight ? saved[next++] : null;
        var gradBias = wanted.Bias ? saved[next] : null;
        using var applied = SavedAlias(saved[0]);
        using var factor = CrossEntropyOp.NextFactor(grads[0], applied);
        foreach (var g in new[] { gradHidden, gradWeight, gradBias })
            if (g is not null)
            {
                using var alias = SavedAlias(g);
                using var rows = g.dim() == 1 ? alias.view(1, -1) : alias.view(-1, g.shape[^1]);
                CrossEntropyOp.ScaleRows(rows, factor, perRow: false);
            }
        return [gradHidden!, gradWeight!, null!, gradBias!, null!, null!, null!, null!];
    }

    /// <summary>A tensor over <paramref name="source"/>'s memory that does not share its autograd version counter.</summary>
    private static Tensor SavedAlias(Tensor source) =>
        empty(0, dtype: source.dtype, device: source.device).set_(source);
}
