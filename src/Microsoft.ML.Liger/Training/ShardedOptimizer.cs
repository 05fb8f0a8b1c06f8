using Liger.Kernels.Runtime;
using Microsoft.ML.Liger.Distributed;
using Microsoft.ML.Liger.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Training;

/// <summary>
/// ZeRO stage 1: each rank keeps AdamW's state (and the fp32 master weights of bf16 training) for its own share of the
/// parameters (<see cref="ParameterPartition"/>), steps only those after the gradients are summed, and broadcasts each
/// updated parameter from its owner. Clipping uses the global norm over all the (summed, so identical) gradients, as
/// without sharding. Checkpoints hold one state file per rank (<see cref="StateFile"/>), written into the same folder.
/// </summary>
internal sealed class ShardedOptimizer : ICheckpointedOptimizer
{
    private readonly Parameter[] parameters;
    private readonly int[] owners;
    private readonly Collectives collectives;
    private readonly TrainingOptimizer? own;

    public ShardedOptimizer(nn.Module model, CausalLMTrainingOptions options, bool masterWeights, Collectives collectives)
    {
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => (p.name, p.parameter)).ToArray();
        parameters = trainable.Select(p => p.parameter).ToArray();
        owners = ParameterPartition.Balance(parameters.Select(p => p.numel()).ToArray(), collectives.WorldSize);
        this.collectives = collectives;
        var mine = trainable.Where((_, i) => owners[i] == collectives.Rank).ToArray();
        // A rank may own nothing when there are more ranks than parameters.
        own = mine.Length > 0 ? new TrainingOptimizer(mine, options, masterWeights) : null;
    }

    /// <summary>The owner rank of each trainable parameter, in the model's order.</summary>
    public IReadOnlyList<int> Owners => owners;

    /// <summary>This rank's optimizer-state file in a checkpoint (AdamW's state of its share).</summary>
    public static string StateFile(int rank, int worldSize) => $"optimizer.rank-{rank}-of-{worldSize}.bin";

    /// <summary>This rank's master-weights file in a checkpoint of bf16 training.</summary>
    public static string MasterFile(int rank, int worldSize) => $"master_weights.rank-{rank}-of-{worldSize}.safetensors";

    public Tensor Step(double learningRate, double maxNorm, Func<Tensor, bool>? proceed = null)
    {
        using var scope = NewDisposeScope();
        var norm = TrainingOptimizer.GlobalNorm(parameters);
        // The norm is over the summed gradients, the same on every rank, so every rank skips alike (nothing to broadcast then).
        if (proceed is not null && !proceed(norm))
        {
            foreach (var p in parameters)
                p.grad = null;
            return norm.MoveToOuterDisposeScope();
        }
        Tensor? coefficient = maxNorm > 0 ? norm.Plus(1e-6).reciprocal().Times(maxNorm).AtMost(1.0) : null;
        using (no_grad())
        {
            for (int i = 0; i < parameters.Length; i++)
            {
                if (owners[i] != collectives.Rank)
                    parameters[i].grad = null;
                else if (coefficient is not null)
                    parameters[i].grad?.mul_(coefficient);
            }
        }
        own?.Step(learningRate, maxNorm: 0).Dispose();
        using (no_grad())
        {
            collectives.BeginGroup();
            try
            {
                for (int i = 0; i < parameters.Length; i++)
                    collectives.Broadcast(parameters[i], owners[i]);
            }
            finally
            {
                collectives.EndGroup();
            }
        }
        return norm.MoveToOuterDisposeScope();
    }

    public void Save(string folder)
    {
        var (state, masters) = (StateFile(collectives.Rank, collectives.WorldSize), MasterFile(collectives.Rank, collectives.WorldSize));
        if (own is null)
            File.WriteAllBytes(Path.Combine(folder, state), []);
        else
            own.Save(folder, state, masters);
    }

    public void Load(string folder)
    {
        string state = StateFile(collectives.Rank, collectives.WorldSize);
        if (!File.Exists(Path.Combine(folder, state)))
            throw new InvalidDataException(
                $"Checkpoint '{folder}' has no '{state}': it was not written by a ZeRO-1 run of {collectives.WorldSize} ranks. Resume with the world size and " +
                $"{nameof(DistributedOptions.ZeroStage)} that wrote it.");
        own?.Load(folder, state, MasterFile(collectives.Rank, collectives.WorldSize));
    }

    public void Dispose() => own?.Dispose();
}
