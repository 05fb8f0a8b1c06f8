using Microsoft.ML.Liger.Distributed;

namespace Microsoft.ML.Liger.PreferenceAlignment;

internal sealed partial class PreferenceBatchPlan : IShardablePlan<PreferenceBatch>
{
    /// <summary>The part's examples of <paramref name="batch"/>, padded anew among themselves (their pairs or KTO rows stay together).</summary>
    public PreferenceBatch? Shard(PreferenceBatch batch, int part, int parts)
    {
        var (start, end) = DistributedSampler.Rows(batch.Examples.Length, part, parts);
        return end == start ? null : PreferenceBatch.Of(examples, batch.Examples[start..end], paired, padId);
    }
}
