using Microsoft.ML.Liger.Distributed;

namespace Microsoft.ML.Liger.Training;

internal sealed partial class BatchPlan : IShardablePlan<MicroBatch>
{
    /// <summary>
    /// The part's rows of <paramref name="batch"/>, cut to their longest real row: right padding past it changes nothing a
    /// causal model computes for the real tokens, and a part with no padding left takes attention's unmasked fast path.
    /// </summary>
    public MicroBatch? Shard(MicroBatch batch, int part, int parts)
    {
        var (start, end) = DistributedSampler.Rows(batch.Rows, part, parts);
        int rows = end - start;
        if (rows == 0)
            return null;
        int length = 1;
        for (int r = start; r < end; r++)
            for (int t = batch.Length - 1; t >= length; t--)
                if (batch.AttentionMask[r * batch.Length + t] != 0)
                {
                    length = t + 1;
                    break;
                }
        var ids = new long[rows * length];
        var labels = new long[ids.Length];
        var mask = new long[ids.Length];
        int targets = 0, inputs = 0;
        for (int r = 0; r < rows; r++)
        {
            int from = (start + r) * batch.Length;
            Array.Copy(batch.InputIds, from, ids, r * length, length);
            Array.Copy(batch.Labels, from, labels, r * length, length);
            Array.Copy(batch.AttentionMask, from, mask, r * length, length);
            for (int t = 0; t < length; t++)
            {
                inputs += (int)mask[r * length + t];
                if (t > 0 && labels[r * length + t] != IgnoreIndex) targets++;
            }
        }
        return new MicroBatch(ids, labels, mask, rows, length, targets, inputs);
    }
}
