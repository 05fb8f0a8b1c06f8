using System.Globalization;

namespace Microsoft.ML.Liger.Training;

/// <summary>
/// The checkpoint-NNNNNNN folders of a run. Each is written whole into a hidden staging folder and renamed into
/// place (<see cref="AtomicFolder"/>: a rename within one file system is atomic), so a visible checkpoint folder is
/// always complete; a crash leaves at worst a hidden staging folder, which is ignored. Old checkpoints are deleted
/// only after the new one is in place.
/// </summary>
public static class TrainingCheckpoints
{
    /// <summary>Prefix of checkpoint folder names.</summary>
    public const string Prefix = "checkpoint-";

    /// <summary>Complete checkpoints in <paramref name="folder"/>, oldest first, as (step, path).</summary>
    public static IReadOnlyList<(int Step, string Path)> List(string folder)
    {
        if (!Directory.Exists(folder))
            return [];
        return Directory.GetDirectories(folder, Prefix + "*")
            .Select(path => (Ok: int.TryParse(Path.GetFileName(path)[Prefix.Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int step), step, path))
            .Where(c => c.Ok)
            .OrderBy(c => c.step)
            .Select(c => (c.step, c.path))
            .ToList();
    }

    /// <summary>The newest complete checkpoint in <paramref name="folder"/>, or null.</summary>
    public static string? Latest(string folder) => List(folder) is { Count: > 0 } all ? all[^1].Path : null;

    /// <summary>The path of checkpoint <paramref name="step"/> in <paramref name="folder"/>.</summary>
    internal static string PathOf(string folder, int step) => Path.Combine(folder, Prefix + step.ToString("D7", CultureInfo.InvariantCulture));

    /// <summary>
    /// Writes checkpoint <paramref name="step"/> through <paramref name="write"/> (given the staging folder), moves
    /// it into place, and keeps the newest <paramref name="keep"/>. Returns the checkpoint's path.
    /// </summary>
    internal static string Write(string folder, int step, Action<string> write, int keep)
    {
        string final = PathOf(folder, step);
        AtomicFolder.Write(final, write);
        foreach (var (_, path) in List(folder).SkipLast(keep))
            Directory.Delete(path, recursive: true);
        return final;
    }
}
