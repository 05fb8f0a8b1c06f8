// Fine-tunes a small Llama-architecture model from random init with Liger's kernels, through ML.NET, on a task
// it makes up itself ("Which word is a fruit: lion, blue, pear, Spain, seven?" -> " pear"), with GPT-2's
// tokenizer from its NuGet package: no downloads. Prints held-out accuracy before and after, the peak memory of
// a training step with and without the fused linear cross-entropy, a few generations, and saves and reloads the model.
//   dotnet run -c Release --project samples/FineTuneCausalLM [-- --steps N] [--out FOLDER]
using System.Diagnostics;
using FineTuneCausalLM;
using Microsoft.ML;
using Microsoft.ML.Liger;
using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Training;
using static TorchSharp.torch;

NativeSettings.Apply(); // before the first tensor: see NativeSettings.cs
int steps = SampleArguments.Int(args, "--steps", 400);
string output = SampleArguments.Text(args, "--out", Path.Combine(Path.GetTempPath(), "liger-fine-tuned"));
var clock = Stopwatch.StartNew();
var ml = new MLContext(seed: 0);

var data = SyntheticTask.Generate(trainCount: 20000, heldOutCount: 400, seed: 1);
var tokenizer = CausalLMTokenizer.Gpt2();
Console.WriteLine($"Task: {data.Train.Count} training and {data.HeldOut.Count} held-out questions, e.g.");
Console.WriteLine($"  {data.Train[0].Prompt.Replace("\n", "\\n")}{data.Train[0].Response}");
Console.WriteLine($"Chance (guessing one of the {SyntheticTask.ChoiceCount} words offered): {SyntheticTask.ChanceAccuracy:P0}");

var train = ml.Data.LoadFromEnumerable(data.Train.Select(e => new Row { Prompt = e.Prompt, Response = e.Response }));
var heldOut = ml.Data.LoadFromEnumerable(data.HeldOut.Select(e => new Row { Prompt = e.Prompt, Response = e.Response }));

FineTuneCausalLMOptions Options(int maxSteps, LigerKernelOptions kernels) => new()
{
    Architecture = "tiny-llama",
    Tokenizer = tokenizer,
    MaxContextLength = 32,
    BatchSize = 16,
    MaxSteps = maxSteps,
    LearningRate = 5e-3,
    WarmupSteps = 30,
    Schedule = LearningRateSchedule.Cosine,
    MinLearningRateRatio = 0.1,
    Kernels = kernels,
    LoggingInterval = 25,
    Seed = 0,
    Generation = new GenerationOptions { MaxNewTokens = 4 },
};

// 1. Peak memory of a training step, fused loss vs logits materialised (a few steps each).
double fused = PeakMiB(Options(4, new LigerKernelOptions()));
double materialised = PeakMiB(Options(4, new LigerKernelOptions { FusedLinearCrossEntropy = false }));
Console.WriteLine($"Peak resident memory of the process during a training step (batch 16 x ~24 tokens, vocabulary {tokenizer.VocabularySize}):");
Console.WriteLine($"  fused linear cross-entropy (Liger): {fused,6:F0} MiB");
Console.WriteLine($"  logits materialised (eager loss):   {materialised,6:F0} MiB   ({materialised / fused:F2}x)");

// 2. Accuracy before training: the same architecture and seed, untrained.
using (var untrained = new CausalLM(CausalLMArchitectures.Create("tiny-llama", tokenizer.VocabularySize)))
{
    untrained.InitializeWeights(0);
    Console.WriteLine($"Held-out accuracy before fine-tuning: {Accuracy(p => Complete(untrained, p), data.HeldOut):P1}");
}

// 3. Fine-tune with Liger's kernels (the defaults: RMSNorm, RoPE, SwiGLU, fused linear cross-entropy).
Console.WriteLine($"Fine-tuning for {steps} steps on the CPU ({Environment.ProcessorCount} cores):");
var options = Options(steps, new LigerKernelOptions());
options.OnProgress = p => Console.WriteLine($"  {p}"); // the same reports go to ML.NET's log (mlContext.Log) and progress channel
using var model = ml.Liger().FineTuneCausalLM(options).Fit(train);
Console.WriteLine($"  kernels: {model.Model.AppliedKernels}");

// 4. Accuracy after, through the transformer's Completion column.
var rows = ml.Data.CreateEnumerable<ScoredRow>(model.Transform(heldOut), reuseRowObject: false).ToList();
double after = rows.Zip(data.HeldOut).Count(pair => SyntheticTask.IsCorrect(pair.Second, pair.First.Completion)) / (double)rows.Count;
Console.WriteLine($"Held-out accuracy after fine-tuning: {after:P1} (chance {SyntheticTask.ChanceAccuracy:P0})");
foreach (var (row, example) in rows.Zip(data.HeldOut).Take(4))
    Console.WriteLine($"  {example.Prompt.Replace("\n", " ")} ->{row.Completion}   [{(SyntheticTask.IsCorrect(example, row.Completion) ? "right" : "wrong")}, loss of the answer {row.Loss:F3}]");

// 5. Save in Hugging Face's format (+ liger_model.json), reload, and check the reloaded model answers alike.
model.Save(output);
using var reloaded = ml.Liger().LoadCausalLM(output);
int same = data.HeldOut.Take(20).Count(e => reloaded.Generate(e.Prompt) == model.Generate(e.Prompt));
Console.WriteLine($"Saved to {output} and reloaded: {same}/20 completions identical.");
Console.WriteLine($"Done in {clock.Elapsed.TotalSeconds:F0} s.");
return after > 3 * SyntheticTask.ChanceAccuracy && same == 20 ? 0 : 1;

double PeakMiB(FineTuneCausalLMOptions options)
{
    long peak = 0;
    options.LoggingInterval = 1;
    options.OnProgress = p => { if (p.Step > 1) peak = Math.Max(peak, p.PeakMemoryBytes ?? 0); }; // step 1 also allocates the optimizer state
    using var probe = ml.Liger().FineTuneCausalLM(options).Fit(ml.Data.TakeRows(train, 4 * 16));
    return peak / (1024.0 * 1024.0);
}

double Accuracy(Func<string, string> complete, IReadOnlyList<SyntheticExample> examples) =>
    examples.Count(e => SyntheticTask.IsCorrect(e, complete(e.Prompt))) / (double)examples.Count;

string Complete(CausalLM untrained, string prompt)
{
    using var scope = NewDisposeScope();
    var ids = tokenizer.Encode(prompt).Select(i => (long)i).ToArray();
    var generated = untrained.Generate(tensor(ids, [1, ids.Length]), null, new GenerationOptions { MaxNewTokens = 4, StopTokenIds = [50256] });
    return tokenizer.Decode(generated[0].data<long>().Skip(ids.Length).Select(i => (int)i).TakeWhile(i => i != 50256));
}

/// <summary>An instruction row.</summary>
internal sealed class Row
{
    public string Prompt { get; set; } = "";
    public string Response { get; set; } = "";
}

/// <summary>A row with the fine-tuned model's columns.</summary>
internal sealed class ScoredRow
{
    public string Prompt { get; set; } = "";
    public string Response { get; set; } = "";
    public string Completion { get; set; } = "";
    public float Loss { get; set; }
    public float Perplexity { get; set; }
}
