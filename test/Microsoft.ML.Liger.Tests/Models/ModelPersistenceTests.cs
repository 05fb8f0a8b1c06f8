using Liger.Kernels.Runtime;
using Microsoft.ML.Liger.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.Models;

/// <summary>Building, saving and loading models: round trips, initialisation, and errors that name what is wrong.</summary>
[TestClass]
public sealed class ModelPersistenceTests
{
    private static string TempFolder() => Directory.CreateTempSubdirectory("liger-model-").FullName;

    [TestMethod]
    [DynamicData(nameof(TinyModels.Cases), typeof(TinyModels))]
    public void SaveThenLoadIsBitExact(string name)
    {
        string folder = TempFolder();
        try
        {
            using var model = new CausalLM(TinyModels.All[name]);
            TinyModels.Randomize(model, Random.Shared.Next());
            model.SavePretrained(folder);
            using var loaded = CausalLM.FromPretrained(folder);
            Assert.AreEqual(model.Config.ModelType, loaded.Config.ModelType);
            var saved = model.state_dict();
            var reloaded = loaded.state_dict();
            CollectionAssert.AreEquivalent(saved.Keys.ToArray(), reloaded.Keys.ToArray(), "state-dict names");
            foreach (var (key, tensor) in saved)
                Assert.IsTrue(tensor.eq(reloaded[key]).all().item<bool>(), $"{key} differs after the round trip");
            if (model.Config.TieWordEmbeddings)
                using (no_grad())
                {
                    // One tensor, not a copy: a change through the embeddings shows in the head.
                    loaded.state_dict()["model.embed_tokens.weight"].PlusInPlace(1.0);
                    Assert.IsTrue(loaded.LmHeadWeight.eq(saved["model.embed_tokens.weight"].Plus(1.0)).all().item<bool>(), "tied embeddings must stay one tensor");
                }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [TestMethod]
    public void LoadsInTheStoredDtypeOrTheRequestedOne()
    {
        string folder = TempFolder();
        try
        {
            using (var model = new CausalLM(TinyModels.All["qwen3"], new CausalLMOptions { DType = ScalarType.BFloat16 }))
                model.SavePretrained(folder);
            using var stored = CausalLM.FromPretrained(folder);
            Assert.AreEqual(ScalarType.BFloat16, stored.LmHeadWeight.dtype);
            using var widened = CausalLM.FromPretrained(folder, new CausalLMOptions { DType = ScalarType.Float32 });
            Assert.AreEqual(ScalarType.Float32, widened.LmHeadWeight.dtype);
            Assert.IsTrue(widened.LmHeadWeight.to(ScalarType.BFloat16).eq(stored.LmHeadWeight).all().item<bool>());
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [TestMethod]
    public void RandomInitialisationIsHuggingFacesAndSeeded()
    {
        var config = TinyModels.All["gemma"];
        using var a = new CausalLM(config, new CausalLMOptions { Seed = 5 });
        using var b = new CausalLM(config, new CausalLMOptions { Seed = 5 });
        using var c = new CausalLM(config, new CausalLMOptions { Seed = 6 });
        var (sa, sb, sc) = (a.state_dict(), b.state_dict(), c.state_dict());
        var embed = sa["model.embed_tokens.weight"];
        Assert.IsTrue(embed.eq(sb["model.embed_tokens.weight"]).all().item<bool>(), "same seed, same weights");
        Assert.IsFalse(embed.eq(sc["model.embed_tokens.weight"]).all().item<bool>(), "another seed, other weights");
        Assert.AreEqual(0.02, embed[1..].std().item<float>(), 0.002, "normal(0, initializer_range)");
        Assert.AreEqual(0.0, embed[0].abs().max().item<float>(), "the padding token's embedding is zero");
        Assert.AreEqual(0.0, sa["model.norm.weight"].abs().max().item<float>(), "Gemma stores norm weights minus one: zero");
        using var llama = new CausalLM(TinyModels.All["llama_bias"]);
        Assert.AreEqual(1.0, llama.state_dict()["model.layers.0.input_layernorm.weight"].mean().item<float>());
        Assert.AreEqual(0.0, llama.state_dict()["model.layers.0.self_attn.q_proj.bias"].abs().max().item<float>());
    }

    [TestMethod]
    public void UnknownModelTypeListsTheSupportedOnes()
    {
        var config = TinyModels.All["llama2"].With(new Dictionary<string, object?> { ["model_type"] = "bert" });
        var error = Assert.ThrowsExactly<NotSupportedException>(() => new CausalLM(config));
        StringAssert.Contains(error.Message, "\"bert\"");
        foreach (var type in ModelFamilies.SupportedModelTypes)
            StringAssert.Contains(error.Message, type);
    }

    [TestMethod]
    public void BadConfigFieldsAreNamed()
    {
        void Expect(string field, object? value, string mentioned)
        {
            var error = Assert.ThrowsExactly<InvalidDataException>(() =>
                new CausalLM(TinyModels.All["llama2"].With(new Dictionary<string, object?> { [field] = value })));
            StringAssert.Contains(error.Message, mentioned);
        }
        Expect("num_key_value_heads", 3, "num_key_value_heads");
        Expect("layer_types", new[] { "full_attention" }, "layer_types");
        Expect("rope_scaling", new Dictionary<string, object> { ["rope_type"] = "yarn", ["factor"] = 4.0 }, "yarn");
        Expect("hidden_size", "wide", "hidden_size");
        Assert.ThrowsExactly<InvalidDataException>(() => CausalLMConfig.Parse("{\"model_type\": \"llama\"}"));
    }

    [TestMethod]
    public void CheckpointsThatDoNotFitNameTheTensor()
    {
        string folder = TempFolder();
        try
        {
            using (var model = new CausalLM(TinyModels.All["llama2"]))
                model.SavePretrained(folder);
            // Same weights, a config with a wider MLP: every MLP projection is mis-shaped.
            var wider = CausalLMConfig.Load(folder).With(new Dictionary<string, object?> { ["intermediate_size"] = 96 });
            wider.Save(folder);
            var error = Assert.ThrowsExactly<WeightMismatchException>(() => CausalLM.FromPretrained(folder));
            StringAssert.Contains(error.Message, "model.layers.0.mlp.gate_proj.weight");
            // A config that unties the head needs lm_head.weight, which a tied save does not have.
            File.Delete(Path.Combine(folder, "model.safetensors"));
            using (var tied = new CausalLM(TinyModels.All["llama3"]))
                tied.SavePretrained(folder);
            CausalLMConfig.Load(folder).With(new Dictionary<string, object?> { ["tie_word_embeddings"] = false }).Save(folder);
            error = Assert.ThrowsExactly<WeightMismatchException>(() => CausalLM.FromPretrained(folder));
            StringAssert.Contains(error.Message, "lm_head.weight");
            Assert.ThrowsExactly<DirectoryNotFoundException>(() => CausalLM.FromPretrained(Path.Combine(folder, "missing")));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
