using System.Text;
using Microsoft.ML.Liger.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.Models;

/// <summary>
/// Symbolic links in a model folder: followed inside the folder and, in Hugging Face's cache layout, into the
/// same repository's blobs/; refused anywhere else, before a byte of the outside file is read or quoted.
/// </summary>
[TestClass]
public sealed class ModelFolderLinkTests
{
    // A file outside every model folder, with text the way /etc/passwd starts: its bytes must never reach a message.
    private const string Secret = "root:x:0:0:root:/root:/bin/bash\n";
    private string _root = "", _outside = "";

    [TestInitialize]
    public void CreateFolders()
    {
        if (OperatingSystem.IsWindows())
            Assert.Inconclusive("Symbolic links need extra rights on Windows; the rule is the same there.");
        _root = Directory.CreateTempSubdirectory("liger-links-").FullName;
        _outside = Directory.CreateDirectory(Path.Combine(_root, "outside")).FullName;
        File.WriteAllText(Path.Combine(_outside, "passwd"), Secret + new string('x', 4000));
    }

    [TestCleanup]
    public void DeleteFolders() => Directory.Delete(_root, recursive: true);

    private string Model(string name = "model") => LoadingFixtures.CopyInto(LoadingFixtures.TinyModel(), Path.Combine(_root, name));

    // Numbers the secret's first 8 bytes make, read as a little-endian length (what the old message printed).
    private static string LeakedLength() => BitConverter.ToUInt64(Encoding.ASCII.GetBytes(Secret), 0).ToString(System.Globalization.CultureInfo.InvariantCulture);

    [TestMethod]
    public void IndexEntryThroughALinkedFolder_IsRefused_WithoutQuotingTheFile()
    {
        string folder = Model();
        File.Delete(Path.Combine(folder, "model.safetensors"));
        // "up" links to the root of the temp tree (as the report's link to "/"); the entry itself has no "..".
        Directory.CreateSymbolicLink(Path.Combine(folder, "up"), _root);
        File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"),
            "{\"metadata\": {}, \"weight_map\": {\"model.embed_tokens.weight\": \"up/outside/passwd\"}}");

        var error = Assert.ThrowsExactly<WeightFormatException>(() => CausalLM.FromPretrained(folder));

        StringAssert.Contains(error.Message, "outside the model folder");
        StringAssert.Contains(error.Message, Path.Combine(folder, "up/outside/passwd"));
        Assert.IsFalse(error.Message.Contains(LeakedLength(), StringComparison.Ordinal), error.Message);
        Assert.IsFalse(error.Message.Contains("root:", StringComparison.Ordinal), error.Message);
    }

    [TestMethod]
    [DataRow("model.safetensors")]
    [DataRow("config.json")]
    public void WeightsOrConfigLinkedOutside_AreRefused_EvenWhenValid(string name)
    {
        // A valid file outside: loading it would have worked, so only the rule can stop it.
        string other = Model("other");
        string folder = Model();
        File.Delete(Path.Combine(folder, name));
        File.CreateSymbolicLink(Path.Combine(folder, name), Path.Combine(other, name));

        var error = Assert.ThrowsExactly<WeightFormatException>(() => CausalLM.FromPretrained(folder));

        StringAssert.Contains(error.Message, Path.Combine(folder, name));
        StringAssert.Contains(error.Message, "outside the model folder");
    }

    [TestMethod]
    [DataRow("tokenizer.json")]
    [DataRow("tokenizer_config.json")]
    public void TokenizerFileLinkedOutside_IsRefused(string name)
    {
        string folder = LoadingFixtures.CopyInto(LoadingFixtures.BpeTokenizer, Path.Combine(_root, "tok"));
        File.Move(Path.Combine(folder, name), Path.Combine(_outside, name));
        File.CreateSymbolicLink(Path.Combine(folder, name), Path.Combine(_outside, name));

        var error = Assert.ThrowsExactly<WeightFormatException>(() => CausalLMTokenizer.FromPretrained(folder));

        StringAssert.Contains(error.Message, Path.Combine(folder, name));
    }

    [TestMethod]
    public void LinksInsideTheFolder_Load()
    {
        string folder = Model();
        Directory.CreateDirectory(Path.Combine(folder, "weights"));
        File.Move(Path.Combine(folder, "model.safetensors"), Path.Combine(folder, "weights", "real.safetensors"));
        File.CreateSymbolicLink(Path.Combine(folder, "model.safetensors"), "weights/real.safetensors");

        using var model = CausalLM.FromPretrained(folder);
        using var reference = CausalLM.FromPretrained(LoadingFixtures.TinyModel());
        Assert.IsTrue(model.LmHeadWeight.eq(reference.LmHeadWeight).all().item<bool>());
    }

    [TestMethod]
    public void HuggingFaceCacheLayout_Loads_AndLinksToAnotherRepositorysBlobsAreRefused()
    {
        // hub/models--org--tiny/{blobs/<hash>, snapshots/<rev>/<file> -> ../../blobs/<hash>}, as huggingface_hub writes it.
        string repo = Path.Combine(_root, "hub", "models--org--tiny");
        string blobs = Directory.CreateDirectory(Path.Combine(repo, "blobs")).FullName;
        string snapshot = Directory.CreateDirectory(Path.Combine(repo, "snapshots", "0123abcd")).FullName;
        foreach (var file in Directory.GetFiles(LoadingFixtures.TinyModel()))
        {
            string hash = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(file))).ToLowerInvariant();
            File.Copy(file, Path.Combine(blobs, hash), overwrite: true);
            File.CreateSymbolicLink(Path.Combine(snapshot, Path.GetFileName(file)), Path.Combine("..", "..", "blobs", hash));
        }

        using (var model = CausalLM.FromPretrained(snapshot))
        using (var reference = CausalLM.FromPretrained(LoadingFixtures.TinyModel()))
            Assert.IsTrue(model.LmHeadWeight.eq(reference.LmHeadWeight).all().item<bool>());

        // Another repository's blobs are outside this model, cache or not.
        string otherBlobs = Directory.CreateDirectory(Path.Combine(_root, "hub", "models--evil--x", "blobs")).FullName;
        string config = Path.Combine(snapshot, "config.json");
        File.Copy(config, Path.Combine(otherBlobs, "cfg"));
        File.Delete(config);
        File.CreateSymbolicLink(config, Path.Combine("..", "..", "..", "models--evil--x", "blobs", "cfg"));
        var error = Assert.ThrowsExactly<WeightFormatException>(() => CausalLM.FromPretrained(snapshot));
        StringAssert.Contains(error.Message, "outside the model folder");
    }

    [TestMethod]
    public void FileThatIsNotSafetensors_SaysSo_WithoutQuotingItsBytes()
    {
        string folder = Model();
        File.Copy(Path.Combine(_outside, "passwd"), Path.Combine(folder, "model.safetensors"), overwrite: true);

        var error = Assert.ThrowsExactly<WeightFormatException>(() => CausalLM.FromPretrained(folder));

        StringAssert.Contains(error.Message, Path.Combine(folder, "model.safetensors"));
        StringAssert.Contains(error.Message, "is not a safetensors file");
        StringAssert.Contains(error.Message, new FileInfo(Path.Combine(folder, "model.safetensors")).Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.IsFalse(error.Message.Contains(LeakedLength(), StringComparison.Ordinal), error.Message);
    }
}
