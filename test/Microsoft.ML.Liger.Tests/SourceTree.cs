using System.Text.RegularExpressions;

namespace Microsoft.ML.Liger.Tests;

/// <summary>The repository's C# sources as text, for the house rules that the compiler does not check.</summary>
internal static partial class SourceTree
{
    /// <summary>The folder holding Liger.sln, found upwards from the test's base directory.</summary>
    public static string Root { get; } = FindRoot();

    /// <summary>The .cs files of <paramref name="project"/> (a folder relative to the root), build outputs left out.</summary>
    public static IEnumerable<string> Files(string project)
    {
        string folder = Path.Combine(Root, project);
        return Directory.EnumerateFiles(folder, "*.cs", SearchOption.AllDirectories)
            .Where(f => !Path.GetRelativePath(folder, f).Split(Path.DirectorySeparatorChar).Any(part => part is "bin" or "obj"))
            .Order(StringComparer.Ordinal);
    }

    /// <summary>The file-scoped namespace a file declares, or null (a top-level program).</summary>
    public static string? DeclaredNamespace(string text) => NamespaceLine().Match(text) is { Success: true } m ? m.Groups[1].Value : null;

    /// <summary>The namespace a file's folder calls for: the project's root namespace plus the folder path below the project.</summary>
    public static string FolderNamespace(string project, string rootNamespace, string file)
    {
        string? folder = Path.GetDirectoryName(Path.GetRelativePath(Path.Combine(Root, project), file));
        return string.IsNullOrEmpty(folder) ? rootNamespace : $"{rootNamespace}.{folder.Replace(Path.DirectorySeparatorChar, '.')}";
    }

    /// <summary>The names of the types a file declares at the top level, with whether each is public.</summary>
    public static IEnumerable<(string Name, bool IsPublic)> TopLevelTypes(string text) =>
        TopLevelType().Matches(text).Select(m => (m.Groups[2].Value, m.Groups[1].Value == "public "));

    /// <summary>The text without its comments (doc comments included), so that prose naming a type does not count as a use.</summary>
    public static string WithoutComments(string text) => LineComment().Replace(BlockComment().Replace(text, " "), "");

    [GeneratedRegex(@"^namespace ([\w.]+);", RegexOptions.Multiline)]
    private static partial Regex NamespaceLine();

    [GeneratedRegex(@"^(public |internal )?(?:(?:sealed|static|abstract|readonly|partial|ref) )*(?:class|record struct|record|struct|enum|interface) (\w+)", RegexOptions.Multiline)]
    private static partial Regex TopLevelType();

    [GeneratedRegex(@"//.*$", RegexOptions.Multiline)]
    private static partial Regex LineComment();

    [GeneratedRegex(@"/\*.*?\*/", RegexOptions.Singleline)]
    private static partial Regex BlockComment();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Liger.sln")))
                return dir.FullName;
        throw new DirectoryNotFoundException($"No folder above '{AppContext.BaseDirectory}' holds Liger.sln: the house rules read the source tree.");
    }
}
