using Microsoft.ML.Liger.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.Models;

/// <summary>
/// Our independent oracle: tiny random checkpoints that Hugging Face transformers itself built and saved
/// (test/oracle/build_hf_fixtures.py), with the logits, loss, router loss and greedy generation transformers
/// computed for them. Each is loaded with our code, eager and with Liger's kernels, and must reproduce them
/// (float32, relative error under 1e-4). The committed fixtures come from transformers 5.17; on the GPU host
/// LIGER_HF_FIXTURES points at fixtures built there and then, and the test also runs on CUDA.
/// </summary>
[TestClass]
public sealed class HuggingFaceOracleTests
{
    private const double Tolerance = 1e-4;

    public TestContext TestContext { get; set; } = null!;

    private static string FixtureRoot =>
        Environment.GetEnvironmentVariable("LIGER_HF_FIXTURES") is { Length: > 0 } root ? root
            : Path.Combine(AppContext.BaseDirectory, "Fixtures", "hf-tiny");

    public static IEnumerable<object[]> Cases =>
        Directory.Exists(FixtureRoot)
            ? Directory.GetDirectories(FixtureRoot).Where(d => File.Exists(Path.Combine(d, "oracle.safetensors")))
                .Select(d => new object[] { Path.GetFileName(d) }).OrderBy(c => (string)c[0])
            : [];

    [TestMethod]
    public void EveryFamilyHasAFixture()
    {
        var cases = Cases.Select(c => (string)c[0]).ToArray();
        var families = cases.Select(c => CausalLMConfig.Load(Path.Combine(FixtureRoot, c)).ModelType).ToHashSet();
        CollectionAssert.IsSubsetOf(ModelFamilies.SupportedModelTypes.ToArray(), families.ToArray(),
            $"fixtures under {FixtureRoot} cover {string.Join(", ", families)}");
    }

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void EagerMatchesTransformers(string name) => Check(name, LigerKernelOptions.None, CPU);

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void LigerMatchesTransformers(string name) => Check(name, new LigerKernelOptions(), CPU);

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void LigerOnCudaMatchesTransformers(string name)
    {
        if (!cuda.is_available())
            Assert.Inconclusive("no CUDA device");
        Check(name, new LigerKernelOptions(), CUDA);
    }

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void RopeFrequenciesMatchTransformers(string name)
    {
        string folder = Path.Combine(FixtureRoot, name);
        var config = CausalLMConfig.Load(folder);
        var expected = SafetensorsWeights.ReadTensors(Path.Combine(folder, "oracle.safetensors"));
        var tables = expected.Where(e => e.Key.StartsWith("rope.", StringComparison.Ordinal)).ToArray();
        Assert.IsNotEmpty(tables, "the fixture has no rope tables");
        foreach (var (key, table) in tables)
        {
            // rope.model.rotary_emb.inv_freq, or one table per layer type (Gemma 3): <type>_inv_freq.
            string type = key.Contains("sliding_attention", StringComparison.Ordinal) ? "sliding_attention" : "full_attention";
            using var ours = config.RopeFor(type).InverseFrequencies(config.HeadDim);
            Assert.IsLessThan(1e-6, Relative(table, ours), $"{name}: {key}");
        }
    }

    private void Check(string name, LigerKernelOptions kernels, Device device)
    {
        string folder = Path.Combine(FixtureRoot, name);
        var expected = SafetensorsWeights.ReadTensors(Path.Combine(folder, "oracle.safetensors"));
        using var model = CausalLM.FromPretrained(folder, new CausalLMOptions { Kernels = kernels, Device = device });
        var ids = expected["input_ids"].to(device);
        var mask = expected["attention_mask"].to(device);
        var labels = expected["labels"].to(device);

        using (no_grad())
        {
            bool router = expected.ContainsKey("aux_loss");
            using var output = model.forward(new CausalLMInput
            {
                InputIds = ids, AttentionMask = mask, Labels = labels, ReturnLogits = true, OutputRouterLogits = router,
            });
            // Real tokens only: a padding query that sees no real key (inside a sliding window of padding) has
            // no defined output; transformers' eager attention spreads it uniformly, ours lets it see itself.
            var real = expected["attention_mask"].to(ScalarType.Bool);
            double logitError = Relative(expected["logits"][real], output.Logits!.cpu()[real]);
            double lossError = Relative(expected[expected.ContainsKey("loss_with_aux") ? "loss_with_aux" : "loss"], output.Loss!);
            TestContext.WriteLine($"{name} {(kernels == LigerKernelOptions.None ? "eager" : "liger")} on {device.type}: logits {logitError:E2}, loss {lossError:E2} relative error");
            Assert.IsLessThan(Tolerance, logitError, $"{name}: logits relative error {logitError:E3}");
            Assert.IsLessThan(Tolerance, lossError, $"{name}: loss relative error {lossError:E3}");
            if (expected.TryGetValue("aux_loss", out var aux))
                Assert.IsLessThan(Tolerance, Relative(aux, output.AuxLoss!), $"{name}: router load-balancing loss");
            using var unmasked = model.forward(new CausalLMInput { InputIds = ids });
            Assert.IsLessThan(Tolerance, Relative(expected["logits_unmasked"], unmasked.Logits!), $"{name}: logits without a mask");
        }
        var generated = model.Generate(expected["generate_prompt"].to(device), options: new GenerationOptions { MaxNewTokens = 8, StopTokenIds = [] });
        CollectionAssert.AreEqual(expected["generated"].data<long>().ToArray(), generated.cpu().data<long>().ToArray(), $"{name}: greedy generation");
    }

    /// <summary>‖actual − expected‖ / ‖expected‖ in float64.</summary>
    private static double Relative(Tensor expected, Tensor actual)
    {
        using var e = expected.to(ScalarType.Float64, CPU);
        using var a = actual.detach().to(ScalarType.Float64, CPU);
        CollectionAssert.AreEqual(e.shape, a.shape, "shape");
        return (a - e).norm().item<double>() / Math.Max(e.norm().item<double>(), 1e-30);
    }
}
