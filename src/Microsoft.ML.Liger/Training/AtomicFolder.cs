namespace Microsoft.ML.Liger.Training;

/// <summary>
/// Writes a folder whole: into a hidden sibling first, then renamed into place (atomic within a file system);
/// an existing folder is moved aside and deleted only after the new one is in place. A crash leaves either
/// the old folder or the new one, plus at worst a stale hidden sibling that the next write clears.
/// </summary>
internal static class AtomicFolder
{
    /// <summary>The hidden sibling <see cref="Write"/> stages <paramref name="folder"/> in (other processes may write into it while it is staged).</summary>
    public static string StagingOf(string folder)
    {
        string full = Path.GetFullPath(folder).TrimEnd(Path.DirectorySeparatorChar);
        string parent = Path.GetDirectoryName(full) ?? throw new ArgumentException($"'{folder}' has no parent folder.", nameof(folder));
        return Path.Combine(parent, $".{Path.GetFileName(full)}.staging");
    }

    public static void Write(string folder, Action<string> write)
    {
        string full = Path.GetFullPath(folder).TrimEnd(Path.DirectorySeparatorChar);
        string parent = Path.GetDirectoryName(full) ?? throw new ArgumentException($"'{folder}' has no parent folder.", nameof(folder));
        string name = Path.GetFileName(full);
        Directory.CreateDirectory(parent);
        string staging = StagingOf(folder);
        string old = Path.Combine(parent, $".{name}.old");
        foreach (var stale in new[] { staging, old })
            if (Directory.Exists(stale))
                Directory.Delete(stale, recursive: true);
        Directory.CreateDirectory(staging);
        try
        {
            write(staging);
        }
        catch
        {
            Directory.Delete(staging, recursive: true);
            throw;
        }
        if (Directory.Exists(full))
        {
            Directory.Move(full, old);
            Directory.Move(staging, full);
            Directory.Delete(old, recursive: true);
        }
        else
        {
            Directory.Move(staging, full);
        }
    }
}
