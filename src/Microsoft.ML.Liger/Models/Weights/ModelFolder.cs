namespace Microsoft.ML.Liger.Models.Weights;

/// <summary>
/// The files of a model folder (config.json, weights, tokenizer), refused when a symbolic link takes them out of
/// the folder: a folder from elsewhere must not make us read (or copy, or quote) /etc/passwd. One layout of links
/// is legitimate and allowed explicitly: Hugging Face's cache, where <c>models--org--name/snapshots/rev/file</c>
/// links into <c>models--org--name/blobs/hash</c> of the same cache folder. Nothing broader.
/// </summary>
internal static class ModelFolder
{
    private const int MaxLinkHops = 40; // Linux's MAXSYMLINKS

    /// <summary>
    /// <paramref name="folder"/>/<paramref name="name"/>, after checking that its real path lies in the folder's real
    /// path (or in its Hugging Face cache's blobs/). A file that does not exist is returned unchecked, for the
    /// caller's own "missing" error.
    /// </summary>
    /// <exception cref="WeightFormatException">The file resolves outside the folder.</exception>
    public static string PathOf(string folder, string name)
    {
        string path = Path.Combine(folder, name);
        Check(folder, path);
        return path;
    }

    /// <summary>Checks an already combined <paramref name="path"/> inside <paramref name="folder"/>.</summary>
    public static void Check(string folder, string path)
    {
        if (!System.IO.File.Exists(path) && !Directory.Exists(path))
            return;
        string realFolder = RealPath(folder);
        string real = RealPath(path);
        if (IsUnder(real, realFolder) || IsUnder(real, CacheBlobs(realFolder)))
            return;
        throw new WeightFormatException(path, null,
            $"'{path}' resolves to '{real}', outside the model folder '{realFolder}': files of a model folder must stay inside it "
            + "(symbolic links are followed only into a Hugging Face cache's blobs/ folder of the same model).");
    }

    // <cache>/models--org--name/snapshots/<rev> → <cache>/models--org--name/blobs; null for any other folder.
    private static string? CacheBlobs(string realFolder)
    {
        var snapshots = Path.GetDirectoryName(realFolder);
        var repo = snapshots is null ? null : Path.GetDirectoryName(snapshots);
        return repo is not null && Path.GetFileName(snapshots) == "snapshots" && Path.GetFileName(repo).StartsWith("models--", StringComparison.Ordinal)
            ? Path.Combine(repo, "blobs")
            : null;
    }

    private static bool IsUnder(string path, string? folder) =>
        folder is not null && path.StartsWith(Path.TrimEndingDirectorySeparator(folder) + Path.DirectorySeparatorChar, PathComparison);

    private static StringComparison PathComparison =>
        OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;

    /// <summary>
    /// The path with every symbolic link resolved, component by component (as realpath(3)): a link in a parent
    /// folder counts as much as one at the end, and ".." is applied to the resolved parent, not the text.
    /// </summary>
    internal static string RealPath(string path)
    {
        string full = Path.GetFullPath(path);
        string root = Path.GetPathRoot(full)!;
        var pending = new List<string>(Split(full[root.Length..]));
        string current = root;
        int hops = 0;
        while (pending.Count > 0)
        {
            string part = pending[0];
            pending.RemoveAt(0);
            if (part is "" or ".")
                continue;
            if (part == "..")
            {
                current = Path.GetDirectoryName(current) ?? current;
                continue;
            }
            string next = Path.Combine(current, part);
            FileSystemInfo info = Directory.Exists(next) ? new DirectoryInfo(next) : new FileInfo(next);
            if (info.LinkTarget is not string target)
            {
                current = next;
                continue;
            }
            if (++hops > MaxLinkHops)
                throw new IOException($"'{path}' goes through more than {MaxLinkHops} symbolic links.");
            if (Path.IsPathRooted(target))
            {
                current = Path.GetPathRoot(target)!;
                target = target[current.Length..];
            }
            pending.InsertRange(0, Split(target));
        }
        return current;
    }

    private static string[] Split(string relative) => relative.Split(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
}
