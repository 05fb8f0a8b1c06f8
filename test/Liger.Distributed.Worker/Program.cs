using System.Globalization;
using Liger.Distributed.Worker;
using Microsoft.ML.Liger.Distributed;
using Microsoft.ML.Liger.Training;
using TorchSharp;

// One rank of a data-parallel test run. Arguments: the scenario's (DistributedScenario.ToArgs), then
//   --out DIR            where each rank writes rank-R/ (the trained model) and rank-R.losses (one step loss a line)
//   --checkpoint DIR     checkpoint folder; --resume continues from it; --cancel-at K cancels rank 0 after step K
//   --world-size N       overrides the world size mpirun set (to test the mismatch error)
//   --device D           "cpu" (default) or "cuda" (each rank on cuda:LOCAL_RANK; NCCL by default)
//   --reference N        no data parallelism: this one process trains with N times the batch (what N ranks must match)
//   --estimator K --tokenizer DIR   instead of the trainer: the public estimator K ("sft" or "dpo"), EstimatorScenario's run
var arguments = args.ToList();
string? Get(string name) => arguments.IndexOf(name) is int i and >= 0 && i + 1 < arguments.Count ? arguments[i + 1] : null;
string output = Get("--out") ?? throw new ArgumentException("--out is required");
var scenario = DistributedScenario.Parse(arguments);
int? referenceRanks = Get("--reference") is { } n ? int.Parse(n, CultureInfo.InvariantCulture) : null;
var distributed = referenceRanks is not null ? null : DistributedOptions.FromEnvironment()
    ?? throw new InvalidOperationException("No RANK/WORLD_SIZE or OMPI_COMM_WORLD_* in the environment: start the worker with mpirun or Liger.Launch.");
if (distributed is not null)
{
    distributed.ZeroStage = scenario.ZeroStage;
    distributed.BucketMegabytes = scenario.BucketMegabytes;
    if (Get("--world-size") is { } forced)
        distributed.WorldSize = int.Parse(forced, CultureInfo.InvariantCulture);
}
int rank = distributed?.Rank ?? 0;
string device = Get("--device") ?? "cpu";
if (device == "cuda")
    device = $"cuda:{distributed?.LocalRank ?? 0}";
// Two ranks share two cores: one thread each keeps them from fighting.
torch.set_num_threads(1);
if (Get("--estimator") is { } kind)
{
    using var transformer = EstimatorScenario.Fit(kind, Get("--tokenizer") ?? throw new ArgumentException("--tokenizer is required with --estimator"),
        scenario.Seed, scenario.Rows, scenario.BatchSize, distributed);
    transformer.Model.SavePretrained(Path.Combine(output, $"rank-{rank}"));
    Collectives.Shutdown();
    return 0;
}
// A failure is left unhandled on purpose: the process then dies without MPI_Finalize (which would wait for the other
// ranks), and mpirun or the launcher stops the others and reports the failing rank.
{
    using var model = scenario.Model(device);
    using var cancel = new CancellationTokenSource();
    var options = scenario.Options(scenario.BatchSize * (referenceRanks ?? 1), distributed);
    options.CheckpointFolder = Get("--checkpoint");
    options.ResumeFromCheckpoint = arguments.Contains("--resume");
    options.CancellationToken = cancel.Token;
    if (Get("--cancel-at") is { } at)
        options.OnProgress = p =>
        {
            if (p.Step == int.Parse(at, CultureInfo.InvariantCulture)) cancel.Cancel();
        };
    var trainer = new CausalLMTrainer(model, options, DistributedScenario.PadId, DistributedScenario.EosId)
    {
        Log = message => Console.WriteLine(message),
    };
    try
    {
        var result = trainer.Train(scenario.Data());
        model.SavePretrained(Path.Combine(output, $"rank-{rank}"));
        File.WriteAllLines(Path.Combine(output, $"rank-{rank}.losses"), result.StepLosses.Select(l => l.ToString("R", CultureInfo.InvariantCulture)));
        File.WriteAllText(Path.Combine(output, $"rank-{rank}.tokens"), result.TokensSeen.ToString(CultureInfo.InvariantCulture));
    }
    catch (OperationCanceledException)
    {
        File.WriteAllText(Path.Combine(output, $"rank-{rank}.cancelled"), "");
    }
}
Collectives.Shutdown();
return 0;
