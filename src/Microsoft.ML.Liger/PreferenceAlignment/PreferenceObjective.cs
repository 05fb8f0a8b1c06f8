using Liger.Kernels.Losses;
using Liger.Kernels.Runtime;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.PreferenceAlignment;

/// <summary>
/// Preference alignment as a training objective: per micro-batch, one forward of the policy over all its sequences
/// (paired: chosen then rejected, as TRL's concatenated forward) to the final hidden states, then the algorithm's chunked
/// fused-linear loss (lm_head applied chunk by chunk: the batch's logits never exist at once), with the reference
/// log-probs for DPO and KTO and the KL baseline for KTO. Each micro-batch's loss (a mean over its pairs or sequences)
/// is weighted by its share of the step's pairs or sequences, so accumulation equals one bigger batch (the NLL term,
/// a mean over each micro-batch's chosen tokens, is weighted the same way).
/// </summary>
internal sealed class PreferenceObjective : ITrainingObjective<PreferenceBatch>
{
    private readonly CausalLM policy;
    private readonly PreferenceLossSettings settings;
    private readonly ReferenceLogProbs? reference;
    private readonly IReadOnlyList<PreferenceExample>? validation;
    private readonly CausalLMTrainingOptions options;
    private readonly int padId;
    private readonly PreferenceMetrics trainMetrics = new();

    public PreferenceObjective(CausalLM policy, PreferenceLossSettings settings, ReferenceLogProbs? reference,
        IReadOnlyList<PreferenceExample>? validation, CausalLMTrainingOptions options, int padId)
    {
        if (settings.UsesReference && reference is null)
            throw new ArgumentException($"{settings.Algorithm} needs a reference model.", nameof(reference));
        this.policy = policy;
        this.settings = settings;
        this.reference = reference;
        this.validation = validation;
        this.options = options;
        this.padId = padId;
    }

    public Tensor Backward(PreferenceBatch batch, IReadOnlyList<PreferenceBatch> step)
    {
        long units = 0;
        foreach (var b in step)
            units += b.Units;
        var loss = Loss(batch, PreferenceDataSet.Train, trainMetrics);
        var share = batch.Units == units ? loss : loss.Times(batch.Units / (double)units);
        share.backward();
        return share.detach().to(ScalarType.Float32);
    }

    public long InputTokens(PreferenceBatch batch) => batch.Main.InputTokens;

    public IReadOnlyDictionary<string, double>? TakeMetrics() => trainMetrics.Take();

    public bool HasValidation => validation is { Count: > 0 };

    public (double Loss, IReadOnlyDictionary<string, double>? Metrics) Evaluate()
    {
        bool wasTraining = policy.training;
        policy.eval();
        try
        {
            using var _ = no_grad();
            var metrics = new PreferenceMetrics();
            var sum = zeros(1, dtype: ScalarType.Float64, device: policy.LmHeadWeight.device).squeeze();
            long units = 0;
            int taken = 0;
            foreach (var batch in PreferenceBatch.InOrder(validation!, options.BatchSize, settings.Paired, padId))
            {
                if (options.MaxEvalBatches is int max && taken++ >= max)
                    break;
                using var scope = NewDisposeScope();
                sum.PlusInPlace(Loss(batch, PreferenceDataSet.Validation, metrics).to(ScalarType.Float64).Times(batch.Units));
                units += batch.Units;
            }
            double loss = units == 0 ? double.NaN : sum.item<double>() / units;
            sum.Dispose();
            return (loss, metrics.Take());
        }
        finally
        {
            policy.train(wasTraining);
        }
    }

    /// <summary>The batch's loss (a mean over its pairs or sequences, plus Mixtral's weighted load-balancing loss when on); metrics go to <paramref name="metrics"/>.</summary>
    private Tensor Loss(PreferenceBatch batch, PreferenceDataSet set, PreferenceMetrics metrics)
    {
        var device = policy.LmHeadWeight.device;
        var hidden = policy.HeadInput(policy.HiddenStates(batch.Main.Input(device), out var aux));
        var target = batch.Main.Target(device);
        var referenceLogProbs = reference?.Main(batch, set, device);
        var given = referenceLogProbs is null ? null : PreferenceReference.FromLogProbs(referenceLogProbs);
        Tensor loss;
        if (settings.Paired)
        {
            var result = LigerFusedLinearPreferenceLoss.Apply(hidden, policy.LmHeadWeight, target, settings.Loss, null, given);
            metrics.Add(result, batch.Units, settings.Loss.ComputeNllLoss);
            loss = result.Loss;
        }
        else
        {
            var labels = tensor(batch.Desirable!, device: device);
            var kl = settings.EstimateKl ? KlBaseline(batch, set, device) : null;
            var result = LigerFusedLinearKtoLoss.Apply(hidden, policy.LmHeadWeight, target, labels, given, null, (KtoLossOptions)settings.Loss, kl);
            metrics.Add(result, batch.Desirable!);
            loss = result.Loss;
        }
        if (aux is not null)
            loss = loss.Plus(aux.to(loss.device).Times(policy.Config.RouterAuxLossCoef));
        return loss;
    }

    /// <summary>
    /// KTO's KL baseline for the batch: the mean over its KL sequences (each prompt with another row's completion) of the
    /// policy's minus the reference's log-probs, without gradients, clamped at 0 (TRL's estimate).
    /// </summary>
    private Tensor KlBaseline(PreferenceBatch batch, PreferenceDataSet set, Device device)
    {
        var rows = batch.Kl!;
        var policyLogProbs = policy.SequenceLogProbs(rows.Input(device), rows.Target(device), settings.Loss.AverageLogProb);
        return LigerFusedLinearKtoLoss.EstimateKl(policyLogProbs, reference!.Kl(batch, set, device));
    }
}
