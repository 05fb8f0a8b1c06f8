using Liger.Kernels.Runtime;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Liger.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests;

[TestClass]
public sealed class SafetensorsWeightsTests
{
    private string _folder = "";

    [TestInitialize]
    public void CreateFolder() => _folder = Directory.CreateTempSubdirectory("liger-ckpt-").FullName;

    [TestCleanup]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    // ---- round trips ----

    [TestMethod]
    [DataRow(ScalarType.Float32)]
    [DataRow(ScalarType.BFloat16)]
    [DataRow(ScalarType.Float16)]
    public void Save_ThenLoadIntoFreshModule_IsBitExact(ScalarType dtype)
    {
        using var saved = new TinyCausalLm(new TinyLmConfig()).to(dtype);
        SafetensorsWeights.Save(saved, _folder);

        using var loaded = new TinyCausalLm(new TinyLmConfig()).to(dtype);
        AssertDiffers(Snapshot(saved), loaded);
        var result = SafetensorsWeights.Load(loaded, _folder);

        AssertBitEqual(Snapshot(saved), loaded);
        CollectionAssert.AreEquivalent(saved.state_dict().Keys.ToList(), result.Loaded.ToList());
        Assert.AreEqual(0, result.Missing.Count + result.Unexpected.Count + result.Ignored.Count);
        Assert.IsTrue(File.Exists(Path.Combine(_folder, "model.safetensors")));
        Assert.IsFalse(File.Exists(Path.Combine(_folder, "model.safetensors.index.json")));
    }

    [TestMethod]
    public void LoadAndSave_OnCudaModule_KeepDeviceAndTieAndAreBitExact()
    {
        if (!cuda.is_available())
            Assert.Inconclusive("No CUDA device: the device-keeping path runs on a GPU host.");
        var config = new TinyLmConfig { TieEmbeddings = true };
        using var saved = new TinyCausalLm(config).to(ScalarType.BFloat16);
        SafetensorsWeights.Save(saved, _folder);
        using var loaded = new TinyCausalLm(config).to(ScalarType.BFloat16).to(CUDA);

        SafetensorsWeights.Load(loaded, _folder, new WeightLoadOptions { DType = ScalarType.BFloat16 });

        Assert.IsTrue(loaded.state_dict().Values.All(t => t.device_type == DeviceType.CUDA));
        AssertBitEqual(Snapshot(saved), loaded);
        string again = Path.Combine(_folder, "again");
        SafetensorsWeights.Save(loaded, again);
        CollectionAssert.AreEqual(File.ReadAllBytes(Path.Combine(_folder, "model.safetensors")),
            File.ReadAllBytes(Path.Combine(again, "model.safetensors")), "a CUDA module saves the same bytes, its tie once");
    }

    [TestMethod]
    public void Save_AboveMaxShardBytes_WritesHfShardsAndIndex_ThatLoadBitExact()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig(Layers: 3));
        var bytesByName = saved.state_dict().ToDictionary(e => e.Key, e => e.Value.NumberOfElements * e.Value.ElementSize);
        const long maxShard = 2000; // the 37x13 fp32 embeddings (1924 bytes) fit alone; most shards hold several tensors
        SafetensorsWeights.Save(saved, _folder, new WeightSaveOptions { MaxShardBytes = maxShard });

        Assert.IsFalse(File.Exists(Path.Combine(_folder, "model.safetensors")));
        using var index = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(_folder, "model.safetensors.index.json")));
        var indexMetadata = index.RootElement.GetProperty("metadata");
        Assert.AreEqual(bytesByName.Values.Sum(), indexMetadata.GetProperty("total_size").GetInt64());
        Assert.AreEqual(saved.state_dict().Values.Sum(t => t.NumberOfElements), indexMetadata.GetProperty("total_parameters").GetInt64());
        var weightMap = index.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
        CollectionAssert.AreEquivalent(bytesByName.Keys.ToList(), weightMap.Keys.ToList());

        var shardFiles = weightMap.Values.Distinct().Order().ToList();
        Assert.IsGreaterThan(2, shardFiles.Count);
        for (int i = 0; i < shardFiles.Count; i++)
        {
            Assert.AreEqual($"model-{i + 1:D5}-of-{shardFiles.Count:D5}.safetensors", shardFiles[i]);
            var header = ParsedFile.Read(Path.Combine(_folder, shardFiles[i]));
            var inShard = weightMap.Where(e => e.Value == shardFiles[i]).Select(e => e.Key).ToList();
            CollectionAssert.AreEquivalent(inShard, header.TensorNames.ToList());
            long shardBytes = inShard.Sum(name => bytesByName[name]);
            Assert.IsTrue(shardBytes <= maxShard || inShard.Count == 1, $"{shardFiles[i]} holds {shardBytes} bytes");
        }
        Assert.AreEqual(0, Directory.GetDirectories(_folder).Length, "no staging folder is left behind");

        using var loaded = new TinyCausalLm(new TinyLmConfig(Layers: 3));
        SafetensorsWeights.Load(loaded, _folder);
        AssertBitEqual(Snapshot(saved), loaded);
    }

    [TestMethod]
    public void Load_WithDType_ConvertsModuleAndValuesAsTorchDoes()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Save(saved, _folder);
        var expected = saved.state_dict().ToDictionary(e => e.Key,
            e => Bytes(e.Value.is_floating_point() ? e.Value.to(ScalarType.BFloat16) : e.Value));

        using var loaded = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Load(loaded, _folder, new WeightLoadOptions { DType = ScalarType.BFloat16 });

        var state = loaded.state_dict();
        Assert.AreEqual(ScalarType.BFloat16, state["model.layers.1.mlp.down_proj.weight"].dtype);
        Assert.AreEqual(ScalarType.Int64, state["model.position_ids"].dtype, "integer buffers keep their type");
        AssertBitEqual(expected, loaded);
    }

    [TestMethod]
    public void Load_Bf16FileIntoFp32Module_WidensExactly()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig()).to(ScalarType.BFloat16);
        SafetensorsWeights.Save(saved, _folder);

        using var loaded = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Load(loaded, _folder);

        var expected = saved.state_dict().ToDictionary(e => e.Key,
            e => Bytes(e.Value.is_floating_point() ? e.Value.to(ScalarType.Float32) : e.Value));
        Assert.AreEqual(ScalarType.Float32, loaded.state_dict()["lm_head.weight"].dtype);
        AssertBitEqual(expected, loaded);
    }

    [TestMethod]
    public void Save_WithDType_StoresFloatingTensorsInThatType()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Save(saved, _folder, new WeightSaveOptions { DType = ScalarType.Float16 });

        var info = SafetensorsWeights.ReadIndex(_folder);
        Assert.AreEqual("F16", info["model.embed_tokens.weight"].StoredDType);
        Assert.AreEqual("I64", info["model.position_ids"].StoredDType);
        using var loaded = new TinyCausalLm(new TinyLmConfig()).to(ScalarType.Float16);
        SafetensorsWeights.Load(loaded, _folder);
        AssertBitEqual(saved.state_dict().ToDictionary(e => e.Key,
            e => Bytes(e.Value.is_floating_point() ? e.Value.to(ScalarType.Float16) : e.Value)), loaded);
    }

    // ---- names: ignored, tied, skipped, non-strict ----

    [TestMethod]
    public void Load_CheckpointWithRotaryInvFreq_IgnoresItByDefault_AndRejectsItWhenNotIgnored()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig());
        var state = saved.state_dict();
        const string invFreq = "model.layers.1.self_attn.rotary_emb.inv_freq";
        state[invFreq] = rand(6);
        TorchSharp.PyBridge.Safetensors.SaveStateDict(Path.Combine(_folder, "model.safetensors"), state);

        using var loaded = new TinyCausalLm(new TinyLmConfig());
        var result = SafetensorsWeights.Load(loaded, _folder);
        CollectionAssert.AreEqual(new[] { invFreq }, result.Ignored.ToList());
        AssertBitEqual(Snapshot(saved), loaded);

        var error = Assert.ThrowsExactly<WeightMismatchException>(() =>
            SafetensorsWeights.Load(loaded, _folder, new WeightLoadOptions { IgnoredNames = [] }));
        CollectionAssert.AreEqual(new[] { invFreq }, error.UnexpectedNames.ToList());
        StringAssert.Contains(error.Message, invFreq);
    }

    [TestMethod]
    public void Save_TiedEmbeddings_StoresTheTensorOnce_AndLoadFillsBothNames()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig { TieEmbeddings = true });
        SafetensorsWeights.Save(saved, _folder);

        var info = SafetensorsWeights.ReadIndex(_folder);
        Assert.IsTrue(info.ContainsKey("model.embed_tokens.weight"));
        Assert.IsFalse(info.ContainsKey("lm_head.weight"));

        using var loaded = new TinyCausalLm(new TinyLmConfig { TieEmbeddings = true });
        var result = SafetensorsWeights.Load(loaded, _folder);
        AssertBitEqual(Snapshot(saved), loaded);
        CollectionAssert.Contains(result.Loaded.ToList(), "lm_head.weight");
        using (no_grad())
            loaded.model.embed_tokens.weight!.PlusInPlace(1.0);
        CollectionAssert.AreEqual(Bytes(loaded.model.embed_tokens.weight!), Bytes(loaded.lm_head.weight), "the load keeps the tie");
    }

    [TestMethod]
    public void Load_TiedEmbeddingsWithDTypeConversion_FillsBothNames()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig { TieEmbeddings = true });
        SafetensorsWeights.Save(saved, _folder);

        using var loaded = new TinyCausalLm(new TinyLmConfig { TieEmbeddings = true });
        SafetensorsWeights.Load(loaded, _folder, new WeightLoadOptions { DType = ScalarType.BFloat16 });

        var expected = Bytes(saved.model.embed_tokens.weight!.to(ScalarType.BFloat16));
        CollectionAssert.AreEqual(expected, Bytes(loaded.lm_head.weight));
        CollectionAssert.AreEqual(expected, Bytes(loaded.model.embed_tokens.weight!));
    }

    [TestMethod]
    public void Load_StoredLmHeadOfTiedModule_IsIgnoredWhenListed()
    {
        // An untied save stores lm_head.weight; a tied module asked to ignore it takes the embeddings' values.
        using var saved = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Save(saved, _folder);
        using var loaded = new TinyCausalLm(new TinyLmConfig { TieEmbeddings = true });

        var result = SafetensorsWeights.Load(loaded, _folder,
            new WeightLoadOptions { IgnoredNames = ["lm_head.weight", "*.rotary_emb.inv_freq"] });

        CollectionAssert.AreEqual(new[] { "lm_head.weight" }, result.Ignored.ToList());
        CollectionAssert.AreEqual(Bytes(saved.model.embed_tokens.weight!), Bytes(loaded.lm_head.weight));
    }

    [TestMethod]
    public void Save_SkippedNames_AreNotWritten()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Save(saved, _folder, new WeightSaveOptions { SkippedNames = ["lm_head.weight", "*.q_proj.bias"] });

        var names = SafetensorsWeights.ReadIndex(_folder).Keys.ToList();
        var expected = saved.state_dict().Keys.Where(n => n != "lm_head.weight" && !n.EndsWith(".q_proj.bias")).ToList();
        CollectionAssert.AreEquivalent(expected, names);
    }

    [TestMethod]
    public void Load_NonStrict_ReportsMissingAndUnexpected_AndLeavesMissingAsTheyWere()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig(Layers: 2));
        SafetensorsWeights.Save(saved, _folder, new WeightSaveOptions { SkippedNames = ["model.norm.weight"] });
        using var loaded = new TinyCausalLm(new TinyLmConfig(Layers: 1));
        var normBefore = Bytes(loaded.model.norm.weight);

        var result = SafetensorsWeights.Load(loaded, _folder, new WeightLoadOptions { Strict = false });

        CollectionAssert.AreEqual(new[] { "model.norm.weight" }, result.Missing.ToList());
        Assert.IsTrue(result.Unexpected.All(n => n.StartsWith("model.layers.1.")));
        Assert.AreEqual(saved.state_dict().Keys.Count(n => n.StartsWith("model.layers.1.")), result.Unexpected.Count);
        CollectionAssert.AreEqual(normBefore, Bytes(loaded.model.norm.weight));
        CollectionAssert.AreEqual(Bytes(saved.model.layers[0].mlp.gate_proj.weight), Bytes(loaded.model.layers[0].mlp.gate_proj.weight));
    }

    // ---- load errors ----

    [TestMethod]
    public void Load_CheckpointLackingTensors_NamesThem_UpToTen()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig(Layers: 1));
        SafetensorsWeights.Save(saved, _folder);
        using var loaded = new TinyCausalLm(new TinyLmConfig(Layers: 3));

        var error = Assert.ThrowsExactly<WeightMismatchException>(() => SafetensorsWeights.Load(loaded, _folder));

        var expected = loaded.state_dict().Keys.Where(n => n.StartsWith("model.layers.1.") || n.StartsWith("model.layers.2.")).ToList();
        CollectionAssert.AreEquivalent(expected, error.MissingNames.ToList());
        Assert.IsGreaterThan(10, expected.Count);
        foreach (var name in error.MissingNames.Take(10))
            StringAssert.Contains(error.Message, name);
        StringAssert.Contains(error.Message, $"and {expected.Count - 10} more");
        StringAssert.Contains(error.Message, _folder);
    }

    [TestMethod]
    public void Load_CheckpointWithExtraTensors_Strict_NamesThem()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig(Layers: 2));
        SafetensorsWeights.Save(saved, _folder);
        using var loaded = new TinyCausalLm(new TinyLmConfig(Layers: 1));

        var error = Assert.ThrowsExactly<WeightMismatchException>(() => SafetensorsWeights.Load(loaded, _folder));

        CollectionAssert.AreEquivalent(saved.state_dict().Keys.Where(n => n.StartsWith("model.layers.1.")).ToList(), error.UnexpectedNames.ToList());
        StringAssert.Contains(error.Message, "model.layers.1.self_attn.q_proj.bias");
        Assert.AreEqual(0, error.MissingNames.Count);
    }

    [TestMethod]
    public void Load_MisShapedTensor_NamesItWithBothShapes_AndLeavesModuleUntouched()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig(Intermediate: 17));
        SafetensorsWeights.Save(saved, _folder);
        using var loaded = new TinyCausalLm(new TinyLmConfig(Intermediate: 19));
        var before = Snapshot(loaded);

        var error = Assert.ThrowsExactly<WeightMismatchException>(() => SafetensorsWeights.Load(loaded, _folder));

        var line = error.Mismatches.Single(m => m.Contains("'model.layers.0.mlp.gate_proj.weight'"));
        StringAssert.Contains(line, "[19, 13]");
        StringAssert.Contains(line, "[17, 13]");
        Assert.AreEqual(4, error.Mismatches.Count, "gate_proj and down_proj of both layers");
        StringAssert.Contains(error.Message, line);
        AssertBitEqual(before, loaded);
    }

    [TestMethod]
    public void Load_UnsupportedStoredDType_NamesTensorAndDType()
    {
        using var module = new TinyCausalLm(new TinyLmConfig());
        var tensors = module.state_dict().Where(e => e.Key != "model.norm.weight")
            .Select(e => (e.Key, Dtype: e.Value.dtype == ScalarType.Int64 ? "I64" : "F32", e.Value.shape, Bytes(e.Value))).ToList();
        tensors.Add(("model.norm.weight", "F8_E4M3", [13], new byte[13]));
        RawSafetensors.Write(Path.Combine(_folder, "model.safetensors"), tensors);

        var error = Assert.ThrowsExactly<WeightMismatchException>(() => SafetensorsWeights.Load(module, _folder));

        StringAssert.Contains(error.Mismatches.Single(), "'model.norm.weight'");
        StringAssert.Contains(error.Mismatches.Single(), "F8_E4M3");
    }

    [TestMethod]
    public void Load_FloatStoredIntoIntegerBuffer_IsAMismatch()
    {
        using var module = new TinyCausalLm(new TinyLmConfig());
        var state = module.state_dict();
        state["model.position_ids"] = rand(1, 7);
        TorchSharp.PyBridge.Safetensors.SaveStateDict(Path.Combine(_folder, "model.safetensors"), state);

        var error = Assert.ThrowsExactly<WeightMismatchException>(() => SafetensorsWeights.Load(module, _folder));

        StringAssert.Contains(error.Mismatches.Single(), "'model.position_ids'");
        StringAssert.Contains(error.Mismatches.Single(), "Int64");
    }

    [TestMethod]
    [DataRow("I32")]
    [DataRow("U8")]
    [DataRow("I16")]
    public void Load_IntegerHeaderOverFloatWeight_IsAMismatch_NamingFileTensorAndDType(string dtype)
    {
        // Same shape, bytes sized for the lying dtype (for I32, the float weight's own bytes): only the header's
        // dtype is wrong. Converting its integers to floats would load garbage without a word.
        using var module = new TinyCausalLm(new TinyLmConfig());
        var tensors = module.state_dict()
            .Select(e => (e.Key, Dtype: e.Value.dtype == ScalarType.Int64 ? "I64" : "F32", e.Value.shape, Bytes(e.Value))).ToList();
        int index = tensors.FindIndex(t => t.Key == "model.norm.weight");
        int size = dtype switch { "I32" => 4, "I16" => 2, _ => 1 };
        tensors[index] = (tensors[index].Key, dtype, tensors[index].shape, tensors[index].Item4[..(13 * size)]);
        string file = Path.Combine(_folder, "model.safetensors");
        RawSafetensors.Write(file, tensors);

        var error = Assert.ThrowsExactly<WeightMismatchException>(() => SafetensorsWeights.Load(module, _folder));

        StringAssert.Contains(error.Mismatches.Single(), "'model.norm.weight'");
        StringAssert.Contains(error.Mismatches.Single(), dtype);
        StringAssert.Contains(error.Mismatches.Single(), file);
    }

    [TestMethod]
    public void Load_MissingFolder_NamesThePath()
    {
        string missing = Path.Combine(_folder, "no-such-model");
        using var module = new TinyCausalLm(new TinyLmConfig());
        var error = Assert.ThrowsExactly<DirectoryNotFoundException>(() => SafetensorsWeights.Load(module, missing));
        StringAssert.Contains(error.Message, missing);
    }

    [TestMethod]
    public void Load_FolderWithoutCheckpoint_NamesFolderAndExpectedFiles()
    {
        File.WriteAllText(Path.Combine(_folder, "config.json"), "{}");
        using var module = new TinyCausalLm(new TinyLmConfig());
        var error = Assert.ThrowsExactly<FileNotFoundException>(() => SafetensorsWeights.Load(module, _folder));
        StringAssert.Contains(error.Message, _folder);
        StringAssert.Contains(error.Message, "model.safetensors");
    }

    [TestMethod]
    [DataRow(5L, "shorter than the 8-byte header length")]
    [DataRow(100L, "is not a safetensors file: its header length exceeds its size")]
    [DataRow(-3L, "outside the")] // the last tensor's data is cut short
    public void Load_TruncatedFile_NamesTheFile(long keep, string reason)
    {
        using var saved = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Save(saved, _folder);
        string file = Path.Combine(_folder, "model.safetensors");
        var bytes = File.ReadAllBytes(file);
        File.WriteAllBytes(file, bytes[..(int)(keep >= 0 ? keep : bytes.Length + keep)]);

        using var loaded = new TinyCausalLm(new TinyLmConfig());
        var error = Assert.ThrowsExactly<WeightFormatException>(() => SafetensorsWeights.Load(loaded, _folder));

        Assert.AreEqual(file, error.Path);
        StringAssert.Contains(error.Message, file);
        StringAssert.Contains(error.Message, reason);
        if (keep < 0)
        {
            var header = ParsedFile.Read(file, bytes);
            Assert.AreEqual(header.LastTensorName, error.TensorName);
            StringAssert.Contains(error.Message, header.LastTensorName);
        }
    }

    [TestMethod]
    [DataRow("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]", "not valid UTF-8 JSON", null)]
    [DataRow("[1, 2]", "not an object", null)]
    [DataRow("{\"a\": {\"dtype\": \"F32\", \"shape\": [2]}}", "dtype, shape and data_offsets", "a")]
    [DataRow("{\"a\": {\"dtype\": \"Q7\", \"shape\": [2], \"data_offsets\": [0, 8]}}", "'Q7'", "a")]
    [DataRow("{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", "non-negative", "a")]
    [DataRow("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 800]}}", "outside the 8-byte data section", "a")]
    [DataRow("{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", "needs 12 bytes", "a")]
    [DataRow("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", "overlapping", "b")]
    [DataRow("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", "extra bytes", null)]
    [DataRow("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", "twice", "a")]
    [DataRow("{\"a\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 8]}}", "non-negative integer", "a")]
    [DataRow("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 0]}}", "begin <= end", "a")]
    [DataRow("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8, 8]}}", "begin <= end", "a")]
    [DataRow("{\"a\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4], \"data_offsets\": [0, 8]}}", "too large", "a")]
    [DataRow("{\"__metadata__\": {\"format\": 1}, \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", "__metadata__", null)]
    public void Load_CorruptHeader_NamesFileAndTensor(string header, string reason, string? tensor)
    {
        string file = Path.Combine(_folder, "model.safetensors");
        RawSafetensors.WriteHeader(file, header, new byte[8]);
        using var module = new TinyCausalLm(new TinyLmConfig());

        var error = Assert.ThrowsExactly<WeightFormatException>(() => SafetensorsWeights.Load(module, _folder));

        StringAssert.Contains(error.Message, file);
        StringAssert.Contains(error.Message, reason);
        Assert.AreEqual(tensor, error.TensorName);
        if (tensor is not null)
            StringAssert.Contains(error.Message, $"'{tensor}'");
    }

    [TestMethod]
    public void Load_IndexNamingMissingShard_NamesIndexAndShard()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Save(saved, _folder, new WeightSaveOptions { MaxShardBytes = 2000 });
        string shard = Directory.GetFiles(_folder, "model-00002-of-*.safetensors").Single();
        File.Delete(shard);

        using var loaded = new TinyCausalLm(new TinyLmConfig());
        var error = Assert.ThrowsExactly<FileNotFoundException>(() => SafetensorsWeights.Load(loaded, _folder));

        StringAssert.Contains(error.Message, Path.Combine(_folder, "model.safetensors.index.json"));
        StringAssert.Contains(error.Message, shard);
        Assert.AreEqual(shard, error.FileName);
    }

    [TestMethod]
    public void Load_IndexNamingTensorItsShardLacks_NamesIt()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Save(saved, _folder, new WeightSaveOptions { MaxShardBytes = 2000 });
        string indexPath = Path.Combine(_folder, "model.safetensors.index.json");
        // Point lm_head.weight at a shard that does not hold it.
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(indexPath))!;
        var map = node["weight_map"]!.AsObject();
        string wrong = map.Select(e => e.Value!.GetValue<string>()).First(s => s != map["lm_head.weight"]!.GetValue<string>());
        map["lm_head.weight"] = wrong;
        File.WriteAllText(indexPath, node.ToJsonString());

        using var loaded = new TinyCausalLm(new TinyLmConfig());
        var error = Assert.ThrowsExactly<WeightFormatException>(() => SafetensorsWeights.Load(loaded, _folder));

        Assert.AreEqual("lm_head.weight", error.TensorName);
        StringAssert.Contains(error.Message, wrong);
        StringAssert.Contains(error.Message, indexPath);
    }

    [TestMethod]
    [DataRow("../elsewhere.safetensors")]
    [DataRow("/etc/passwd")]
    [DataRow("shards/../../elsewhere.safetensors")]
    [DataRow("./model.safetensors")]
    public void Load_IndexEscapingTheFolder_IsRejected(string shard)
    {
        File.WriteAllText(Path.Combine(_folder, "model.safetensors.index.json"),
            $"{{\"metadata\": {{\"total_size\": 4}}, \"weight_map\": {{\"lm_head.weight\": \"{shard}\"}}}}");
        using var module = new TinyCausalLm(new TinyLmConfig());
        var error = Assert.ThrowsExactly<WeightFormatException>(() => SafetensorsWeights.Load(module, _folder));
        StringAssert.Contains(error.Message, shard);
        StringAssert.Contains(error.Message, "not a file inside the model folder");
        Assert.AreEqual("lm_head.weight", error.TensorName);
    }

    // ---- saving: atomicity and folder contents ----

    [TestMethod]
    [DataRow(WeightSaveOptions.DefaultMaxShardBytes)]
    [DataRow(2000L)]
    public void Save_FailingMidWrite_LeavesPreviousCheckpointIntact(long maxShardBytes)
    {
        var options = new WeightSaveOptions { MaxShardBytes = maxShardBytes };
        using var good = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Save(good, _folder, options);
        File.WriteAllText(Path.Combine(_folder, "config.json"), "{\"model_type\": \"tiny\"}");
        var filesBefore = FolderBytes();

        // model.norm.weight lives on the meta device: it has a shape (so the header is written) but no data.
        using var failing = new TinyCausalLm(new TinyLmConfig { NormOnMeta = true });
        Assert.ThrowsExactly<ExternalException>(() => SafetensorsWeights.Save(failing, _folder, options));

        var filesAfter = FolderBytes();
        CollectionAssert.AreEquivalent(filesBefore.Keys.ToList(), filesAfter.Keys.ToList(), "no file added or removed, no staging left");
        foreach (var (name, bytes) in filesBefore)
            CollectionAssert.AreEqual(bytes, filesAfter[name], name);
        using var loaded = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Load(loaded, _folder);
        AssertBitEqual(Snapshot(good), loaded);
    }

    [TestMethod]
    [DataRow(2000L, WeightSaveOptions.DefaultMaxShardBytes)]
    [DataRow(WeightSaveOptions.DefaultMaxShardBytes, 2000L)]
    [DataRow(2000L, 2000L)]
    [DataRow(2000L, 3000L)]
    public void Save_OverPreviousCheckpoint_ReplacesWeightFilesOnly(long firstShardBytes, long secondShardBytes)
    {
        using var first = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Save(first, _folder, new WeightSaveOptions { MaxShardBytes = firstShardBytes });
        File.WriteAllText(Path.Combine(_folder, "config.json"), "{}");
        File.WriteAllText(Path.Combine(_folder, "tokenizer.json"), "{}");

        using var second = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Save(second, _folder, new WeightSaveOptions { MaxShardBytes = secondShardBytes });

        var files = Directory.GetFileSystemEntries(_folder).Select(Path.GetFileName).Order().ToList();
        var expected = new List<string?> { "config.json", "tokenizer.json" };
        if (secondShardBytes == WeightSaveOptions.DefaultMaxShardBytes)
            expected.Add("model.safetensors");
        else
        {
            expected.Add("model.safetensors.index.json");
            expected.AddRange(JsonDocument.Parse(File.ReadAllBytes(Path.Combine(_folder, "model.safetensors.index.json")))
                .RootElement.GetProperty("weight_map").EnumerateObject().Select(p => p.Value.GetString()).Distinct());
        }
        CollectionAssert.AreEquivalent(expected, files);
        using var loaded = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Load(loaded, _folder);
        AssertBitEqual(Snapshot(second), loaded);
    }

    [TestMethod]
    public void Save_RemovesAbandonedStagingFolder_ThatLoadIgnores()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Save(saved, _folder);
        // What a save killed before its commit leaves: a staging folder with a partial file.
        string abandoned = Path.Combine(_folder, ".liger-save-0123456789abcdef");
        Directory.CreateDirectory(abandoned);
        File.WriteAllBytes(Path.Combine(abandoned, "model.safetensors"), new byte[3]);

        using var loaded = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Load(loaded, _folder);
        AssertBitEqual(Snapshot(saved), loaded);

        SafetensorsWeights.Save(saved, _folder);
        Assert.IsFalse(Directory.Exists(abandoned));
    }

    [TestMethod]
    public void Load_IndexPointingIntoStagingFolder_Loads()
    {
        // The state a sharded save interrupted right after its commit leaves behind: the index names the
        // shards inside the staging folder. It is a complete checkpoint, and the next save tidies it up.
        using var saved = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Save(saved, _folder, new WeightSaveOptions { MaxShardBytes = 2000 });
        string staging = ".liger-save-feedfacefeedface";
        Directory.CreateDirectory(Path.Combine(_folder, staging));
        string indexPath = Path.Combine(_folder, "model.safetensors.index.json");
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(indexPath))!;
        var map = node["weight_map"]!.AsObject();
        foreach (var shard in map.Select(e => e.Value!.GetValue<string>()).Distinct().ToList())
            File.Move(Path.Combine(_folder, shard), Path.Combine(_folder, staging, shard));
        foreach (var name in map.Select(e => e.Key).ToList())
            map[name] = $"{staging}/{map[name]!.GetValue<string>()}";
        File.WriteAllText(indexPath, node.ToJsonString());

        using var loaded = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Load(loaded, _folder);
        AssertBitEqual(Snapshot(saved), loaded);

        using var next = new TinyCausalLm(new TinyLmConfig());
        SafetensorsWeights.Save(next, _folder, new WeightSaveOptions { MaxShardBytes = 2000 });
        Assert.AreEqual(0, Directory.GetDirectories(_folder).Length);
        SafetensorsWeights.Load(loaded, _folder);
        AssertBitEqual(Snapshot(next), loaded);
    }

    [TestMethod]
    public void Save_BadOptions_NameTheOption()
    {
        using var module = new TinyCausalLm(new TinyLmConfig());
        var shard = Assert.ThrowsExactly<ArgumentException>(() =>
            SafetensorsWeights.Save(module, _folder, new WeightSaveOptions { MaxShardBytes = 0 }));
        StringAssert.Contains(shard.Message, "MaxShardBytes");
        var dtype = Assert.ThrowsExactly<ArgumentException>(() =>
            SafetensorsWeights.Save(module, _folder, new WeightSaveOptions { DType = ScalarType.Int32 }));
        StringAssert.Contains(dtype.Message, "DType");
        var format = Assert.ThrowsExactly<ArgumentException>(() => SafetensorsWeights.Save(module, _folder,
            new WeightSaveOptions { Metadata = new Dictionary<string, string> { ["format"] = "np" } }));
        StringAssert.Contains(format.Message, "format");
        Assert.AreEqual(0, Directory.GetFileSystemEntries(_folder).Length);
    }

    // ---- the bytes on disk ----

    [TestMethod]
    public void Save_WritesTheSafetensorsLayout_MetadataDTypesAndAlignment()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig());
        saved.model.layers[0].to(ScalarType.BFloat16);
        saved.model.layers[1].to(ScalarType.Float16);
        SafetensorsWeights.Save(saved, _folder, new WeightSaveOptions
        {
            Metadata = new Dictionary<string, string> { ["step"] = "12" },
        });
        string file = Path.Combine(_folder, "model.safetensors");
        var parsed = ParsedFile.Read(file);

        Assert.AreEqual(0, parsed.HeaderLength % 8, "the data section starts 8-aligned");
        var metadata = parsed.Root.GetProperty("__metadata__").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
        CollectionAssert.AreEquivalent(new Dictionary<string, string?> { ["format"] = "pt", ["step"] = "12" }, metadata);

        var sizes = new Dictionary<string, int> { ["F32"] = 4, ["BF16"] = 2, ["F16"] = 2, ["I64"] = 8 };
        var expectedDType = new Dictionary<ScalarType, string>
        {
            [ScalarType.Float32] = "F32", [ScalarType.BFloat16] = "BF16", [ScalarType.Float16] = "F16", [ScalarType.Int64] = "I64",
        };
        long covered = 0;
        foreach (var (name, tensor) in saved.state_dict())
        {
            var entry = parsed.Root.GetProperty(name);
            string dtype = entry.GetProperty("dtype").GetString()!;
            Assert.AreEqual(expectedDType[tensor.dtype], dtype, name);
            CollectionAssert.AreEqual(tensor.shape, entry.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray(), name);
            long begin = entry.GetProperty("data_offsets")[0].GetInt64(), end = entry.GetProperty("data_offsets")[1].GetInt64();
            Assert.AreEqual(0, begin % sizes[dtype], $"{name} starts aligned to its element size");
            Assert.AreEqual(tensor.NumberOfElements * sizes[dtype], end - begin, name);
            CollectionAssert.AreEqual(Bytes(tensor), parsed.Data[(int)begin..(int)end], name);
            covered += end - begin;
        }
        Assert.AreEqual(parsed.Data.Length, covered, "the tensors tile the data section");
        Assert.AreEqual(saved.state_dict().Count + 1, parsed.Root.EnumerateObject().Count());
    }

    [TestMethod]
    public void Save_FileReadByIndependentReader_IsBitExact()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig());
        saved.model.layers[1].to(ScalarType.BFloat16);
        SafetensorsWeights.Save(saved, _folder);

        var read = TorchSharp.PyBridge.Safetensors.LoadStateDict(Path.Combine(_folder, "model.safetensors"));

        var expected = Snapshot(saved);
        CollectionAssert.AreEquivalent(expected.Keys.ToList(), read.Keys.ToList());
        foreach (var (name, tensor) in read)
        {
            Assert.AreEqual(saved.state_dict()[name].dtype, tensor.dtype, name);
            CollectionAssert.AreEqual(expected[name], Bytes(tensor), name);
        }
    }

    [TestMethod]
    public void Load_FileWrittenByIndependentWriter_IsBitExact()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig());
        saved.model.layers[0].to(ScalarType.Float16);
        TorchSharp.PyBridge.Safetensors.SaveStateDict(Path.Combine(_folder, "model.safetensors"), saved.state_dict());

        using var loaded = new TinyCausalLm(new TinyLmConfig());
        loaded.model.layers[0].to(ScalarType.Float16);
        SafetensorsWeights.Load(loaded, _folder);

        AssertBitEqual(Snapshot(saved), loaded);
    }

    [TestMethod]
    public void ReadIndex_DescribesEveryTensorAndItsShard()
    {
        using var saved = new TinyCausalLm(new TinyLmConfig());
        saved.model.norm.to(ScalarType.BFloat16);
        SafetensorsWeights.Save(saved, _folder, new WeightSaveOptions { MaxShardBytes = 2000 });
        var weightMap = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(_folder, "model.safetensors.index.json")))
            .RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);

        var info = SafetensorsWeights.ReadIndex(_folder);

        foreach (var (name, tensor) in saved.state_dict())
        {
            Assert.AreEqual(tensor.dtype, info[name].DType, name);
            CollectionAssert.AreEqual(tensor.shape, info[name].Shape.ToArray(), name);
            Assert.AreEqual(tensor.NumberOfElements * tensor.ElementSize, info[name].ByteLength, name);
            Assert.AreEqual(Path.Combine(_folder, weightMap[name]), info[name].FilePath, name);
        }
        Assert.AreEqual("BF16", info["model.norm.weight"].StoredDType);
        Assert.AreEqual(saved.state_dict().Count, info.Count);
    }

    // ---- files transformers wrote (the oracle fixtures) ----

    [TestMethod]
    public void Load_CheckpointsWrittenByTransformers_MatchKeysListAndIndependentReader()
    {
        foreach (var folder in OracleFixtures.CaseFolders())
        {
            var keys = OracleFixtures.ReadKeys(folder);
            var info = SafetensorsWeights.ReadIndex(folder);
            CollectionAssert.AreEquivalent(keys.Keys.ToList(), info.Keys.ToList(), folder);
            foreach (var (name, (shape, dtype)) in keys)
            {
                CollectionAssert.AreEqual(shape, info[name].Shape.ToArray(), $"{folder}: {name}");
                Assert.AreEqual(dtype, info[name].StoredDType, $"{folder}: {name}");
            }

            using var module = new StateDictModule(keys.ToDictionary(e => e.Key,
                e => zeros(e.Value.Shape, SafetensorsDTypeOf(e.Value.DType))));
            SafetensorsWeights.Load(module, folder);
            var reference = TorchSharp.PyBridge.Safetensors.LoadStateDict(Path.Combine(folder, "model.safetensors"));
            foreach (var (name, tensor) in reference)
                CollectionAssert.AreEqual(Bytes(tensor), Bytes(module.state_dict()[name]), $"{folder}: {name}");
        }
    }

    [TestMethod]
    public void Save_OfTransformersCheckpoint_IsByteIdenticalToTransformersFile()
    {
        foreach (var folder in OracleFixtures.CaseFolders())
        {
            var info = SafetensorsWeights.ReadIndex(folder);
            // Shuffled, so the file order must come from the writer's own layout rule, not from the input.
            using var module = new StateDictModule(info.OrderBy(_ => Random.Shared.Next()).ToDictionary(e => e.Key,
                e => zeros(e.Value.Shape.ToArray(), e.Value.DType!.Value)));
            SafetensorsWeights.Load(module, folder);
            string copy = Path.Combine(_folder, Path.GetFileName(folder));

            SafetensorsWeights.Save(module, copy);

            CollectionAssert.AreEqual(File.ReadAllBytes(Path.Combine(folder, "model.safetensors")),
                File.ReadAllBytes(Path.Combine(copy, "model.safetensors")), folder);
        }
    }

    [TestMethod]
    public void Load_ShardedBf16CheckpointWrittenByTransformers_MatchesReference()
    {
        // save_pretrained(max_shard_size="15KB") of a tied bf16 Llama, and the same tensors written by
        // safetensors' save_file (Fixtures/make_hf_sharded_checkpoint.py).
        string folder = Path.Combine(AppContext.BaseDirectory, "Fixtures", "hf-llama-bf16-sharded");
        var reference = TorchSharp.PyBridge.Safetensors.LoadStateDict(Path.Combine(folder, "reference.safetensors"));

        var info = SafetensorsWeights.ReadIndex(folder);
        CollectionAssert.AreEquivalent(reference.Keys.ToList(), info.Keys.ToList());
        Assert.AreEqual(3, info.Values.Select(i => i.FilePath).Distinct().Count());
        Assert.IsTrue(info.Values.All(i => i.StoredDType == "BF16"));

        using var module = new StateDictModule(reference.ToDictionary(e => e.Key, e => zeros_like(e.Value)));
        SafetensorsWeights.Load(module, folder);
        foreach (var (name, tensor) in reference)
            CollectionAssert.AreEqual(Bytes(tensor), Bytes(module.state_dict()[name]), name);
    }

    [TestMethod]
    public void Save_MixedDTypeTensors_LaysOutDataAsSafetensorsDoes()
    {
        // oracle.safetensors was written by safetensors' save_file (int64 and fp32 tensors, no metadata).
        foreach (var folder in OracleFixtures.CaseFolders())
        {
            string original = Path.Combine(folder, "oracle.safetensors");
            var reference = TorchSharp.PyBridge.Safetensors.LoadStateDict(original);
            using var module = new StateDictModule(reference.OrderBy(_ => Random.Shared.Next()).ToDictionary(e => e.Key, e => e.Value));
            string copy = Path.Combine(_folder, Path.GetFileName(folder));

            SafetensorsWeights.Save(module, copy);

            var expected = ParsedFile.Read(original);
            var actual = ParsedFile.Read(Path.Combine(copy, "model.safetensors"));
            CollectionAssert.AreEqual(expected.Data, actual.Data, folder);
            CollectionAssert.AreEqual(expected.TensorNames.ToList(), actual.TensorNames.ToList(), $"{folder}: header order");
            foreach (var name in expected.TensorNames)
                Assert.AreEqual(expected.Root.GetProperty(name).GetRawText(), actual.Root.GetProperty(name).GetRawText(), $"{folder}: {name}");
        }
    }

    // ---- helpers ----

    private Dictionary<string, byte[]> FolderBytes() =>
        Directory.GetFileSystemEntries(_folder, "*", SearchOption.AllDirectories)
            .ToDictionary(p => Path.GetRelativePath(_folder, p), p => File.Exists(p) ? File.ReadAllBytes(p) : []);

    private static ScalarType SafetensorsDTypeOf(string dtype) => dtype switch
    {
        "F32" => ScalarType.Float32, "BF16" => ScalarType.BFloat16, "F16" => ScalarType.Float16, "I64" => ScalarType.Int64,
        _ => throw new NotSupportedException(dtype),
    };

    private static byte[] Bytes(Tensor tensor)
    {
        using var cpu = tensor.detach().cpu().contiguous();
        return cpu.bytes.ToArray();
    }

    private static Dictionary<string, byte[]> Snapshot(nn.Module module) =>
        module.state_dict().ToDictionary(e => e.Key, e => Bytes(e.Value));

    private static void AssertBitEqual(Dictionary<string, byte[]> expected, nn.Module actual)
    {
        var state = actual.state_dict();
        CollectionAssert.AreEquivalent(expected.Keys.ToList(), state.Keys.ToList());
        foreach (var (name, bytes) in expected)
            CollectionAssert.AreEqual(bytes, Bytes(state[name]), name);
    }

    // A load that copies nothing would pass the bit-exact checks if the fresh module already held the values.
    private static void AssertDiffers(Dictionary<string, byte[]> saved, nn.Module fresh)
    {
        var state = fresh.state_dict();
        Assert.IsTrue(saved.All(e => !e.Value.SequenceEqual(Bytes(state[e.Key]))), "a fresh module starts with other values");
    }
}

/// <summary>A module holding a given state dict as buffers, for files whose model class we do not have.</summary>
internal sealed class StateDictModule : nn.Module
{
    public StateDictModule(Dictionary<string, Tensor> state) : base(nameof(StateDictModule))
    {
        foreach (var (name, tensor) in state)
            register_buffer(name, tensor);
    }

    public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null)
    {
        destination ??= [];
        foreach (var (name, buffer) in named_buffers())
            destination[name] = buffer;
        return destination;
    }
}

/// <summary>
/// The files transformers wrote for the model oracles (test/oracle/build_hf_fixtures.py): one folder per
/// case with model.safetensors, keys.txt and oracle.safetensors, committed under Fixtures/hf-tiny;
/// LIGER_HF_FIXTURES points elsewhere (the GPU host builds fresh ones).
/// </summary>
internal static class OracleFixtures
{
    public static List<string> CaseFolders()
    {
        string root = Environment.GetEnvironmentVariable("LIGER_HF_FIXTURES") is { Length: > 0 } env ? env
            : Path.Combine(AppContext.BaseDirectory, "Fixtures", "hf-tiny");
        var folders = Directory.Exists(root)
            ? Directory.GetDirectories(root).Where(d => File.Exists(Path.Combine(d, "model.safetensors"))).Order().ToList()
            : [];
        if (folders.Count == 0)
            Assert.Fail($"No transformers-written fixtures under {root}.");
        return folders;
    }

    /// <summary>keys.txt: "name TAB [d0, d1] TAB DTYPE" per tensor of model.safetensors, as Python listed them.</summary>
    public static Dictionary<string, (long[] Shape, string DType)> ReadKeys(string folder) =>
        File.ReadAllLines(Path.Combine(folder, "keys.txt"))
            .Where(line => line.Length > 0 && !line.StartsWith('#'))
            .Select(line => line.Split('\t'))
            .ToDictionary(parts => parts[0], parts => (
                parts[1].Trim('[', ']').Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(long.Parse).ToArray(),
                parts[2].Trim()));
}

/// <summary>A safetensors file parsed by hand (the format's spec, not our reader), for layout checks.</summary>
internal sealed record ParsedFile(long HeaderLength, JsonElement Root, byte[] Data)
{
    public IEnumerable<string> TensorNames => Root.EnumerateObject().Select(p => p.Name).Where(n => n != "__metadata__");

    public string LastTensorName => Root.EnumerateObject().Where(p => p.Name != "__metadata__")
        .MaxBy(p => p.Value.GetProperty("data_offsets")[1].GetInt64()).Name;

    public static ParsedFile Read(string path, byte[]? contents = null)
    {
        var bytes = contents ?? File.ReadAllBytes(path);
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var root = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength)).RootElement.Clone();
        return new ParsedFile(headerLength, root, bytes[(8 + (int)headerLength)..]);
    }
}

/// <summary>Writes safetensors files by hand, for headers our writer would never produce.</summary>
internal static class RawSafetensors
{
    public static void WriteHeader(string path, string header, byte[] data)
    {
        var json = Encoding.UTF8.GetBytes(header);
        using var stream = File.Create(path);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)json.Length);
        stream.Write(length);
        stream.Write(json);
        stream.Write(data);
    }

    public static void Write(string path, IEnumerable<(string Name, string DType, long[] Shape, byte[] Data)> tensors)
    {
        var header = new Dictionary<string, object>();
        var data = new MemoryStream();
        foreach (var (name, dtype, shape, bytes) in tensors)
        {
            header[name] = new { dtype, shape, data_offsets = new[] { data.Length, data.Length + bytes.Length } };
            data.Write(bytes);
        }
        WriteHeader(path, JsonSerializer.Serialize(header), data.ToArray());
    }
}
