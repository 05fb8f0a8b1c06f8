using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using TorchSharp;

namespace Liger.Kernels.Runtime;

/// <summary>What the start-up check found: TorchSharp's version, the libtorch it expects and the one it loaded.</summary>
/// <param name="TorchSharpVersion">The TorchSharp package version, e.g. "0.107.0".</param>
/// <param name="ExpectedLibTorch">The libtorch TorchSharp was built for, e.g. "2.10.0".</param>
/// <param name="LibTorchPath">The libtorch_cpu library the process loaded, or null if it could not be found.</param>
/// <param name="LibTorch">That library's version, or null where nothing beside it tells.</param>
/// <param name="Warning">The mismatch warning written once to standard error, or null when the versions agree.</param>
public sealed record TorchRuntimeReport(string TorchSharpVersion, string ExpectedLibTorch, string? LibTorchPath, LibTorchVersion? LibTorch, string? Warning);

/// <summary>
/// A once-per-process check of the native libtorch behind TorchSharp, run where a device is first asked for
/// (<c>mlContext.Liger().Device</c>, Liger's CUDA kernel devices). It turns TorchSharp's load failure, which names
/// only the CPU package, into one message naming the packages for CPU and CUDA; warns once on standard error when the
/// loaded libtorch's minor version differs from the one TorchSharp was built for (such pairings often work: our GPU host
/// runs 0.107 over libtorch 2.11); and says why CUDA is unavailable when it is asked for.
/// </summary>
public static class TorchRuntimeCheck
{
    private static readonly Lazy<TorchRuntimeReport> report = new(Probe);
    private static readonly Lazy<CudaFacts> cudaFacts = new(ProbeCuda);

    /// <summary>The check's findings; the first access runs it (a few milliseconds, once).</summary>
    /// <exception cref="InvalidOperationException">TorchSharp cannot load native libtorch; the message says which package to add.</exception>
    public static TorchRuntimeReport Report => report.Value;

    /// <summary>Why torch device cuda:<paramref name="index"/> cannot be used (CPU-only libtorch, no driver, no device), or null when it can.</summary>
    public static string? WhyCudaUnavailable(int index)
    {
        TorchRuntimeReport found = Report;
        CudaFacts facts = cudaFacts.Value;
        return TorchRuntimeMessages.CudaUnavailable(index, found.TorchSharpVersion, found.ExpectedLibTorch, found.LibTorch, found.LibTorchPath, facts);
    }

    /// <summary>Throws, saying why, unless cuda:<paramref name="index"/> can be used.</summary>
    /// <param name="index">The CUDA device index.</param>
    /// <param name="requestedBy">Who asked, as the start of the sentence: "Option 'Device' is 'cuda:1'".</param>
    /// <exception cref="InvalidOperationException">The device cannot be used.</exception>
    public static void RequireCuda(int index, string requestedBy)
    {
        if (WhyCudaUnavailable(index) is { } reason)
            throw new InvalidOperationException($"{requestedBy}, but {reason}");
    }

    private static TorchRuntimeReport Probe()
    {
        string torchSharp = TorchSharpVersion();
        string expected;
        try
        {
            torch.InitializeDeviceType(DeviceType.CPU);
            expected = TorchRuntimeMessages.Short(torch.__version__);   // the libtorch TorchSharp was built for
        }
        catch (Exception e) when (e is NotSupportedException or TypeInitializationException)
        {
            throw new InvalidOperationException(TorchRuntimeMessages.LoadFailure(torchSharp, RuntimeInformation.RuntimeIdentifier, LoaderError()), e);
        }
        string? path = LoadedLibrary(["libtorch_cpu.so", "torch_cpu.dll", "libtorch_cpu.dylib"]);
        LibTorchVersion? version = path is null ? null : LibTorchVersion.Of(path);
        string? warning = TorchRuntimeMessages.VersionWarning(torchSharp, expected, version, path);
        if (warning is not null)
            Console.Error.WriteLine(warning);
        return new TorchRuntimeReport(torchSharp, expected, path, version, warning);
    }

    private static CudaFacts ProbeCuda()
    {
        bool available = torch.cuda.is_available();     // also makes TorchSharp try to load libtorch_cuda
        int count = available ? torch.cuda.device_count() : 0;
        bool cudaLibTorch = LoadedLibrary(["libtorch_cuda.so", "torch_cuda.dll"]) is not null;
        bool driver = NativeLibrary.TryLoad(OperatingSystem.IsWindows() ? "nvcuda.dll" : "libcuda.so.1", out IntPtr handle);
        int? driverVersion = null;
        if (driver && NativeLibrary.TryGetExport(handle, "cuDriverGetVersion", out IntPtr getVersion))
            driverVersion = DriverVersion(getVersion);
        return new CudaFacts(count, cudaLibTorch, driver, driverVersion, Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES"));
    }

    private static unsafe int? DriverVersion(IntPtr cuDriverGetVersion)
    {
        int version;
        return ((delegate* unmanaged<int*, int>)cuDriverGetVersion)(&version) == 0 ? version : null;
    }

    // The full path of a loaded native library whose file name is one of names: where the OS loader found libtorch
    // (a NuGet package, the app folder, or LD_LIBRARY_PATH's torch/lib), which TorchSharp does not report. On Linux
    // /proc/self/maps is read directly: Process.Modules builds an object per mapping (measured 18-55 ms on first use
    // against 1-4 ms).
    private static string? LoadedLibrary(string[] names)
    {
        if (OperatingSystem.IsLinux() && File.Exists("/proc/self/maps"))
        {
            foreach (string line in File.ReadLines("/proc/self/maps"))
            {
                int path = line.IndexOf('/');
                if (path >= 0 && names.Contains(Path.GetFileName(line.AsSpan(path)).ToString(), StringComparer.Ordinal))
                    return line[path..];
            }
            return null;
        }
        using var process = Process.GetCurrentProcess();
        foreach (ProcessModule module in process.Modules)
        {
            if (module.FileName is { } file && names.Contains(Path.GetFileName(file), StringComparer.OrdinalIgnoreCase))
                return file;
        }
        return null;
    }

    // The OS loader's own reason (a missing file, an unresolved symbol, a too-old libstdc++), which TorchSharp's message drops.
    private static string? LoaderError()
    {
        try
        {
            NativeLibrary.Load("LibTorchSharp", typeof(torch).Assembly, null);
            return null;
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            return TorchRuntimeMessages.LoaderReason(e.Message);
        }
    }

    private static string TorchSharpVersion()
    {
        Assembly assembly = typeof(torch).Assembly;
        string? informational = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
        return informational?.Split('+')[0] ?? assembly.GetName().Version?.ToString() ?? "(unknown)";
    }
}
