namespace Liger.Kernels.Runtime;

/// <summary>What the CUDA probe saw, as plain values (so the message can be built and tested without a GPU).</summary>
/// <param name="DeviceCount">torch.cuda.device_count(), 0 when CUDA is unavailable.</param>
/// <param name="CudaLibTorchLoaded">Whether libtorch_cuda is loaded: false means a CPU-only libtorch.</param>
/// <param name="DriverFound">Whether the NVIDIA driver library (libcuda.so.1 / nvcuda.dll) loads.</param>
/// <param name="DriverCudaVersion">cuDriverGetVersion: the newest CUDA the driver supports (12080 = 12.8), when known.</param>
/// <param name="VisibleDevices">CUDA_VISIBLE_DEVICES, when set.</param>
internal sealed record CudaFacts(int DeviceCount, bool CudaLibTorchLoaded, bool DriverFound, int? DriverCudaVersion, string? VisibleDevices);

/// <summary>
/// The start-up check's messages, each naming what was found, what was expected and what to do (pure functions of
/// the facts; <see cref="TorchRuntimeCheck"/> gathers the facts).
/// </summary>
internal static class TorchRuntimeMessages
{
    /// <summary>A one-time warning when the loaded libtorch's major.minor differs from the one TorchSharp was built for; null otherwise.</summary>
    public static string? VersionWarning(string torchSharp, string expected, LibTorchVersion? found, string? libraryPath)
    {
        if (found is null || LibTorchVersion.MajorMinor(found.Version) is not { } have || LibTorchVersion.MajorMinor(expected) is not { } want
            || have == want)
            return null;
        return $"Liger: TorchSharp {torchSharp} is built for libtorch {Short(expected)}, but the libtorch it loaded is {found.Version} " +
               $"({libraryPath}, version read from {found.Source}). Another minor version can work (a missing or changed native " +
               $"function fails at the call that uses it), but it is not the pairing TorchSharp was built and tested with. To match: use PyTorch {want.Major}.{want.Minor}.x's torch/lib, " +
               $"or the NuGet package libtorch-cpu-linux-x64 {Short(expected)} (CPU) or TorchSharp-cuda-linux {torchSharp} (CUDA). " +
               "README, \"GPU set-up\", lists the pairings.";
    }

    /// <summary>The error when TorchSharp cannot load native libtorch at all.</summary>
    /// <remarks>
    /// The libtorch version TorchSharp was built for is unknown here (torch.__version__ needs the type initializer that
    /// just failed), so the fix names the bundles, whose version is TorchSharp's own.
    /// </remarks>
    public static string LoadFailure(string torchSharp, string rid, string? loaderError)
    {
        string reason = loaderError is null ? "" : $" The loader said: {loaderError.TrimEnd('.')}.";
        // The package is there but the system's C++ runtime is too old: package advice would mislead.
        if (loaderError?.Contains("GLIBCXX", StringComparison.Ordinal) == true)
            return $"TorchSharp {torchSharp} could not load native libtorch.{reason} This system's libstdc++ is older than the one " +
                   "TorchSharp's libLibTorchSharp.so was built with (GCC 13, GLIBCXX_3.4.32): install a newer libstdc++6, or mark that " +
                   "version need weak in the copied library as this repository's build/PatchLibTorchSharp.targets does (docs/design.md, " +
                   "\"Loading TorchSharp on Debian 12\"). TorchSharp's own message, which blames a missing package, is the inner exception.";
        return $"TorchSharp {torchSharp} could not load native libtorch.{reason} " +
               $"To fix it, reference the native libtorch TorchSharp {torchSharp} was built for: for the CPU, TorchSharp-cpu {torchSharp} " +
               $"or libtorch-cpu-{rid} of that libtorch version (2.10.0 for TorchSharp 0.107.0); for NVIDIA GPUs, TorchSharp-cuda-linux {torchSharp}; " +
               "or, with no native package, put the lib/ folder of the matching PyTorch install on LD_LIBRARY_PATH (README, \"GPU set-up\"). " +
               "TorchSharp's own message, which names only the CPU package, is the inner exception.";
    }

    /// <summary>
    /// The lines of .NET's DllNotFoundException that say something: the loader lists every candidate path it tried, and
    /// "LibTorchSharp.so: cannot open" for names that were never there hides the one line that matters (a missing
    /// dependency, a symbol version).
    /// </summary>
    public static string? LoaderReason(string message)
    {
        string[] lines = message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        string[] telling = lines.Skip(1)
            .Where(line => !(line.Contains("cannot open shared object file", StringComparison.Ordinal)
                             && Path.GetFileName(line.Split(':')[0]).Contains("LibTorchSharp", StringComparison.OrdinalIgnoreCase)))
            .Distinct()
            .ToArray();
        return telling.Length > 0 ? string.Join(" ", telling) : "libLibTorchSharp.so was not found next to the app or on the library path.";
    }

    /// <summary>Why cuda:<paramref name="index"/> cannot be used, or null when it can.</summary>
    public static string? CudaUnavailable(int index, string torchSharp, string expected, LibTorchVersion? found, string? libraryPath, CudaFacts facts)
    {
        if (index < facts.DeviceCount)
            return null;
        string libtorch = $"libtorch {found?.Version ?? "(version unknown)"} at {libraryPath ?? "(path unknown)"}";
        if (facts.DeviceCount > 0)
            return $"this machine shows {facts.DeviceCount} CUDA device{(facts.DeviceCount == 1 ? "" : "s")} (cuda:0 to cuda:{facts.DeviceCount - 1})" +
                   (facts.VisibleDevices is { } visible ? $", CUDA_VISIBLE_DEVICES is '{visible}'" : "") + ".";
        if (!facts.CudaLibTorchLoaded)
            return $"the libtorch TorchSharp loaded is a CPU-only build ({libtorch}). For CUDA, reference TorchSharp-cuda-linux {torchSharp} " +
                   $"(libtorch {Short(expected)}, CUDA 12.8) instead of libtorch-cpu-linux-x64, or put the lib/ folder of a CUDA build of " +
                   $"PyTorch {Short(expected)} on LD_LIBRARY_PATH (README, \"GPU set-up\").";
        string cuda = found?.CudaVersion is { } c ? $"CUDA {c}" : "CUDA";
        if (!facts.DriverFound)
            return $"the libtorch TorchSharp loaded is a {cuda} build ({libtorch}), but the NVIDIA driver library (libcuda.so.1) is not " +
                   $"on this machine: install the NVIDIA driver ({DriverMinimum(found?.CudaVersion)}).";
        string driver = facts.DriverCudaVersion is { } v ? $" (the driver supports CUDA up to {v / 1000}.{v % 1000 / 10})" : "";
        return $"the NVIDIA driver loads{driver} but torch sees no CUDA device for its {cuda} build ({libtorch}). Check `nvidia-smi`, " +
               (facts.VisibleDevices is { } devices ? $"CUDA_VISIBLE_DEVICES (now '{devices}'), " : "") +
               $"and that the driver is new enough ({DriverMinimum(found?.CudaVersion)}).";
    }

    // NVIDIA's minor-version compatibility: each CUDA major release runs on any driver of at least its family's minimum.
    private static string DriverMinimum(string? cuda) => cuda?.Split('.')[0] switch
    {
        "12" => "CUDA 12.x builds need driver 525 or newer",
        "13" => "CUDA 13.x builds need driver 580 or newer",
        _ => "CUDA 12.x builds need driver 525 or newer, CUDA 13.x builds 580 or newer",
    };

    // "2.10.0.0" (TorchSharp's form) reads as "2.10.0".
    internal static string Short(string version) =>
        version.Split('.') is { Length: 4 } parts && parts[3] == "0" ? string.Join('.', parts[..3]) : version;
}
