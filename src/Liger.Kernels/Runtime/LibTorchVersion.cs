using System.Text.RegularExpressions;

namespace Liger.Kernels.Runtime;

/// <summary>
/// Which libtorch a native library file belongs to, read from what each way of installing libtorch leaves beside it:
/// a Python PyTorch install (torch/lib/ next to torch/version.py), the libtorch zip (lib/ next to build-version),
/// a NuGet libtorch package (.../libtorch-cpu-linux-x64/2.10.0/runtimes/...), or an app's copy of one (named in the
/// app's .deps.json as "libtorch-cpu-linux-x64/2.10.0"). libtorch itself exports no
/// version function, and TorchSharp's torch.__version__ is the version it was built for, not the one it loaded.
/// </summary>
public sealed partial record LibTorchVersion(string Version, string? CudaVersion, string Source)
{
    // Source-generated: no pattern parsing or regex compilation at run time, so the once-per-process check stays cheap.
    [GeneratedRegex(@"^__version__\s*=\s*['""]([^'""]+)['""]", RegexOptions.Multiline)]
    private static partial Regex PythonVersion();

    [GeneratedRegex(@"^cuda\s*(?::\s*[^=]+)?=\s*['""]([^'""]+)['""]", RegexOptions.Multiline)]
    private static partial Regex PythonCuda();

    [GeneratedRegex(@"[/\\]libtorch-(cpu|cuda-(\d+\.\d+))-[^/\\]+[/\\](\d+\.\d+\.\d+)[/\\]", RegexOptions.IgnoreCase)]
    private static partial Regex NuGetPackage();

    [GeneratedRegex(@"""libtorch-(cpu|cuda-(\d+\.\d+))-[^""/]+/(\d+\.\d+\.\d+)""", RegexOptions.IgnoreCase)]
    private static partial Regex DepsLibrary();

    [GeneratedRegex(@"\+cu(\d+)(\d)$")]
    private static partial Regex CudaSuffix();

    /// <summary>The libtorch version that <paramref name="libraryPath"/> (libtorch_cpu.so or torch_cpu.dll) came with, or null.</summary>
    public static LibTorchVersion? Of(string libraryPath)
    {
        ArgumentNullException.ThrowIfNull(libraryPath);
        string folder = Path.GetDirectoryName(Path.GetFullPath(libraryPath)) ?? ".";
        string? parent = Path.GetDirectoryName(folder);
        if (parent is not null)
        {
            string versionPy = Path.Combine(parent, "version.py");
            if (File.Exists(versionPy))
            {
                string text = File.ReadAllText(versionPy);
                if (PythonVersion().Match(text) is { Success: true } v)
                {
                    string? cuda = PythonCuda().Match(text) is { Success: true } c && c.Groups[1].Value != "None" ? c.Groups[1].Value : null;
                    return new(v.Groups[1].Value, cuda ?? CudaOf(v.Groups[1].Value), versionPy);
                }
            }
            string buildVersion = Path.Combine(parent, "build-version");
            if (File.Exists(buildVersion) && File.ReadAllText(buildVersion).Trim() is { Length: > 0 } zipVersion)
                return new(zipVersion, CudaOf(zipVersion), buildVersion);
        }
        if (NuGetPackage().Match(libraryPath) is { Success: true } package)
        {
            string? cuda = package.Groups[2].Success ? package.Groups[2].Value : null;
            return new(package.Groups[3].Value, cuda, "its NuGet package folder");
        }
        // The app's own copy (build or publish output): the .deps.json says which package it came from.
        if (Path.GetFullPath(libraryPath).StartsWith(Path.GetFullPath(AppContext.BaseDirectory), StringComparison.Ordinal))
        {
            foreach (string deps in (AppContext.GetData("APP_CONTEXT_DEPS_FILES") as string ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries))
            {
                if (File.Exists(deps) && FromDeps(File.ReadAllText(deps)) is { } fromDeps)
                    return fromDeps with { Source = Path.GetFileName(deps) };
            }
        }
        return null;
    }

    /// <summary>
    /// The libtorch package a .deps.json names ("libtorch-cpu-linux-x64/2.10.0", or a part of "libtorch-cuda-12.8-linux-x64"),
    /// or null. Its text is searched, not parsed: an app carries one libtorch, and System.Text.Json's first use costs
    /// tens of milliseconds of JIT in a check that should cost nothing.
    /// </summary>
    internal static LibTorchVersion? FromDeps(string depsJson) =>
        DepsLibrary().Match(depsJson) is { Success: true } package
            ? new(package.Groups[3].Value, package.Groups[2].Success ? package.Groups[2].Value : null, "deps.json")
            : null;

    /// <summary>"12.8" for "2.10.0+cu128", null for a CPU build or no suffix.</summary>
    internal static string? CudaOf(string version) =>
        CudaSuffix().Match(version) is { Success: true } m ? $"{m.Groups[1].Value}.{m.Groups[2].Value}" : null;

    /// <summary>Major and minor of a version such as "2.10.0.0" or "2.11.0+cu130", or null if it has none.</summary>
    internal static (int Major, int Minor)? MajorMinor(string version)
    {
        string[] parts = version.Split('+', '-')[0].Split('.');
        return parts.Length >= 2 && int.TryParse(parts[0], out int major) && int.TryParse(parts[1], out int minor)
            ? (major, minor) : null;
    }
}
