using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.PreferenceAlignment;
using Microsoft.ML.Liger.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.PreferenceAlignment;

/// <summary>
/// The estimator's first-step loss against the loss written out eagerly from Forward's full logits (log-softmax, the
/// response tokens' log-probs, the paper's formula): checks the row layout, the shift, the masks, the hidden states, and
/// Granite's logits scaling and Gemma 2's final soft cap on the fused path.
/// </summary>
[TestClass]
public sealed class PreferenceLossCheckTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [DataRow("llama", PreferenceAlgorithm.Orpo), DataRow("granite", PreferenceAlgorithm.Cpo), DataRow("gemma2", PreferenceAlgorithm.SimPo), DataRow("gemma2", PreferenceAlgorithm.Orpo)]
    public void FirstStepLoss_EqualsTheFormulaOnForwardsLogits(string family, PreferenceAlgorithm algorithm)
    {
        int seed = Random.Shared.Next();
        TestContext.WriteLine($"seed {seed}");
        var ml = new MLContext(seed: 1);
        var pairs = PreferenceFixtures.Pairs(13, seed);
        var options = PreferenceFixtures.Options(algorithm, o =>
        {
            o.BatchSize = 16; // every pair in the first step, whose loss then averages over all of them
            o.MaxSteps = 1;
            o.Beta = 0.3;
            o.ArchitectureOverrides = new Dictionary<string, object?>(o.ArchitectureOverrides!).Concat(Family(family)).ToDictionary(kv => kv.Key, kv => kv.Value);
        });
        double expected = double.NaN;
        var estimator = ml.Liger().PreferenceAlignment(options);
        estimator.InspectModels = (when, policy, _) =>
        {
            if (when == "start")
                expected = Eager(policy, options.Tokenizer!, pairs, algorithm, beta: 0.3);
        };
        using var model = estimator.Fit(ml.Data.LoadFromEnumerable(pairs));
        if (family == "granite") Assert.AreEqual(3.0, model.Model.LogitsScaling);
        if (family == "gemma2") Assert.AreEqual(2.5, model.Model.FinalLogitSoftcap);
        double actual = model.Info.StepLosses[0];
        TestContext.WriteLine($"{family} {algorithm}: estimator {actual:R}, eager {expected:R}");
        Assert.AreEqual(expected, actual, 1e-6 * Math.Max(1, Math.Abs(expected)), $"{family} {algorithm} first-step loss (seed {seed})");
    }

    private static Dictionary<string, object?> Family(string family) => family switch
    {
        "granite" => new() { ["model_type"] = "granite", ["logits_scaling"] = 3.0, ["embedding_multiplier"] = 2.0, ["residual_multiplier"] = 0.5, ["attention_multiplier"] = 0.25 },
        "gemma2" => new()
        {
            ["model_type"] = "gemma2", ["hidden_activation"] = "gelu_pytorch_tanh", ["final_logit_softcapping"] = 2.5, ["attn_logit_softcapping"] = 10.0,
            ["query_pre_attn_scalar"] = 16, ["sliding_window"] = 4, ["layer_types"] = new[] { "full_attention" },
        },
        _ => new(),
    };

    /// <summary>The loss over all pairs from full logits: sequence log-probs by log-softmax, then ORPO's, CPO's or SimPO's formula in float64.</summary>
    private static double Eager(CausalLM model, CausalLMTokenizer tokenizer, IReadOnlyList<PairRow> pairs, PreferenceAlgorithm algorithm, double beta)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var encoder = new ExampleEncoder(tokenizer, useChatTemplate: false, systemPrompt: null);
        (double Sum, int Count) Score(string prompt, string response)
        {
            var example = encoder.PromptResponse(prompt, response);
            var ids = tensor(example.Tokens.Select(i => (long)i).ToArray(), [1, example.Tokens.Length]);
            using var output = model.forward(new CausalLMInput { InputIds = ids, ReturnLogits = true });
            var logProbs = output.Logits![0].to(ScalarType.Float64).log_softmax(-1);
            double sum = 0;
            for (int t = example.PromptLength; t < example.Tokens.Length; t++)
                sum += logProbs[t - 1, example.Tokens[t]].item<double>();
            return (sum, example.Tokens.Length - example.PromptLength);
        }
        static double LogSigmoid(double x) => x >= 0 ? -Math.Log(1 + Math.Exp(-x)) : x - Math.Log(1 + Math.Exp(x));
        double preference = 0, nllSum = 0;
        int nllTokens = 0;
        foreach (var pair in pairs)
        {
            var chosen = Score(pair.Prompt, pair.Chosen);
            var rejected = Score(pair.Prompt, pair.Rejected);
            nllSum -= chosen.Sum;
            nllTokens += chosen.Count;
            double c = chosen.Sum / chosen.Count, r = rejected.Sum / rejected.Count;
            preference += algorithm switch
            {
                // log odds(p) = log p − log(1 − p) with p the mean per-token probability (ORPO's paper and code).
                PreferenceAlgorithm.Orpo => -beta * LogSigmoid(c - r - (Math.Log(-double.ExpM1(c)) - Math.Log(-double.ExpM1(r)))),
                PreferenceAlgorithm.Cpo => -LogSigmoid(beta * (chosen.Sum - rejected.Sum)),
                PreferenceAlgorithm.SimPo => -LogSigmoid(beta * (c - r) - 0.5),
                _ => throw new ArgumentOutOfRangeException(nameof(algorithm)),
            };
        }
        bool nll = algorithm is PreferenceAlgorithm.Orpo or PreferenceAlgorithm.Cpo;
        return preference / pairs.Count + (nll ? nllSum / nllTokens : 0);
    }
}
