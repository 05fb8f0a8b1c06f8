using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

// Tests switch the process-wide LigerRuntime.CpuExecution and listen to the static OpExecuted event:
// they must run one at a time.
[assembly: DoNotParallelize]

namespace Liger.Kernels.Tests;

/// <summary>Process-wide test set-up.</summary>
[TestClass]
public static class AssemblySetup
{
    /// <summary>
    /// Every output a kernel path allocates starts as NaN, so an element a kernel forgets to write fails
    /// the finite checks and the comparisons instead of passing by luck (zeroed memory, stale values).
    /// </summary>
    [AssemblyInitialize]
    public static void Initialize(TestContext _)
    {
        Outputs.Poison = true;
        LigerRuntime.CpuExecution = CpuExecution.Torch;
    }
}

/// <summary>
/// The execution paths a kernel test runs on, as DynamicData rows. "cuda" is listed only where
/// torch sees a CUDA device: on a CPU-only machine it is absent (not skipped), and the same test binary
/// exercises it on a GPU host.
/// </summary>
public static class TestPaths
{
    /// <summary>CPU tensors, LigerRuntime.CpuExecution = Torch (the ops' TorchSharp paths).</summary>
    public const string Torch = "torch";

    /// <summary>CPU tensors, LigerRuntime.CpuExecution = IlgpuEmulator (the ILGPU kernels, emulated; slow).</summary>
    public const string Emulator = "emulator";

    /// <summary>CUDA tensors: the ILGPU kernels on the GPU.</summary>
    public const string Cuda = "cuda";

    /// <summary>Whether torch sees a CUDA device (decides whether "cuda" rows exist).</summary>
    public static bool CudaAvailable { get; } = cuda.is_available();

    /// <summary>
    /// Every path present on this machine, or those of them named in LIGER_TEST_PATHS (comma-separated):
    /// on the GPU host "cuda" alone leaves out what CI already runs on the CPU.
    /// </summary>
    public static IReadOnlyList<string> Names { get; } = Selected(CudaAvailable ? [Torch, Emulator, Cuda] : [Torch, Emulator]);

    private static string[] Selected(string[] present) =>
        Environment.GetEnvironmentVariable("LIGER_TEST_PATHS") is { Length: > 0 } wanted
            ? present.Where(p => wanted.Split(',', StringSplitOptions.TrimEntries).Contains(p)).ToArray()
            : present;

    /// <summary>The paths that launch ILGPU kernels (emulator, and cuda where present).</summary>
    public static IReadOnlyList<string> KernelNames { get; } = Names.Where(p => p != Torch).ToArray();

    /// <summary>Whether the path is the slow CPU emulator (large shapes are left out there).</summary>
    public static bool IsSlow(string path) => path == Emulator;

    /// <summary>Rows of one path each: every path present.</summary>
    public static IEnumerable<object[]> All => Names.Select(p => new object[] { p });

    /// <summary>Rows of one path each: the kernel paths only.</summary>
    public static IEnumerable<object[]> Kernels => KernelNames.Select(p => new object[] { p });
}

/// <summary>
/// Runs a block of a test on one execution path: sets LigerRuntime.CpuExecution (restored on dispose),
/// gives the torch device for the path, and records which path each Liger op reported through
/// LigerRuntime.OpExecuted, so a test can assert the op really ran where the row says.
/// Scopes nest: events go to the innermost open scope.
/// </summary>
public sealed class PathScope : IDisposable
{
    private static PathScope? current;
    private readonly PathScope? outer;
    private readonly CpuExecution previousExecution;
    private readonly List<(string Op, ExecutionPath Path)> events = new();
    private bool disposed;

    static PathScope() => LigerRuntime.OpExecuted += (op, path) => current?.events.Add((op, path));

    private PathScope(string name)
    {
        Name = name;
        (Device, Expected, var execution) = name switch
        {
            TestPaths.Torch => (CPU, ExecutionPath.TorchCpu, CpuExecution.Torch),
            TestPaths.Emulator => (CPU, ExecutionPath.EmulatedKernel, CpuExecution.IlgpuEmulator),
            // CPU execution stays Torch: a stray op on a CPU tensor would then report TorchCpu and fail.
            TestPaths.Cuda => (CUDA, ExecutionPath.CudaKernel, CpuExecution.Torch),
            _ => throw new ArgumentException($"Unknown execution path '{name}'.", nameof(name)),
        };
        previousExecution = LigerRuntime.CpuExecution;
        LigerRuntime.CpuExecution = execution;
        outer = current;
        current = this;
    }

    /// <summary>Opens a scope for the path named by a test row ("torch", "emulator", "cuda").</summary>
    public static PathScope Enter(string path) => new(path);

    /// <summary>The path's name.</summary>
    public string Name { get; }

    /// <summary>The torch device tensors of this path live on.</summary>
    public Device Device { get; }

    /// <summary>Where the ops must report they ran.</summary>
    public ExecutionPath Expected { get; }

    /// <summary>The (op, path) reports seen so far in this scope.</summary>
    public IReadOnlyList<(string Op, ExecutionPath Path)> Events => events;

    /// <summary>A copy of <paramref name="tensor"/> on this path's device (detached, contiguous).</summary>
    public Tensor On(Tensor tensor) => tensor.detach().to(Device).contiguous().clone();

    /// <summary>Asserts each op reported at least once and every report in this scope named the expected path.</summary>
    public void AssertRan(params string[] ops)
    {
        foreach (var op in ops)
            Assert.IsTrue(events.Any(e => e.Op == op),
                $"Op '{op}' was not reported on path '{Name}'. Reports: {Describe()}");
        var wrong = events.Where(e => e.Path != Expected).ToList();
        Assert.IsEmpty(wrong, $"On path '{Name}' every op must run as {Expected}. Reports: {Describe()}");
    }

    private string Describe() =>
        events.Count == 0 ? "(none)" : string.Join(", ", events.Select(e => $"{e.Op}:{e.Path}"));

    /// <summary>Restores CpuExecution and closes the scope.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        LigerRuntime.CpuExecution = previousExecution;
        current = outer;
    }
}

/// <summary>
/// A fresh random seed per test (set on torch's generator), quoted in every failure message so a failing
/// case can be replayed: set LIGER_TEST_SEED to the printed value to force it.
/// </summary>
public static class Seeds
{
    /// <summary>Picks a seed (or LIGER_TEST_SEED), seeds torch, and returns it.</summary>
    public static long Fresh()
    {
        long seed = long.TryParse(Environment.GetEnvironmentVariable("LIGER_TEST_SEED"), out var forced)
            ? forced
            : Random.Shared.NextInt64(1, int.MaxValue);
        manual_seed(seed);
        return seed;
    }

    /// <summary>The text that lets a failure be reproduced.</summary>
    public static string Describe(long seed) => $"seed {seed} (rerun with LIGER_TEST_SEED={seed})";
}
