using Microsoft.ML.Liger.Distributed;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Training;

/// <summary>
/// What the training loop does differently in a data-parallel run, in one place: the same weights on every rank at the
/// start, each rank's own rows of every micro-batch, gradients summed over the ranks before the step, the optimizer
/// plain or ZeRO-1, the step losses summed for reports, and checkpoints written by rank 0 (with every rank's optimizer
/// shard inside the same atomic folder under ZeRO-1).
/// </summary>
internal sealed class DataParallel
{
    private readonly DistributedOptions options;
    private readonly GradientBuckets buckets;
    private readonly Device device;

    private DataParallel(CausalLM model, DistributedOptions options, Collectives collectives)
    {
        this.options = options;
        Collectives = collectives;
        device = model.LmHeadWeight.device;
        buckets = new GradientBuckets(model.parameters().Where(p => p.requires_grad), collectives, options.BucketMegabytes);
    }

    /// <summary>The run's data parallelism, or null when <see cref="CausalLMTrainingOptions.Distributed"/> is not set.</summary>
    public static DataParallel? For(CausalLM model, CausalLMTrainingOptions options) =>
        options.Distributed is { } distributed ? new DataParallel(model, distributed, Collectives.ForProcess(distributed, model.LmHeadWeight.device)) : null;

    public Collectives Collectives { get; }

    public int Rank => Collectives.Rank;

    public bool IsRankZero => Collectives.Rank == 0;

    /// <summary>What the checkpoint's run shape adds: a resume must see the same number of ranks and the same sharding.</summary>
    public IEnumerable<KeyValuePair<string, string>> RunShape =>
    [
        new("world_size", Collectives.WorldSize.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        new("zero_stage", options.ZeroStage.ToString(System.Globalization.CultureInfo.InvariantCulture)),
    ];

    /// <summary>Copies rank 0's parameters and buffers to every rank (random initialisation, or a checkpoint, is then the same everywhere).</summary>
    public void BroadcastModel(CausalLM model)
    {
        using var _ = no_grad();
        Collectives.BeginGroup();
        try
        {
            foreach (var p in model.parameters())
                Collectives.Broadcast(p, 0);
            foreach (var b in model.buffers())
                if (b.is_contiguous())
                    Collectives.Broadcast(b, 0);
        }
        finally
        {
            Collectives.EndGroup();
        }
    }

    /// <summary>This rank's rows of <paramref name="batch"/> (null when it has none).</summary>
    public TBatch? Shard<TBatch>(ITrainingPlan<TBatch> plan, TBatch batch) where TBatch : class =>
        plan is IShardablePlan<TBatch> shardable
            ? shardable.Shard(batch, Collectives.Rank, Collectives.WorldSize)
            : throw new NotSupportedException($"{plan.GetType().Name} cannot split its batches among ranks.");

    public void AllReduceGradients() => buckets.AllReduce();

    public ICheckpointedOptimizer CreateOptimizer(CausalLM model, CausalLMTrainingOptions training, bool masterWeights) =>
        options.ZeroStage == 1
            ? new ShardedOptimizer(model, training, masterWeights, Collectives)
            : new TrainingOptimizer(model, training, masterWeights);

    /// <summary>
    /// Whether any rank's token is cancelled, agreed by all of them (each must stop at the same step, or the collectives of
    /// the ones that go on would wait forever). Asked only every <see cref="CausalLMTrainingOptions.LoggingInterval"/> steps,
    /// where reports already wait for the device: a cancellation is honoured at the next of those steps.
    /// </summary>
    public bool AnyCancelled(int step, CausalLMTrainingOptions training)
    {
        if (step % training.LoggingInterval != 0)
            return false;
        using var flag = tensor(training.CancellationToken.IsCancellationRequested ? 1f : 0f, device: device);
        Collectives.AllReduce(flag);
        return flag.item<float>() > 0;
    }

    /// <summary>Sums <paramref name="values"/> over the ranks in place (each rank's share of the step losses).</summary>
    public void Sum(Tensor values) => Collectives.AllReduce(values);

    /// <summary>
    /// Writes checkpoint <paramref name="step"/>: rank 0 stages the model (<paramref name="writeModel"/>) and, last, the trainer
    /// state; the optimizer's state comes from rank 0 alone, or under ZeRO-1 from every rank into rank 0's staging folder
    /// between two barriers. Rank 0 then moves the folder into place, and a last barrier holds every rank until it is there.
    /// Returns the checkpoint's path on every rank.
    /// </summary>
    public string WriteCheckpoint(string root, int step, int keep, Action<string> writeModel, ICheckpointedOptimizer optimizer, Action<string> writeState)
    {
        bool sharded = options.ZeroStage == 1;
        string final = TrainingCheckpoints.PathOf(root, step);
        if (IsRankZero)
        {
            TrainingCheckpoints.Write(root, step, staging =>
            {
                writeModel(staging);
                optimizer.Save(staging);
                if (sharded)
                {
                    Collectives.Barrier(); // the staging folder exists
                    Collectives.Barrier(); // every rank's shard is in it
                }
                writeState(staging);
            }, keep);
        }
        else if (sharded)
        {
            Collectives.Barrier();
            optimizer.Save(AtomicFolder.StagingOf(final));
            Collectives.Barrier();
        }
        Collectives.Barrier();
        return final;
    }
}
