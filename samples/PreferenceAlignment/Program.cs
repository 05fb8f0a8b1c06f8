// Aligns a small causal LM to a preference with ORPO, through ML.NET, on the CPU, with Liger's chunked fused-linear
// ORPO loss. The model is asked "Which word do you like best: lion, blue, pear, Spain, seven?" and the preferred answer
// is always the listed fruit (the rejected one another listed word). Starts from the main sample's saved model
// (samples/FineTuneCausalLM writes it to $TMPDIR/liger-fine-tuned) when there is one, else from a fresh tiny Llama; no
// downloads. Prints the held-out preference margin and accuracy before and after, and a few generations.
//   dotnet run -c Release --project samples/PreferenceAlignment [-- --steps N] [--from FOLDER] [--out FOLDER]
using System.Diagnostics;
using FineTuneCausalLM;
using Microsoft.ML;
using Microsoft.ML.Liger;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.PreferenceAlignment;
using Microsoft.ML.Liger.Training;
using PreferenceAlignment;

NativeSettings.Apply(); // before the first tensor: see NativeSettings.cs
int steps = SampleArguments.Int(args, "--steps", 200);
string from = SampleArguments.Text(args, "--from", Path.Combine(Path.GetTempPath(), "liger-fine-tuned"));
string output = SampleArguments.Text(args, "--out", Path.Combine(Path.GetTempPath(), "liger-orpo"));
var clock = Stopwatch.StartNew();
var ml = new MLContext(seed: 0);

var (train, heldOut) = PreferenceTask.Generate(trainCount: 4000, heldOutCount: 200, seed: 2);
Console.WriteLine($"Task: {train.Count} training and {heldOut.Count} held-out preference pairs, e.g.");
Console.WriteLine($"  {train[0].Prompt.Replace("\n", "\\n")}  chosen:{train[0].Chosen}  rejected:{train[0].Rejected}");

// 1. The starting model: the main sample's, or a fresh tiny Llama written to a folder the same way.
bool fineTuned = File.Exists(Path.Combine(from, CausalLMModelInfo.FileName));
string start = fineTuned ? from : Path.Combine(Path.GetTempPath(), "liger-orpo-start");
if (fineTuned)
{
    Console.WriteLine($"Starting from the main sample's fine-tuned model in {from}.");
}
else
{
    Console.WriteLine($"No model in {from} (run samples/FineTuneCausalLM first to start from it): starting from a fresh tiny-llama.");
    var gpt2 = CausalLMTokenizer.Gpt2();
    using var fresh = new CausalLM(CausalLMArchitectures.Create("tiny-llama", gpt2.VocabularySize));
    fresh.InitializeWeights(0);
    fresh.SavePretrained(start);
    gpt2.SavePretrained(start);
}

// 2. Before: held-out margin log p(chosen) − log p(rejected), accuracy (margin > 0), and how often the greedy answer is the fruit.
(double Margin, double Accuracy, double Fruit) before, after;
using (var startModel = fineTuned ? ml.Liger().LoadCausalLM(start) : new CausalLMTransformer(CausalLM.FromPretrained(start), CausalLMTokenizer.FromPretrained(start)))
{
    before = Evaluate(startModel);
    Console.WriteLine($"Before ORPO: held-out margin {before.Margin:+0.00;-0.00} nats, accuracy {before.Accuracy:P1}, answers the fruit {before.Fruit:P1}");
}

// 3. ORPO: the chosen answer's NLL plus β times the odds-ratio term, on Liger's chunked fused-linear loss (no logits kept).
var options = new PreferenceAlignmentOptions
{
    BaseModelPath = start,
    MaxContextLength = 40,
    BatchSize = 16,
    MaxSteps = steps,
    LearningRate = 5e-3,
    WarmupSteps = 10,
    Schedule = LearningRateSchedule.Cosine,
    MinLearningRateRatio = 0.1,
    LoggingInterval = 20,
    Seed = 0,
    Device = "cpu",
    Generation = new GenerationOptions { MaxNewTokens = 3 },
    OnProgress = p => Console.WriteLine($"  step {p.Step,3}/{p.TotalSteps}: loss {p.Loss:F3}, rewards/accuracies {p.Metrics?["rewards/accuracies"]:P0}, " +
                                        $"rewards/margins {p.Metrics?["rewards/margins"]:F3}, nll {p.Metrics?["nll_loss"]:F3}, {p.TokensPerSecond:F0} tokens/s"),
};
Console.WriteLine($"ORPO for {steps} steps of {options.BatchSize} pairs on the CPU ({Environment.ProcessorCount} cores):");
var rows = ml.Data.LoadFromEnumerable(train.Select(p => new PairRow { Prompt = p.Prompt, Chosen = p.Chosen, Rejected = p.Rejected }));
using var aligned = ml.Liger().Orpo(options).Fit(rows);

// 4. After, and a few generations (the transformer's Generated column would give the same).
after = Evaluate(aligned);
Console.WriteLine($"After ORPO:  held-out margin {after.Margin:+0.00;-0.00} nats, accuracy {after.Accuracy:P1}, answers the fruit {after.Fruit:P1}");
foreach (var pair in heldOut.Take(4))
    Console.WriteLine($"  {pair.Prompt.Replace("\n", " ")} ->{aligned.Generate(pair.Prompt)}   [margin {Margin(aligned, pair):+0.00;-0.00}]");
aligned.Save(output);
Console.WriteLine($"Saved to {output} (liger_model.json records the alignment: {aligned.Info.Alignment!.Algorithm}, beta {aligned.Info.Alignment.Beta}).");

Console.WriteLine();
Console.WriteLine($"Held-out ({heldOut.Count} pairs)      before    after");
Console.WriteLine($"  preference margin (nats)  {before.Margin,7:+0.00;-0.00}  {after.Margin,7:+0.00;-0.00}");
Console.WriteLine($"  preference accuracy       {before.Accuracy,7:P1}  {after.Accuracy,7:P1}");
Console.WriteLine($"  greedy answer is the fruit{before.Fruit,7:P1}  {after.Fruit,7:P1}");
Console.WriteLine($"Done in {clock.Elapsed.TotalSeconds:F0} s.");
return after.Accuracy > before.Accuracy && after.Margin > before.Margin ? 0 : 1;

(double Margin, double Accuracy, double Fruit) Evaluate(CausalLMTransformer model)
{
    var margins = heldOut.Select(p => Margin(model, p)).ToList();
    double fruit = heldOut.Count(p => PreferenceTask.AnswersTheFruit(p, model.Generate(p.Prompt, new GenerationOptions { MaxNewTokens = 3 }))) / (double)heldOut.Count;
    return (margins.Average(), margins.Count(m => m > 0) / (double)margins.Count, fruit);
}

static double Margin(CausalLMTransformer model, PreferencePair pair) =>
    model.LogProbability(pair.Prompt, pair.Chosen) - model.LogProbability(pair.Prompt, pair.Rejected);

/// <summary>A preference row.</summary>
internal sealed class PairRow
{
    public string Prompt { get; set; } = "";
    public string Chosen { get; set; } = "";
    public string Rejected { get; set; } = "";
}
