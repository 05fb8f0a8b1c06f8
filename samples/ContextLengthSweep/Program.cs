// Sweeps context length, batch size and Liger on/off for a small Llama on the CPU, AutoML style: a search space
// declared with [Choice] attributes, a cost-aware tuner, a trial budget and a time budget. Each trial fine-tunes a
// fresh tiny-llama for a few steps on the main sample's made-up task (GPT-2's packaged tokenizer: no downloads),
// with packing, so a longer context puts more examples in each row and each step sees more tokens. Prints every
// trial as it finishes, the table, the best trial, and where the CSV and JSON went. Ctrl+C stops the running
// trial (recorded as cancelled) and keeps the finished ones.
//   dotnet run -c Release --project samples/ContextLengthSweep [-- --tuner cost-aware|grid|random] [--steps N] [--seconds N] [--out FOLDER]
using System.Diagnostics;
using ContextLengthSweep;
using FineTuneCausalLM;
using Microsoft.ML;
using Microsoft.ML.Liger;
using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Sweeps;
using Microsoft.ML.Liger.Training;

NativeSettings.Apply(); // before the first tensor: see NativeSettings.cs
int steps = SampleArguments.Int(args, "--steps", 25);
int seconds = SampleArguments.Int(args, "--seconds", 150);
string tuner = SampleArguments.Text(args, "--tuner", "cost-aware");
string output = SampleArguments.Text(args, "--out", Path.Combine(Path.GetTempPath(), "liger-sweep"));
var clock = Stopwatch.StartNew();
var ml = new MLContext(seed: 0);

var data = SyntheticTask.Generate(trainCount: 4000, heldOutCount: 100, seed: 1);
var train = ml.Data.LoadFromEnumerable(data.Train.Select(e => new Row { Prompt = e.Prompt, Response = e.Response }));
var heldOut = ml.Data.LoadFromEnumerable(data.HeldOut.Select(e => new Row { Prompt = e.Prompt, Response = e.Response }));

// What every trial shares; the search space sets the rest.
var baseOptions = new FineTuneCausalLMOptions
{
    Architecture = "tiny-llama",
    Tokenizer = CausalLMTokenizer.Gpt2(),
    Packing = true,
    LearningRate = 5e-3,
    WarmupSteps = 5,
    Schedule = LearningRateSchedule.Cosine,
    MinLearningRateRatio = 0.1,
    Seed = 0,
};

var sweep = ml.Liger().CreateSweep(baseOptions)
    .SetSearchSpace(new SearchSpace<ContextSweepSpace>(), (point, options) =>
    {
        options.MaxContextLength = point.MaxContextLength;
        options.BatchSize = point.BatchSize;
        options.Kernels = point.Liger ? new LigerKernelOptions() : LigerKernelOptions.None;
    })
    .SetDataset(train, heldOut)
    .SetStepsPerTrial(steps)
    .SetMaxTrials(12)
    .SetTrainingTimeInSeconds(seconds)
    .SetOutputFolder(output);
_ = tuner switch
{
    "grid" => sweep.SetGridSearchTuner(), // every point, in the order the space declares them
    "random" => sweep.SetRandomSearchTuner(seed: 0), // points drawn at random, each once
    _ => sweep.SetCostAwareTuner(), // cheapest points first; skips points that an out-of-memory trial proves cannot fit
};
sweep.TrialCompleted += (_, trial) => Console.WriteLine($"  {Describe(trial)}");

using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true; // stop the sweep, not the process: finished trials are kept and saved
    cancel.Cancel();
};

Console.WriteLine($"Sweeping context length x batch size x Liger on/off ({tuner} tuner, at most 12 trials and {seconds} s, {steps} steps each) " +
                  $"on the CPU ({Environment.ProcessorCount} cores), {data.Train.Count} training and {data.HeldOut.Count} validation examples:");
var result = await sweep.RunAsync(cancel.Token);

Console.WriteLine();
Console.WriteLine(result.ToTable());
if (result.BestTrial is { } best)
    Console.WriteLine($"Best trial (lowest validation loss): {Describe(best)}");
else
    Console.WriteLine("No trial completed.");
Console.WriteLine($"Results (CSV and JSON, rewritten after every trial) in {output}: {string.Join(", ", Directory.GetFiles(output).Select(Path.GetFileName).Order())}");
Console.WriteLine($"Done in {clock.Elapsed.TotalSeconds:F0} s.");
return result.BestTrial is null ? 1 : 0;

static string Describe(TrialResult trial)
{
    string point = string.Join(", ", trial.Parameters.Select(p => $"{p.Key} {p.Value}"));
    string figures = trial.Status == TrialStatus.Completed
        ? $"loss {trial.EvalLoss:F3}, {trial.TokensPerSecond:F0} tokens/s, peak {(trial.PeakMemoryBytes is long b ? $"{b / (1024.0 * 1024.0):F0} MiB" : "n/a")}"
        : trial.Error ?? "";
    return $"trial {trial.Id}: {point} -> {trial.Status}, {figures} ({trial.Duration.TotalSeconds:F1} s)";
}

/// <summary>An instruction row.</summary>
internal sealed class Row
{
    public string Prompt { get; set; } = "";
    public string Response { get; set; } = "";
}
