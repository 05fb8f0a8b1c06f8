using Microsoft.ML.Liger.Training;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>One benchmark row: an op at one shape, eager TorchSharp against Liger, measured in the same run.</summary>
internal sealed record GpuCase(string Name, string Shape, long MinimumBytes, Func<GpuCaseState> Create);

/// <summary>The tensors of a case and its two steps (forward + backward each).</summary>
internal sealed class GpuCaseState(Action eager, Action liger, Action? reset = null, Func<double>? maxDifference = null)
{
    internal Action Eager { get; } = eager;
    internal Action Liger { get; } = liger;
    internal Action Reset { get; } = reset ?? (() => { });
    internal Func<double>? MaxDifference { get; } = maxDifference;
}

internal sealed record GpuResult(string Name, string Shape, double EagerMs, double LigerMs, double? EagerMiB,
    double? LigerMiB, double Ratio, double BandwidthFraction, double? MaxDifference);

/// <summary>
/// Times forward + backward of each op on the GPU: warm-up, then the median of N device-synchronised
/// runs (host clock between two cuda synchronisations), and the peak allocated memory of one step
/// beyond the inputs. Eager and Liger alternate within the same process, so ratios come from one run.
/// </summary>
internal static partial class GpuBenchmark
{
    internal static int Run(string[] args)
    {
        string outDir = Option(args, "--out") ?? ".";
        string? only = Option(args, "--only");
        int iters = int.Parse(Option(args, "--iters") ?? "30");
        if (!cuda.is_available())
        {
            Console.Error.WriteLine("gpu mode needs CUDA (torch.cuda.is_available() is false)");
            return 2;
        }
        var stats = CudaMemoryStats.TryLoad();
        var device = LigerRuntime.Cuda(0);
        Console.WriteLine($"device: {device.Accelerator.Name}; kernels: {device}; memory stats: {(stats is null ? "n/a" : "caching allocator")}");

        double copyBandwidth = MeasureCopyBandwidth(iters);
        Console.WriteLine($"device-to-device copy: {copyBandwidth / 1e12:F2} TB/s (bytes read + written)");

        var results = new List<GpuResult>();
        foreach (var benchCase in Cases())
        {
            if (only is not null && !benchCase.Name.Contains(only, StringComparison.OrdinalIgnoreCase))
                continue;
            results.Add(Measure(benchCase, iters, stats, copyBandwidth));
            var r = results[^1];
            Console.WriteLine($"{r.Name,-14} {r.Shape,-28} eager {r.EagerMs,8:F3} ms  liger {r.LigerMs,8:F3} ms  {r.Ratio,5:F2}x  " +
                              $"{r.BandwidthFraction * 100,5:F1}% bw  mem {Fmt(r.EagerMiB)} / {Fmt(r.LigerMiB)} MiB  maxdiff {r.MaxDifference:E2}");
        }

        var table = new StringBuilder();
        table.AppendLine($"| op | shape | eager ms | Liger ms | eager/Liger | % of copy bw | eager MiB | Liger MiB |");
        table.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var r in results)
            table.AppendLine($"| {r.Name} | {r.Shape} | {r.EagerMs:F3} | {r.LigerMs:F3} | {r.Ratio:F2}x | {r.BandwidthFraction * 100:F0}% | {Fmt(r.EagerMiB)} | {Fmt(r.LigerMiB)} |");
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "gpu-benchmarks.md"),
            $"device: {device.Accelerator.Name}, copy bandwidth {copyBandwidth / 1e12:F2} TB/s, median of {iters}\n\n{table}");
        File.WriteAllText(Path.Combine(outDir, "gpu-benchmarks.json"), JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine();
        Console.Write(table);
        return 0;
    }

    /// <summary>Every row, op by op (one file of cases per op under Cases/).</summary>
    private static IEnumerable<GpuCase> Cases() =>
    [
        .. RmsNormCases(), .. FusedAddRmsNormCases(), .. LayerNormCases(), .. SwiGluCases(), .. GeGluCases(), .. RopeCases(),
        .. CrossEntropyCases(), .. FusedLinearCrossEntropyCases(), .. RmsNormLinearsCases(), .. GatedLinearCases(),
    ];

    private static GpuResult Measure(GpuCase benchCase, int iters, CudaMemoryStats? stats, double copyBandwidth)
    {
        using var scope = NewDisposeScope();
        var state = benchCase.Create();
        double? difference = state.MaxDifference?.Invoke();
        state.Reset();
        double eager = Median(state.Eager, state.Reset, iters);
        double liger = Median(state.Liger, state.Reset, iters);
        double? eagerMiB = Peak(state.Eager, state.Reset, stats);
        double? ligerMiB = Peak(state.Liger, state.Reset, stats);
        return new GpuResult(benchCase.Name, benchCase.Shape, eager, liger, eagerMiB, ligerMiB, eager / liger,
            benchCase.MinimumBytes / (liger / 1e3) / copyBandwidth, difference);
    }

    private static double Median(Action step, Action reset, int iters)
    {
        // Warm up for at least a second: .NET compiles hot methods twice (tiered JIT), and a few calls
        // leave the host side of a step running unoptimised code, which is not what training sees.
        var warm = Stopwatch.StartNew();
        for (int i = 0; i < 10 || warm.Elapsed.TotalSeconds < 1.0; i++) { reset(); step(); }
        var times = new List<double>(iters);
        var clock = new Stopwatch();
        for (int i = 0; i < iters; i++)
        {
            reset();
            cuda.synchronize();
            clock.Restart();
            step();
            cuda.synchronize();
            times.Add(clock.Elapsed.TotalMilliseconds);
        }
        times.Sort();
        return times[times.Count / 2];
    }

    private static double? Peak(Action step, Action reset, CudaMemoryStats? stats)
    {
        if (stats is null)
            return null;
        reset();
        cuda.synchronize();
        stats.ResetPeak();
        long baseline = stats.Allocated();
        step();
        cuda.synchronize();
        return (stats.Peak() - baseline) / (1024.0 * 1024.0);
    }

    private static double MeasureCopyBandwidth(int iters)
    {
        using var scope = NewDisposeScope();
        long n = 1L << 28; // 512 MiB of bf16 each way
        var src = randn(n, dtype: ScalarType.BFloat16, device: CUDA);
        var dst = empty_like(src);
        double ms = Median(() => dst.copy_(src), () => { }, iters);
        return 2.0 * n * 2 / (ms / 1e3);
    }

    private static string Fmt(double? mib) => mib is null ? "n/a" : $"{mib:F0}";

    private static string? Option(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
