using System.Globalization;

namespace Microsoft.ML.Liger.Distributed;

/// <summary>Which collective library carries a data-parallel run's gradients.</summary>
public enum DistributedBackend
{
    /// <summary>NCCL when the model is on a CUDA device, MPI on the CPU.</summary>
    Auto,

    /// <summary>NVIDIA's NCCL (libnccl.so.2 from the host), one process per GPU; the ranks meet through a TCP rendezvous.</summary>
    Nccl,

    /// <summary>MPI (Open MPI's libmpi.so.40), with the ranks started by mpirun; for the CPU and for tests.</summary>
    Mpi,
}

/// <summary>
/// Data-parallel training: one process per device, each with its own rows of every optimizer step, gradients summed
/// across the processes after the backward pass. Set it on <see cref="Training.CausalLMTrainingOptions.Distributed"/>;
/// <see cref="FromEnvironment"/> reads what the launcher (Liger.Launch, torchrun) or mpirun set.
/// </summary>
/// <remarks>
/// <see cref="Training.CausalLMTrainingOptions.BatchSize"/> stays the rows each process takes per micro-batch (as
/// transformers' per_device_train_batch_size): <see cref="WorldSize"/> processes with batch B train exactly as one
/// process with batch <see cref="WorldSize"/>·B would.
/// </remarks>
public sealed class DistributedOptions
{
    /// <summary>Processes in the run (each one device). Default 1.</summary>
    public int WorldSize { get; set; } = 1;

    /// <summary>This process's rank, 0 to <see cref="WorldSize"/> − 1; rank 0 writes checkpoints and logs. Default 0.</summary>
    public int Rank { get; set; }

    /// <summary>This process's rank on its machine: its GPU is cuda:<see cref="LocalRank"/>. Default 0.</summary>
    public int LocalRank { get; set; }

    /// <summary>Host of rank 0's rendezvous (NCCL only). Default "127.0.0.1".</summary>
    public string MasterAddress { get; set; } = "127.0.0.1";

    /// <summary>TCP port of rank 0's rendezvous (NCCL only). Default 29500 (torchrun's).</summary>
    public int MasterPort { get; set; } = 29500;

    /// <summary>The collective library. Default <see cref="DistributedBackend.Auto"/>.</summary>
    public DistributedBackend Backend { get; set; } = DistributedBackend.Auto;

    /// <summary>
    /// 0: every process keeps the whole optimizer state (plain data parallelism). 1: ZeRO stage 1, each process keeps
    /// the AdamW state (and fp32 master weights) of its own share of the parameters, steps only those and broadcasts
    /// them: optimizer memory divided by <see cref="WorldSize"/>. Default 0.
    /// </summary>
    public int ZeroStage { get; set; }

    /// <summary>Gradients are summed in flat buckets of about this many megabytes (PyTorch DDP's bucket_cap_mb). Default 25.</summary>
    public double BucketMegabytes { get; set; } = 25;

    /// <summary>How long the rendezvous waits for every rank. Default 5 minutes.</summary>
    public TimeSpan RendezvousTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Whether this process writes checkpoints and reports progress.</summary>
    public bool IsRankZero => Rank == 0;

    /// <summary>
    /// Options from the environment: torchrun's and Liger.Launch's RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
    /// MASTER_PORT, else Open MPI's OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE and OMPI_COMM_WORLD_LOCAL_RANK (with the
    /// MPI backend); null when neither is set (a single-process run).
    /// </summary>
    /// <exception cref="ArgumentException">A variable is set but is not a number (named).</exception>
    public static DistributedOptions? FromEnvironment() => FromVariables(Environment.GetEnvironmentVariable);

    internal static DistributedOptions? FromVariables(Func<string, string?> variable)
    {
        int? Number(string name)
        {
            string? text = variable(name);
            if (string.IsNullOrWhiteSpace(text))
                return null;
            return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value)
                ? value
                : throw new ArgumentException($"Environment variable {name} must be an integer; got '{text}'.", name);
        }

        if (Number("WORLD_SIZE") is int worldSize)
        {
            var options = new DistributedOptions
            {
                WorldSize = worldSize,
                Rank = Number("RANK") ?? throw new ArgumentException("WORLD_SIZE is set but RANK is not: each process needs its rank.", "RANK"),
                LocalRank = Number("LOCAL_RANK") ?? 0,
            };
            if (variable("MASTER_ADDR") is { Length: > 0 } address) options.MasterAddress = address;
            if (Number("MASTER_PORT") is int port) options.MasterPort = port;
            return options;
        }
        if (Number("OMPI_COMM_WORLD_SIZE") is int mpiSize)
            return new DistributedOptions
            {
                WorldSize = mpiSize,
                Rank = Number("OMPI_COMM_WORLD_RANK") ?? 0,
                LocalRank = Number("OMPI_COMM_WORLD_LOCAL_RANK") ?? 0,
                Backend = DistributedBackend.Mpi,
            };
        return null;
    }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first option that is out of range.</summary>
    public void Validate()
    {
        if (WorldSize < 1) Out(nameof(WorldSize), WorldSize, "≥ 1");
        if (Rank < 0 || Rank >= WorldSize) Out(nameof(Rank), Rank, $"in [0, {nameof(WorldSize)} − 1 = {WorldSize - 1}]");
        if (LocalRank < 0 || LocalRank > Rank) Out(nameof(LocalRank), LocalRank, $"in [0, {nameof(Rank)} = {Rank}] (the rank among this machine's processes)");
        if (string.IsNullOrWhiteSpace(MasterAddress)) Out(nameof(MasterAddress), MasterAddress, "a host name or IP address");
        if (MasterPort is < 1 or > 65535) Out(nameof(MasterPort), MasterPort, "a TCP port in [1, 65535]");
        if (!Enum.IsDefined(Backend)) Out(nameof(Backend), Backend, "Auto, Nccl or Mpi");
        if (ZeroStage is not (0 or 1)) Out(nameof(ZeroStage), ZeroStage, "0 (no sharding) or 1 (optimizer state sharded)");
        if (!(BucketMegabytes > 0) || double.IsInfinity(BucketMegabytes)) Out(nameof(BucketMegabytes), BucketMegabytes, "a positive finite number");
        if (RendezvousTimeout <= TimeSpan.Zero) Out(nameof(RendezvousTimeout), RendezvousTimeout, "positive");
    }

    /// <summary>A copy (the estimators keep the user's object untouched).</summary>
    public DistributedOptions Clone() => (DistributedOptions)MemberwiseClone();

    private static void Out(string name, object value, string expected) =>
        throw new ArgumentOutOfRangeException(name, value, $"Distributed option '{name}' must be {expected}; got {value}.");
}
