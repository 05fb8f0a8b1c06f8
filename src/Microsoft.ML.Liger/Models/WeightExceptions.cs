namespace Microsoft.ML.Liger.Models;

/// <summary>
/// A weights file that is not a valid safetensors file or index (truncated, bad header, offsets outside
/// the data), or an index that names files outside its folder. An <see cref="IOException"/>, as the missing-file
/// errors are, so one catch covers every unusable weights file.
/// </summary>
public sealed class WeightFormatException : IOException
{
    /// <summary>Creates the exception for <paramref name="path"/> and, when one is to blame, <paramref name="tensorName"/>.</summary>
    public WeightFormatException(string path, string? tensorName, string message)
        : base(message)
    {
        Path = path;
        TensorName = tensorName;
    }

    /// <summary>The file that is wrong.</summary>
    public string Path { get; }

    /// <summary>The tensor whose header entry or data is wrong; null when the fault is in the file as a whole.</summary>
    public string? TensorName { get; }
}

/// <summary>
/// A weights folder whose tensors do not fit the module: tensors the module needs that the weights folder lacks,
/// tensors the module does not have (strict loading), tensors of the wrong shape or kind, or stored in a dtype
/// this loader cannot read (F8 types, unsigned types above 8 bits). Every problem
/// found is listed, so one failed load shows all of them. Nothing was copied into the module.
/// </summary>
public sealed class WeightMismatchException : InvalidOperationException
{
    /// <summary>Creates the exception from the lists of problems; the message names them.</summary>
    public WeightMismatchException(
        string folder, IReadOnlyList<string> missingNames, IReadOnlyList<string> unexpectedNames, IReadOnlyList<string> mismatches)
        : base(Describe(folder, missingNames, unexpectedNames, mismatches))
    {
        Folder = folder;
        MissingNames = missingNames;
        UnexpectedNames = unexpectedNames;
        Mismatches = mismatches;
    }

    /// <summary>
    /// For a config.json whose sizes disagree with the weights' headers, found before any model was built
    /// (each problem names the field, config.json's value and the weights').
    /// </summary>
    internal WeightMismatchException(string folder, string configPath, IReadOnlyList<string> configProblems)
        : base(Describe($"'{configPath}' does not fit the weights in '{folder}' (checked before building the model):", configProblems))
    {
        Folder = folder;
        MissingNames = [];
        UnexpectedNames = [];
        Mismatches = configProblems;
    }

    /// <summary>The model folder.</summary>
    public string Folder { get; }

    /// <summary>State-dict entries of the module that the weights folder does not have.</summary>
    public IReadOnlyList<string> MissingNames { get; }

    /// <summary>Stored tensors the module does not have (reported in strict loading only).</summary>
    public IReadOnlyList<string> UnexpectedNames { get; }

    /// <summary>One line per tensor whose shape or kind differs: name, what the module expects, what was found.</summary>
    public IReadOnlyList<string> Mismatches { get; }

    private const int ListedPerKind = 10;

    private static string Describe(
        string folder, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> mismatches)
    {
        var lines = new List<string> { $"The weights in '{folder}' does not fit the module:" };
        AddKind(lines, missing, "tensor(s) the module needs are missing from the weights");
        AddKind(lines, unexpected, "tensor(s) in the weights are not in the module (strict load; list them in IgnoredNames or set Strict = false)");
        AddKind(lines, mismatches, "tensor(s) differ");
        return string.Join(Environment.NewLine, lines);
    }

    private static string Describe(string header, IReadOnlyList<string> problems)
    {
        var lines = new List<string> { header };
        lines.AddRange(problems.Take(ListedPerKind).Select(item => "  " + item));
        if (problems.Count > ListedPerKind)
            lines.Add($"  ... and {problems.Count - ListedPerKind} more");
        return string.Join(Environment.NewLine, lines);
    }

    private static void AddKind(List<string> lines, IReadOnlyList<string> items, string what)
    {
        if (items.Count == 0)
            return;
        lines.Add($"  {items.Count} {what}:");
        lines.AddRange(items.Take(ListedPerKind).Select(item => "    " + item));
        if (items.Count > ListedPerKind)
            lines.Add($"    ... and {items.Count - ListedPerKind} more");
    }
}
