using Liger.Kernels.Runtime;
using Microsoft.ML.Liger.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.Models;

/// <summary>
/// Generation against references that share none of its cache logic: greedy decoding by re-running the
/// whole sequence at every step, prompts run one at a time instead of left-padded together, and the
/// sampling filters against the distributions they should leave.
/// </summary>
[TestClass]
public sealed class GenerationTests
{
    public TestContext TestContext { get; set; } = null!;

    private static CausalLM Model(string name, int seed)
    {
        var model = new CausalLM(TinyModels.All[name], new CausalLMOptions { Kernels = LigerKernelOptions.None });
        TinyModels.Randomize(model, seed, std: 0.3);
        return model;
    }

    [TestMethod]
    [DataRow("llama3"), DataRow("mistral"), DataRow("gemma2"), DataRow("gemma3_text"), DataRow("mixtral"), DataRow("phi3"), DataRow("glm4")]
    public void GreedyWithCacheEqualsRecomputingTheWholeSequence(string name)
    {
        int seed = Random.Shared.Next();
        TestContext.WriteLine($"seed {seed}");
        using var model = Model(name, seed);
        var prompt = randint(3, TinyModels.Vocab, [2, 4], dtype: ScalarType.Int64, generator: new Generator((ulong)seed));
        const int steps = 9; // beyond the sliding window of 5
        var generated = model.Generate(prompt, options: new GenerationOptions { MaxNewTokens = steps, StopTokenIds = [] });

        var expected = prompt;
        using (no_grad())
            for (int i = 0; i < steps; i++)
            {
                using var output = model.forward(new CausalLMInput { InputIds = expected });
                expected = cat([expected, output.Logits![.., -1, ..].argmax(-1).unsqueeze(1)], 1);
            }
        CollectionAssert.AreEqual(expected.data<long>().ToArray(), generated.data<long>().ToArray());
    }

    [TestMethod]
    public void LeftPaddedBatchEqualsPromptsOneByOne()
    {
        int seed = Random.Shared.Next();
        TestContext.WriteLine($"seed {seed}");
        using var model = Model("qwen2", seed);
        var generator = new Generator((ulong)seed);
        var shortPrompt = randint(3, TinyModels.Vocab, [1, 3], dtype: ScalarType.Int64, generator: generator);
        var longPrompt = randint(3, TinyModels.Vocab, [1, 6], dtype: ScalarType.Int64, generator: generator);
        var options = new GenerationOptions { MaxNewTokens = 5, StopTokenIds = [] };
        var batch = cat([cat([zeros(1, 3, dtype: ScalarType.Int64), shortPrompt], 1), longPrompt], 0);
        var mask = cat([cat([zeros(1, 3, dtype: ScalarType.Int64), ones(1, 3, dtype: ScalarType.Int64)], 1), ones(1, 6, dtype: ScalarType.Int64)], 0);

        var together = model.Generate(batch, mask, options);
        var alone = new[] { model.Generate(shortPrompt, options: options), model.Generate(longPrompt, options: options) };
        CollectionAssert.AreEqual(alone[0][0, 3..].data<long>().ToArray(), together[0, 6..].data<long>().ToArray(), "short prompt");
        CollectionAssert.AreEqual(alone[1][0, 6..].data<long>().ToArray(), together[1, 6..].data<long>().ToArray(), "long prompt");
    }

    [TestMethod]
    public void SequencesStopAtAStopTokenAndArePaddedAfterIt()
    {
        int seed = Random.Shared.Next();
        using var model = Model("llama2", seed);
        var prompt = randint(3, TinyModels.Vocab, [2, 4], dtype: ScalarType.Int64, generator: new Generator((ulong)seed));
        var free = model.Generate(prompt, options: new GenerationOptions { MaxNewTokens = 6, StopTokenIds = [] });
        long stop = free[0, 5].item<long>(); // the second token row 0 produces
        var stopped = model.Generate(prompt, options: new GenerationOptions { MaxNewTokens = 6, StopTokenIds = [stop], PadTokenId = 0 });
        var row = stopped[0].data<long>().ToArray();
        int end = Array.IndexOf(row, stop, 4);
        Assert.IsLessThanOrEqualTo(5, end, "row 0 must stop at its first stop token");
        Assert.IsTrue(row.Skip(end + 1).All(t => t == 0), $"after the stop token row 0 must be padding: {string.Join(",", row)}");
        CollectionAssert.AreEqual(free[0, ..(end + 1)].data<long>().ToArray(), row.Take(end + 1).ToArray(), "tokens before the stop are unchanged");
    }

    [TestMethod]
    public void TopKOfOneAndTinyTopPAreGreedy()
    {
        int seed = Random.Shared.Next();
        using var model = Model("gemma", seed);
        var prompt = randint(3, TinyModels.Vocab, [3, 4], dtype: ScalarType.Int64, generator: new Generator((ulong)seed));
        var greedy = model.Generate(prompt, options: new GenerationOptions { MaxNewTokens = 6, StopTokenIds = [] });
        var topK = model.Generate(prompt, options: new GenerationOptions { MaxNewTokens = 6, StopTokenIds = [], DoSample = true, TopK = 1, Temperature = 5 });
        var topP = model.Generate(prompt, options: new GenerationOptions { MaxNewTokens = 6, StopTokenIds = [], DoSample = true, TopP = 1e-6 });
        CollectionAssert.AreEqual(greedy.data<long>().ToArray(), topK.data<long>().ToArray(), "top-k 1");
        CollectionAssert.AreEqual(greedy.data<long>().ToArray(), topP.data<long>().ToArray(), "top-p 1e-6");
    }

    [TestMethod]
    public void SamplingFollowsTheFilteredDistribution()
    {
        // Probabilities 0.4, 0.3, 0.2, 0.1 over four tokens; 40000 draws per setting.
        var logits = log(tensor(new[] { 0.1f, 0.4f, 0.2f, 0.3f })).unsqueeze(0).expand(40000, 4).contiguous();
        var generator = new Generator((ulong)Random.Shared.Next());
        double[] Frequencies(GenerationOptions o)
        {
            var draws = Generation.Sample(logits, o, generator);
            return Enumerable.Range(0, 4).Select(t => draws.EqualTo(t).sum().item<long>() / 40000.0).ToArray();
        }
        void Expect(double[] expected, double[] actual, string what)
        {
            for (int t = 0; t < 4; t++)
                Assert.AreEqual(expected[t], actual[t], 0.015, $"{what}: token {t} frequency {actual[t]:F4}, expected {expected[t]:F4}");
        }
        Expect([0.1, 0.4, 0.2, 0.3], Frequencies(new GenerationOptions()), "plain");
        Expect([0, 0.4 / 0.7, 0, 0.3 / 0.7], Frequencies(new GenerationOptions { TopK = 2 }), "top-k 2");
        Expect([0, 0.4 / 0.9, 0.2 / 0.9, 0.3 / 0.9], Frequencies(new GenerationOptions { TopP = 0.85 }), "top-p 0.85");
        var hot = new[] { 0.1, 0.4, 0.2, 0.3 }.Select(p => Math.Pow(p, 0.5)).ToArray();
        Expect(hot.Select(p => p / hot.Sum()).ToArray(), Frequencies(new GenerationOptions { Temperature = 2 }), "temperature 2");
    }

    [TestMethod]
    public void SameSeedSameSample()
    {
        using var model = Model("llama2", Random.Shared.Next());
        var prompt = randint(3, TinyModels.Vocab, [2, 3], dtype: ScalarType.Int64);
        var options = new GenerationOptions { MaxNewTokens = 8, DoSample = true, Seed = 7, StopTokenIds = [] };
        CollectionAssert.AreEqual(model.Generate(prompt, options: options).data<long>().ToArray(), model.Generate(prompt, options: options).data<long>().ToArray());
    }

    [TestMethod]
    public void BadOptionsNameTheOption()
    {
        using var model = Model("llama2", 1);
        var prompt = ones(1, 2, dtype: ScalarType.Int64);
        foreach (var (options, name) in new[] { (new GenerationOptions { Temperature = 0 }, "Temperature"), (new GenerationOptions { TopP = 0 }, "TopP"),
                     (new GenerationOptions { TopK = -1 }, "TopK"), (new GenerationOptions { MaxNewTokens = -1 }, "MaxNewTokens") })
            Assert.AreEqual(name, Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => model.Generate(prompt, options: options)).ParamName);
        Assert.AreEqual("inputIds", Assert.ThrowsExactly<ArgumentException>(() => model.Generate(ones(2, dtype: ScalarType.Int64))).ParamName);
    }
}
