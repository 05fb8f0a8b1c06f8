using BenchmarkDotNet.Attributes;
using Liger.Kernels.Runtime;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>
/// One op's forward + backward on the CPU: Liger's TorchSharp path (<see cref="CpuExecution.Torch"/>) against the
/// eager composite it replaces. The claim under test: no Liger op is slower than eager on the CPU. A subclass makes
/// its inputs (seeded, after the thread count is pinned) and one step of each side; temporaries of a step are freed
/// with it. Medians are reported beside BenchmarkDotNet's mean: a shared machine's slow outliers move the mean.
/// </summary>
[MemoryDiagnoser(false), MedianColumn]
public abstract class CpuOpBenchmark
{
    [GlobalSetup]
    public void Setup()
    {
        LigerRuntime.CpuExecution = CpuExecution.Torch;
        CpuThreads.Pin();
        manual_seed(0);
        CreateInputs();
    }

    [Benchmark(Baseline = true)]
    public void Eager()
    {
        using var scope = NewDisposeScope();
        EagerStep();
    }

    [Benchmark]
    public void Liger()
    {
        using var scope = NewDisposeScope();
        LigerStep();
    }

    /// <summary>Creates the inputs from the benchmark's parameters.</summary>
    protected abstract void CreateInputs();

    /// <summary>Forward + backward of the eager composite.</summary>
    protected abstract void EagerStep();

    /// <summary>Forward + backward of Liger's function.</summary>
    protected abstract void LigerStep();
}

/// <summary>
/// A fixed intra-op thread count (4, or fewer cores): on a shared many-core VM, libtorch's default of
/// one thread per core made run-to-run spread larger than the differences being measured.
/// </summary>
internal static class CpuThreads
{
    internal static void Pin() => set_num_threads(Math.Min(4, Environment.ProcessorCount));
}
