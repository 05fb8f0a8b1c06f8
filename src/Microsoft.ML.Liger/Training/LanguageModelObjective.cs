using Liger.Kernels.Runtime;
using Microsoft.ML.Liger.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Training;

/// <summary>
/// Language modelling and supervised fine-tuning: the model's own loss (fused linear cross-entropy by default) on
/// the target tokens, each micro-batch's summed loss divided by the whole step's target tokens (Hugging Face's
/// num_items_in_batch), so accumulation equals one bigger batch.
/// </summary>
internal sealed class LanguageModelObjective(CausalLM model, CausalLMTrainingOptions options, int padTokenId,
    IReadOnlyList<TokenizedExample>? validation) : ITrainingObjective<MicroBatch>
{
    public Tensor Backward(MicroBatch batch, IReadOnlyList<MicroBatch> step)
    {
        long items = 0;
        foreach (var b in step)
            items += b.TargetTokens;
        using var output = model.forward(ToInput(batch, model.LmHeadWeight.device, Math.Max(1, items)));
        output.Loss!.backward();
        return output.Loss.detach().to(ScalarType.Float32);
    }

    public long InputTokens(MicroBatch batch) => batch.InputTokens;

    public IReadOnlyDictionary<string, double>? TakeMetrics() => null;

    public bool HasValidation => validation is { Count: > 0 };

    public (double Loss, IReadOnlyDictionary<string, double>? Metrics) Evaluate() => (Loss(validation!), null);

    /// <summary>Mean loss per target token of <paramref name="data"/> (padded batches in order, no gradients, eval mode).</summary>
    public double Loss(IReadOnlyList<TokenizedExample> data)
    {
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            var device = model.LmHeadWeight.device;
            Tensor sum = zeros(1, dtype: ScalarType.Float64, device: device).squeeze();
            long count = 0;
            int taken = 0;
            foreach (var batch in BatchPlan.InOrder(data, options.BatchSize, options.MaxContextLength, padTokenId))
            {
                if (options.MaxEvalBatches is int max && taken++ >= max)
                    break;
                if (batch.TargetTokens == 0)
                    continue;
                using var scope = NewDisposeScope();
                // NumItemsInBatch = 1 makes the loss the sum over the batch's target tokens.
                using var output = model.forward(ToInput(batch, device, numItems: 1));
                sum.PlusInPlace(output.Loss!.to(ScalarType.Float64));
                count += batch.TargetTokens;
            }
            return count == 0 ? double.NaN : sum.item<double>() / count;
        }
        finally
        {
            model.train(wasTraining);
        }
    }

    private static CausalLMInput ToInput(MicroBatch batch, Device device, long numItems)
    {
        long[] shape = [batch.Rows, batch.Length];
        return new CausalLMInput
        {
            InputIds = DeviceUpload.Of(batch.InputIds, shape, device),
            Labels = DeviceUpload.Of(batch.Labels, shape, device),
            // No mask when nothing is padded: attention then takes the causal fast path.
            AttentionMask = batch.HasPadding ? DeviceUpload.Of(batch.AttentionMask, shape, device) : null,
            NumItemsInBatch = numItems,
        };
    }
}
