using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.ML.Liger.Models;

namespace Microsoft.ML.Liger.Tests.Models;

/// <summary>config.json that lies or is malformed: refused before a model is built, naming the file and the field.</summary>
[TestClass]
public sealed class PretrainedConfigTests
{
    private string _folder = "";

    [TestInitialize]
    public void CreateFolder() => _folder = LoadingFixtures.CopyInto(LoadingFixtures.TinyModel(), Directory.CreateTempSubdirectory("liger-config-").FullName);

    [TestCleanup]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    private string ConfigPath => Path.Combine(_folder, "config.json");

    // The fixture (llama3) has 2 layers, vocab 200, hidden 64, 4 heads × 16, 2 kv heads, intermediate 88.
    [TestMethod]
    [DataRow("num_hidden_layers", 100000L, "2")]
    [DataRow("num_hidden_layers", 3L, "2")]
    [DataRow("vocab_size", 8000000L, "200")]
    [DataRow("vocab_size", 201L, "200")]
    [DataRow("intermediate_size", 1000000L, "88")]
    [DataRow("num_key_value_heads", 4L, "32")]
    public void LyingSize_FailsBeforeTheModelIsBuilt_NamingFileFieldAndCheckpointValue(string field, long lie, string checkpointValue)
    {
        LoadingFixtures.SetField(ConfigPath, field, lie);
        using var process = Process.GetCurrentProcess();
        long peakBefore = process.PeakWorkingSet64;
        var clock = Stopwatch.StartNew();

        var error = Assert.ThrowsExactly<WeightMismatchException>(() => CausalLM.FromPretrained(_folder));

        clock.Stop();
        process.Refresh();
        StringAssert.Contains(error.Message, ConfigPath);
        StringAssert.Contains(error.Message, field);
        StringAssert.Contains(error.Message, lie.ToString(System.Globalization.CultureInfo.InvariantCulture));
        StringAssert.Contains(error.Message, $"the weights have {checkpointValue}");
        // Before the fix the 100000-layer lie took 15.7 GiB and 176 s; a header check takes neither.
        Assert.IsLessThan(256L << 20, process.PeakWorkingSet64 - peakBefore, "peak working set grew: the lie was allocated");
        Assert.IsLessThan(20.0, clock.Elapsed.TotalSeconds);
        Assert.IsLessThan(20, error.Message.Split('\n').Length, "long lists are capped");
    }

    [TestMethod]
    [DataRow("hidden_size", "64.5", "whole number")]
    [DataRow("num_hidden_layers", "2.0000001", "whole number")]
    [DataRow("num_hidden_layers", "1e30", "too large")]
    [DataRow("num_hidden_layers", "4294967298", "at most")]
    [DataRow("rms_norm_eps", "\"NaN\"", "finite")]
    [DataRow("rms_norm_eps", "\"-Infinity\"", "finite")]
    [DataRow("max_position_embeddings", "0", "at least 1")]
    [DataRow("num_attention_heads", "[4]", "must be a number")]
    [DataRow("tie_word_embeddings", "\"true\"", "true or false")]
    [DataRow("hidden_act", "7", "must be a string")]
    [DataRow("model_type", "{\"name\": \"llama\"}", "must be a string")]
    [DataRow("dtype", "\"float8_e4m3fn\"", "float32")]
    [DataRow("layer_types", "[\"full_attention\", 2]", "list of strings")]
    [DataRow("eos_token_id", "[1, 2.5]", "whole number")]
    [DataRow("bos_token_id", "\"one\"", "must be a number")]
    [DataRow("query_pre_attn_scalar", "-16", "positive")]
    [DataRow("num_local_experts", "0", "at least 1")]
    [DataRow("partial_rotary_factor", "1.5", "(0, 1]")]
    [DataRow("rope_parameters", "\"yarn\"", "must be an object")]
    [DataRow("rope_scaling", "4", "must be an object")]
    [DataRow("rope_parameters", "{\"rope_type\": \"default\", \"rope_theta\": -1}", "positive")]
    [DataRow("rope_parameters", "{\"rope_type\": 3}", "not a string")]
    public void MalformedField_IsRefusedNamingFileAndField(string field, string rawJson, string reason)
    {
        LoadingFixtures.SetRaw(ConfigPath, field, rawJson);

        var error = Assert.ThrowsExactly<InvalidDataException>(() => CausalLM.FromPretrained(_folder));

        StringAssert.Contains(error.Message, ConfigPath);
        StringAssert.Contains(error.Message, $"field '{field}'");
        StringAssert.Contains(error.Message, reason);
    }

    [TestMethod]
    public void WholeNumberWrittenAsFloat_StillLoads()
    {
        // transformers writes ints, but 64.0 is the same size and some tools write it so.
        LoadingFixtures.SetRaw(ConfigPath, "hidden_size", "64.0");
        using var model = CausalLM.FromPretrained(_folder);
        Assert.AreEqual(64L, model.Config.HiddenSize);
        CollectionAssert.AreEqual(new long[] { 200, 64 }, model.LmHeadWeight.shape);
    }
}
