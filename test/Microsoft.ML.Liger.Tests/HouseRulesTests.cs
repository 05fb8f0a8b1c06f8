using System.Text.RegularExpressions;

namespace Microsoft.ML.Liger.Tests;

/// <summary>
/// The map of docs/design.md, checked on the source tree: a file's namespace is its folder; Microsoft.ML.Liger's public
/// types live only in the namespaces users import (a subfolder holds internal types); and data flows one way, rows →
/// batches → model → loss → optimizer, so no layer names a layer above it.
/// </summary>
[TestClass]
public sealed class HouseRulesTests
{
    private const string Liger = "src/Microsoft.ML.Liger";

    /// <summary>The namespaces users import, as folders below src/Microsoft.ML.Liger ("" is the catalog's root).</summary>
    private static readonly string[] PublicFolders = ["", "FineTuning", "PreferenceAlignment", "Models", "Sweeps", "Training", "Distributed"];

    /// <summary>
    /// What each layer may not name, by top-level folder ("" is the root: the catalog, the transformer and what the estimators
    /// share). Distributed is the collectives the training loop uses; Models knows nothing of training; the loop knows no
    /// estimator; the two estimators do not lean on each other.
    /// </summary>
    private static readonly Dictionary<string, string[]> MayNotName = new()
    {
        ["Distributed"] = ["", "Models", "Training", "FineTuning", "PreferenceAlignment", "Sweeps"],
        ["Models"] = ["", "Distributed", "Training", "FineTuning", "PreferenceAlignment", "Sweeps"],
        ["Training"] = ["", "FineTuning", "PreferenceAlignment", "Sweeps"],
        ["FineTuning"] = ["PreferenceAlignment", "Sweeps"],
        ["PreferenceAlignment"] = ["FineTuning", "Sweeps"],
    };

    // Liger.Benchmarks is left out: its Gpu/Cases/ files are parts of one partial class, GpuBenchmark, which C# keeps in one namespace.
    [TestMethod]
    [DataRow("src/Liger.Kernels", "Liger.Kernels")]
    [DataRow(Liger, "Microsoft.ML.Liger")]
    [DataRow("src/Liger.Launch", "Liger.Launch")]
    [DataRow("test/Liger.Kernels.Tests", "Liger.Kernels.Tests")]
    [DataRow("test/Microsoft.ML.Liger.Tests", "Microsoft.ML.Liger.Tests")]
    [DataRow("test/Liger.Distributed.Worker", "Liger.Distributed.Worker")]
    public void EveryNamespaceIsItsFolder(string project, string rootNamespace)
    {
        var wrong = new List<string>();
        foreach (var file in SourceTree.Files(project))
        {
            string? declared = SourceTree.DeclaredNamespace(File.ReadAllText(file));
            if (declared is null && Path.GetFileName(file) == "Program.cs")
                continue; // top-level statements have no namespace
            string expected = SourceTree.FolderNamespace(project, rootNamespace, file);
            if (declared != expected)
                wrong.Add($"{Path.GetRelativePath(SourceTree.Root, file)} declares '{declared ?? "no namespace"}', its folder calls for '{expected}'");
        }
        Assert.AreEqual(0, wrong.Count, "A file's namespace is its folder (file-scoped):\n" + string.Join("\n", wrong));
    }

    [TestMethod]
    public void PublicTypesLiveInTheNamespacesUsersImport()
    {
        var wrong = new List<string>();
        foreach (var file in SourceTree.Files(Liger))
        {
            string folder = TopFolder(file, depth: int.MaxValue);
            foreach (var (name, isPublic) in SourceTree.TopLevelTypes(File.ReadAllText(file)))
                if (isPublic && !PublicFolders.Contains(folder))
                    wrong.Add($"{name} in {Path.GetRelativePath(SourceTree.Root, file)}");
        }
        Assert.AreEqual(0, wrong.Count,
            $"Public types belong in {string.Join(", ", PublicFolders.Select(f => $"'{f}/'"))}; a subfolder holds internal types " +
            "(move the type up, or make it internal):\n" + string.Join("\n", wrong));
    }

    [TestMethod]
    public void NoLayerNamesALayerAboveIt()
    {
        // Types of the root namespace are in scope in every Microsoft.ML.Liger.* file without a using: look for their names.
        var rootTypes = SourceTree.Files(Liger).Where(f => TopFolder(f) == "")
            .SelectMany(f => SourceTree.TopLevelTypes(File.ReadAllText(f)).Select(t => t.Name)).ToArray();
        Assert.IsTrue(rootTypes.Contains(nameof(LigerCatalog)), $"the root's types were not found: {string.Join(", ", rootTypes)}");
        var wrong = new List<string>();
        foreach (var file in SourceTree.Files(Liger))
        {
            if (!MayNotName.TryGetValue(TopFolder(file), out var above))
                continue;
            string code = SourceTree.WithoutComments(File.ReadAllText(file));
            foreach (var layer in above)
            {
                var uses = layer == ""
                    ? rootTypes.Where(t => Regex.IsMatch(code, $@"\b{t}\b"))
                    : Regex.Matches(code, $@"\bMicrosoft\.ML\.Liger\.{layer}\b").Select(m => m.Value).Distinct();
                foreach (var use in uses)
                    wrong.Add($"{Path.GetRelativePath(SourceTree.Root, file)} names {use} ({(layer == "" ? "the root" : layer)})");
            }
        }
        Assert.AreEqual(0, wrong.Count, "Data flows one way (docs/design.md, the map); these files reach up:\n" + string.Join("\n", wrong));
    }

    /// <summary>The folder of <paramref name="file"/> below src/Microsoft.ML.Liger, cut to <paramref name="depth"/> parts ("" at the root).</summary>
    private static string TopFolder(string file, int depth = 1)
    {
        string? folder = Path.GetDirectoryName(Path.GetRelativePath(Path.Combine(SourceTree.Root, Liger), file));
        return string.Join('/', (folder ?? "").Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries).Take(depth));
    }
}
