using System.Diagnostics;
using System.Globalization;
using Liger.Kernels.Runtime;
using Microsoft.ML.Liger.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>One loss at one shape: times and peaks of both sides (null where a side failed, see the errors).</summary>
internal sealed record PreferenceResult(string Loss, PreferenceShape Shape, string DType, bool Bias, double InputsMiB,
    double? EagerMs, double? LigerMs, double? EagerMiB, double? LigerMiB, double? MaxRelativeDifference, string? EagerError, string? LigerError, string? DifferenceError)
{
    internal double? Speedup => EagerMs / LigerMs;
    internal double? MemoryRatio => LigerMiB / EagerMiB;
    internal double? EagerWithInputs => EagerMiB + InputsMiB;
    internal double? LigerWithInputs => LigerMiB + InputsMiB;
    internal double? MemoryRatioWithInputs => LigerWithInputs / EagerWithInputs;
}

/// <summary>
/// The chunked preference losses (ORPO, DPO, CPO, SimPO, KTO) against their eager composites, in one process: first the
/// correctness check at a small shape (float32 and bfloat16), then per loss at the benchmark shape the median time of a
/// forward + backward step (autograd.grad of the loss by hidden, weight and bias, between two device synchronisations)
/// and the peak memory allocated during one step beyond its inputs. Liger runs before eager, so an eager OOM cannot
/// leave anything behind that Liger's figures would pay for.
/// </summary>
internal static class PreferenceBenchmark
{
    private const double MiB = 1024.0 * 1024.0;

    /// <summary>The shape of the correctness check: two pairs (or four KTO sequences), odd vocabulary.</summary>
    private static readonly PreferenceShape CheckShape = new(4, 64, 256, 1000);

    /// <summary>The shape of Liger-Kernel's KTO memory figure (30.7 GB eager, 3.4 GB Liger), an extra KTO row by default.</summary>
    private static readonly PreferenceShape KtoReferenceShape = new(32, 512, 1024, 128256);

    internal static int Run(string[] args)
    {
        var options = new Arguments(args);
        bool small = options.Flag("--small");
        string outDir = options.Value("--out") ?? ".";
        string? only = options.Value("--only");
        int iters = options.Int("--iters", small ? 5 : 20), warmup = options.Int("--warmup", small ? 1 : 3);
        int seed = options.Int("--seed", Environment.TickCount & 0x7fffffff);
        var dtype = ParseDType(options.Value("--dtype") ?? "bf16");
        var device = new Device(options.Value("--device") ?? (cuda.is_available() ? "cuda" : "cpu"));
        if (device.type == DeviceType.CUDA && !cuda.is_available())
        {
            Console.Error.WriteLine("prefs on cuda needs CUDA (torch.cuda.is_available() is false); use --device cpu --small for a smoke run");
            return 2;
        }
        bool customShape = new[] { "--batch", "--seq", "--hidden", "--vocab" }.Any(name => options.Value(name) is not null);
        var defaults = small ? new PreferenceShape(4, 32, 64, 500) : new PreferenceShape(16, 1024, 4096, 128256);
        var shape = new PreferenceShape(options.Long("--batch", defaults.Rows), options.Long("--seq", defaults.Length),
            options.Long("--hidden", defaults.Size), options.Long("--vocab", defaults.Vocab));
        if (shape.Rows < 2 || shape.Rows % 2 != 0)
            throw new ArgumentException($"--batch is the rows of the hidden states (paired: chosen then rejected), an even number of at least 2; got {shape.Rows}.");

        var stats = BenchmarkDevice.Start(device);
        string deviceName = device.type == DeviceType.CUDA ? LigerRuntime.Cuda(device.index < 0 ? 0 : device.index).Accelerator.Name : "CPU";
        var random = new Random(seed);
        var report = new PreferenceReport(outDir, $"{deviceName} ({device}), {DTypeName(dtype)}, seed {seed}, median of {iters} steps after at least " +
            $"{warmup} warm-up steps and 1 s; memory stats: {(stats is null ? "n/a" : "CUDA caching allocator")}");
        Console.WriteLine($"prefs: {report.Header}");

        bool Selected(PreferenceLossCase c) => only is null || c.Name.Contains(only, StringComparison.OrdinalIgnoreCase);
        if (!options.Flag("--no-check"))
            foreach (var checkType in new[] { ScalarType.Float32, ScalarType.BFloat16 })
                foreach (var lossCase in PreferenceLossCases.Benchmarked.Concat(PreferenceLossCases.Variants).Where(Selected))
                {
                    var check = PreferenceCheck.Run(lossCase, CheckShape, checkType, device, random);
                    report.Checks.Add(check);
                    Console.WriteLine(PreferenceReport.CheckLine(check));
                    report.Write();
                }

        if (!options.Flag("--check-only"))
        {
            var rows = PreferenceLossCases.Benchmarked.Where(Selected).Select(c => (c, shape)).ToList();
            if (!small && !customShape && Selected(PreferenceLossCases.Benchmarked[^1]))
                rows.Add((PreferenceLossCases.Benchmarked[^1], KtoReferenceShape));
            foreach (var (lossCase, rowShape) in rows)
            {
                var result = Measure(lossCase, rowShape, dtype, device, iters, warmup, stats, random);
                report.Results.Add(result);
                Console.WriteLine(PreferenceReport.ResultLine(result));
                // Written after every row: a run cut short keeps what it measured.
                report.Write();
            }
        }
        Console.WriteLine();
        Console.Write(report.Markdown());
        int failed = report.Checks.Count(c => !c.Passed);
        Console.WriteLine(failed == 0 ? $"check: all {report.Checks.Count} rows within tolerance" : $"check: {failed} of {report.Checks.Count} rows FAILED");
        return failed == 0 ? 0 : 1;
    }

    private static PreferenceResult Measure(PreferenceLossCase lossCase, PreferenceShape shape, ScalarType dtype, Device device, int iters,
        int warmup, CudaMemoryStats? stats, Random random)
    {
        FreeMemory(device);
        using var inputs = lossCase.Inputs(shape, dtype, device, lossCase.BenchmarkBias, random);
        void Step(Func<PreferenceInputs, PreferenceOutput> loss)
        {
            using var scope = NewDisposeScope();
            PreferenceCheck.Evaluate(loss, inputs);
        }
        var (ligerMs, ligerTimeError) = Try(() => Median(() => Step(lossCase.Liger), device, iters, warmup));
        var (ligerMiB, ligerPeakError) = Try(() => Peak(() => Step(lossCase.Liger), device, stats));
        var (difference, differenceError) = Try(() => MaxDifference(lossCase, inputs));
        var (eagerMs, eagerTimeError) = Try(() => Median(() => Step(lossCase.Eager), device, iters, warmup));
        var (eagerMiB, eagerPeakError) = Try(() => Peak(() => Step(lossCase.Eager), device, stats));
        return new PreferenceResult(lossCase.Name, shape, DTypeName(dtype), inputs.Bias is not null, inputs.Bytes / MiB,
            eagerMs, ligerMs, eagerMiB, ligerMiB, difference, eagerTimeError ?? eagerPeakError, ligerTimeError ?? ligerPeakError, differenceError);
    }

    /// <summary>The largest relative difference (over eager's largest magnitude) of the loss and the gradients at this shape.</summary>
    private static double? MaxDifference(PreferenceLossCase lossCase, PreferenceInputs inputs)
    {
        using var scope = NewDisposeScope();
        var (liger, ligerGrads) = PreferenceCheck.Evaluate(lossCase.Liger, inputs);
        var (eager, eagerGrads) = PreferenceCheck.Evaluate(lossCase.Eager, inputs);
        return eagerGrads.Zip(ligerGrads, Difference.Of).Append(Difference.Of(eager.Loss, liger.Loss)).Max(d => d.Relative);
    }

    private static double? Median(Action step, Device device, int iters, int warmup)
    {
        // At least a second of warm-up as well: .NET compiles hot methods twice (tiered JIT).
        var warm = Stopwatch.StartNew();
        for (int i = 0; i < warmup || warm.Elapsed.TotalSeconds < 1.0; i++)
            step();
        var times = new double[iters];
        var clock = new Stopwatch();
        for (int i = 0; i < iters; i++)
        {
            Sync(device);
            clock.Restart();
            step();
            Sync(device);
            times[i] = clock.Elapsed.TotalMilliseconds;
        }
        Array.Sort(times);
        return iters % 2 == 1 ? times[iters / 2] : (times[iters / 2 - 1] + times[iters / 2]) / 2;
    }

    private static double? Peak(Action step, Device device, CudaMemoryStats? stats)
    {
        if (stats is null)
            return null;
        Sync(device);
        stats.ResetPeak();
        long baseline = stats.Allocated();
        step();
        Sync(device);
        return (stats.Peak() - baseline) / MiB;
    }

    private static (double? Value, string? Error) Try(Func<double?> measure)
    {
        try
        {
            return (measure(), null);
        }
        catch (Exception e)
        {
            FreeMemory(null);
            return (null, Describe(e));
        }
    }

    internal static string Describe(Exception e)
    {
        if (e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase))
            return "OOM";
        string first = e.Message.Split('\n')[0];
        return $"{e.GetType().Name}: {first[..Math.Min(first.Length, 200)]}";
    }

    /// <summary>Lets the previous row's tensors go (TorchSharp binds no empty_cache; allocated bytes, which are reported, do not count the cache).</summary>
    private static void FreeMemory(Device? device)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        if (device is not null)
            Sync(device);
    }

    private static void Sync(Device device)
    {
        if (device.type == DeviceType.CUDA)
            cuda.synchronize();
    }

    internal static string DTypeName(ScalarType dtype) => dtype == ScalarType.BFloat16 ? "bf16" : dtype == ScalarType.Float32 ? "fp32" : dtype.ToString();

    private static ScalarType ParseDType(string name) => name switch
    {
        "bf16" => ScalarType.BFloat16,
        "fp32" => ScalarType.Float32,
        _ => throw new ArgumentException($"--dtype must be bf16 or fp32; got '{name}'."),
    };

    /// <summary>The command line: "--name value" options and "--name" flags.</summary>
    private sealed class Arguments(string[] args)
    {
        internal string? Value(string name)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
        }

        internal bool Flag(string name) => args.Contains(name);

        internal int Int(string name, int fallback) => Value(name) is { } v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;

        internal long Long(string name, long fallback) => Value(name) is { } v ? long.Parse(v, CultureInfo.InvariantCulture) : fallback;
    }
}
