using System.Globalization;
using System.Text;

namespace Microsoft.ML.Liger.Sweeps;

/// <summary>What a sweep found: every trial, the best one, and ways to print, load into ML.NET or save them.</summary>
public sealed class SweepResult
{
    /// <summary>A result over <paramref name="trials"/>, whose parameters are <paramref name="parameterNames"/> (column order).</summary>
    /// <exception cref="ArgumentException">A trial lacks one of the parameters, or two trials share an id.</exception>
    public SweepResult(IReadOnlyList<string> parameterNames, IReadOnlyList<TrialResult> trials)
    {
        ArgumentNullException.ThrowIfNull(parameterNames);
        ArgumentNullException.ThrowIfNull(trials);
        foreach (var trial in trials)
            foreach (var name in parameterNames)
                if (!trial.Parameters.ContainsKey(name))
                    throw new ArgumentException($"Trial {trial.Id} has no value for parameter '{name}'.", nameof(trials));
        if (trials.GroupBy(t => t.Id).FirstOrDefault(g => g.Count() > 1) is { } repeated)
            throw new ArgumentException($"Two trials have id {repeated.Key}.", nameof(trials));
        ParameterNames = parameterNames.ToArray();
        Trials = trials.OrderBy(t => t.Id).ToArray();
        BestTrial = Trials.Where(t => t.Status == TrialStatus.Completed && t.EvalLoss is double loss && double.IsFinite(loss))
            .OrderBy(t => t.EvalLoss).ThenBy(t => t.Id).FirstOrDefault();
    }

    /// <summary>The completed trial with the lowest <see cref="TrialResult.EvalLoss"/> (the first such on a tie); null when none completed.</summary>
    public TrialResult? BestTrial { get; }

    /// <summary>Every trial, by id.</summary>
    public IReadOnlyList<TrialResult> Trials { get; }

    /// <summary>The swept parameters, in the search space's order.</summary>
    public IReadOnlyList<string> ParameterNames { get; }

    /// <summary>
    /// The trials as an ML.NET data view, one row per trial: Id, a Parameters text column ("Name=value; ..."), a typed column
    /// for each <see cref="FineTuneCausalLMSearchSpace"/> parameter the sweep varied, then Status, EvalLoss, TokensPerSecond,
    /// PeakMemoryBytes (NaN when unknown), DurationSeconds, Error (empty when none) and IsBest.
    /// </summary>
    public IDataView ToDataView(MLContext mlContext)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        return SweepDataView.Create(mlContext, this);
    }

    /// <summary>The trials as aligned text columns, by id, the best marked with '*'; errors shortened to one line.</summary>
    public string ToTable()
    {
        var header = new[] { "", "trial" }.Concat(ParameterNames).Concat(["status", "eval loss", "tokens/s", "peak MiB", "time", "note"]).ToArray();
        var rows = Trials.Select(t => new[] { ReferenceEquals(t, BestTrial) ? "*" : "", t.Id.ToString(CultureInfo.InvariantCulture) }
            .Concat(ParameterNames.Select(n => Cell(t.Parameters[n])))
            .Concat([
                t.Status.ToString(),
                t.EvalLoss is double l ? l.ToString("F4", CultureInfo.InvariantCulture) : "-",
                t.TokensPerSecond is double s ? s.ToString("F0", CultureInfo.InvariantCulture) : "-",
                t.PeakMemoryBytes is long b ? (b / (1024.0 * 1024.0)).ToString("F0", CultureInfo.InvariantCulture) : "-",
                Time(t.Duration),
                Shorten(t.Error),
            ]).ToArray()).ToList();
        var widths = header.Select((h, i) => rows.Select(r => r[i].Length).Append(h.Length).Max()).ToArray();
        // Numeric columns right-aligned (header too), words left-aligned, the last (free-text) column unpadded.
        var right = header.Select((_, i) => i < header.Length - 1 && rows.Count > 0 && rows.All(r => r[i] == "-" || IsNumber(r[i]))).ToArray();
        var text = new StringBuilder();
        void Line(string[] cells) => text.AppendLine(string.Join("  ", cells.Select((c, i) =>
            i == cells.Length - 1 ? c : right[i] ? c.PadLeft(widths[i]) : c.PadRight(widths[i]))).TrimEnd());
        Line(header);
        foreach (var row in rows)
            Line(row);
        if (BestTrial is { } best)
            text.AppendLine($"* best: trial {best.Id}, eval loss {best.EvalLoss!.Value.ToString("F4", CultureInfo.InvariantCulture)}");
        return text.ToString();
    }

    /// <summary>Writes the trials as CSV (header, one row per trial), atomically: to a temporary file, then moved over <paramref name="path"/>.</summary>
    /// <remarks>Columns: Id, the parameters, Status, EvalLoss, TokensPerSecond, PeakMemoryBytes, DurationSeconds, Error; empty for null.
    /// Text is always quoted and doubles always carry a '.' or an exponent, so <see cref="LoadCsv"/> restores each parameter's type.</remarks>
    public void SaveCsv(string path) => AtomicFile.Write(path, SweepFiles.ToCsv(this));

    /// <summary>Writes the trials as JSON (parameter names and types, best trial id, trials), atomically like <see cref="SaveCsv"/>.</summary>
    public void SaveJson(string path) => AtomicFile.Write(path, SweepFiles.ToJson(this));

    /// <summary>Reads a file <see cref="SaveCsv"/> wrote.</summary>
    /// <exception cref="InvalidDataException">The file is not such a CSV (the line and column are named).</exception>
    public static SweepResult LoadCsv(string path) => SweepFiles.FromCsv(File.ReadAllText(path), path);

    /// <summary>Reads a file <see cref="SaveJson"/> wrote.</summary>
    /// <exception cref="InvalidDataException">The file is not such a JSON document (the field is named).</exception>
    public static SweepResult LoadJson(string path) => SweepFiles.FromJson(File.ReadAllText(path), path);

    /// <inheritdoc/>
    public override string ToString() => ToTable();

    private static string Cell(object value) =>
        value is double d ? d.ToString("G4", CultureInfo.InvariantCulture) : SearchDimension.Format(value).ReplaceLineEndings(" ");

    // Minutes and seconds (m:ss.f) under an hour, hours (not wrapping at a day) beyond.
    private static string Time(TimeSpan duration) => duration.TotalHours >= 1
        ? $"{(long)duration.TotalHours}:{duration.ToString(@"mm\:ss", CultureInfo.InvariantCulture)}"
        : duration.ToString(@"m\:ss\.f", CultureInfo.InvariantCulture);

    private static bool IsNumber(string cell) => double.TryParse(cell, NumberStyles.Float, CultureInfo.InvariantCulture, out _);

    private static string Shorten(string? error)
    {
        if (error is null)
            return "";
        string line = error.ReplaceLineEndings(" ");
        return line.Length <= 80 ? line : line[..77] + "...";
    }
}

/// <summary>Writes a file whole: to a temporary sibling, then moved over the target, so readers never see half a file.</summary>
internal static class AtomicFile
{
    public static void Write(string path, string contents)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temporary = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            File.WriteAllText(temporary, contents, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
            File.Move(temporary, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary))
                File.Delete(temporary);
        }
    }
}
