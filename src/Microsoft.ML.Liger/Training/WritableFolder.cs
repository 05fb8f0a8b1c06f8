namespace Microsoft.ML.Liger.Training;

/// <summary>
/// Checks a folder an option names before any work: a path through a file, a file where the folder should be, or a
/// folder that cannot be created or written fail at once, naming the option, instead of after training has run.
/// </summary>
internal static class WritableFolder
{
    /// <summary>Creates <paramref name="folder"/> if needed and writes and deletes a probe file in it; throws <see cref="ArgumentException"/> naming <paramref name="option"/>.</summary>
    public static void Check(string folder, string option)
    {
        if (string.IsNullOrWhiteSpace(folder))
            throw new ArgumentException($"Option '{option}' must name a folder; got '{folder}'.", option);
        string full;
        try
        {
            full = Path.GetFullPath(folder);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new ArgumentException($"Option '{option}' is '{folder}', which is not a valid path: {e.Message}", option, e);
        }
        if (File.Exists(full))
            throw new ArgumentException($"Option '{option}' is '{folder}', which is a file; it must name a folder.", option);
        for (string? up = Path.GetDirectoryName(full); up is not null; up = Path.GetDirectoryName(up))
        {
            if (File.Exists(up))
                throw new ArgumentException($"Option '{option}' is '{folder}', but '{up}' on its path is a file, so the folder cannot be created.", option);
            if (Directory.Exists(up))
                break;
        }
        string probe = Path.Combine(full, $".liger-write-probe-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(full);
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"Option '{option}' is '{folder}', which cannot be created or written: {e.Message}", option, e);
        }
    }
}
