using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>One configuration of the fine-tuning benchmark; null figures when it did not finish (see <see cref="Error"/>).</summary>
internal sealed record FitResult(string Kernels, string Arch, int Batch, int Context, string DType, int WarmupSteps, int TimedSteps,
    double? MedianStepMs, double? MinStepMs, double? TokensPerSecond, double? PeakGiB, double? WeightsGiB, double? FirstLoss,
    double? FinalLoss, string? Error, bool Checkpointing = false, MemoryBreakdown? Breakdown = null, StepCounts? Counts = null);

/// <summary>Medians over the timed steps of what one optimizer step launches and waits for (each step includes its
/// report: the pending loss and the gradient norm read to the host).</summary>
internal sealed record StepCounts(long Launches, long Syncs, long CopiesToHost);

/// <summary>
/// One forward and backward of the trained model outside the trainer (no optimizer state), each figure in GiB above
/// what was allocated before the forward: what the forward leaves saved for the backward, and the two passes' peaks.
/// </summary>
internal sealed record MemoryBreakdown(double SavedGiB, double ForwardPeakGiB, double BackwardPeakGiB);

/// <summary>
/// End-to-end fine-tuning with <see cref="CausalLMTrainer"/>: a random-weight model of a named architecture
/// trained on random tokens, with Liger's kernels (the default <see cref="LigerKernelOptions"/>) and without
/// (<see cref="LigerKernelOptions.None"/>), both in this one process so their ratio comes from one run.
/// Every report (one per step) synchronises with the device, so the time between two reports is one step.
/// The peak is the CUDA caching allocator's peak allocated bytes (weights, fp32 master weights, AdamW state and
/// gradients included), which the trainer resets at each report; it needs the shim that gpu-run.sh compiles.
/// </summary>
internal static class FitBenchmark
{
    private const double GiB = 1024.0 * 1024.0 * 1024.0;

    internal static int Run(string[] args)
    {
        string outDir = Option(args, "--out") ?? ".";
        string arch = Option(args, "--arch") ?? "llama-3.2-1b";
        string deviceName = Option(args, "--device") ?? "cuda";
        string dtypeName = Option(args, "--dtype") ?? "bf16";
        int batch = Int(args, "--batch", 4), warmup = Int(args, "--warmup", 3), steps = Int(args, "--steps", 10), seed = Int(args, "--seed", 42);
        bool checkpointing = args.Contains("--checkpointing");
        // The data-parallel path with this process as the whole group (NCCL on CUDA): what bucketing and the
        // all-reduce cost on one GPU; --zero 1 shards nothing at world size 1 but runs ZeRO-1's code.
        var distributed = args.Contains("--distributed")
            ? new Microsoft.ML.Liger.Distributed.DistributedOptions { WorldSize = 1, ZeroStage = Int(args, "--zero", 0), MasterPort = Int(args, "--port", 29511) }
            : null;
        int[] contexts = (Option(args, "--contexts") ?? "1024,2048").Split(',').Select(c => int.Parse(c, CultureInfo.InvariantCulture)).ToArray();
        var dtype = dtypeName switch
        {
            "bf16" => ScalarType.BFloat16,
            "fp32" => ScalarType.Float32,
            _ => throw new ArgumentException($"--dtype must be bf16 or fp32; got '{dtypeName}'."),
        };
        var device = new Device(deviceName);
        if (device.type == DeviceType.CUDA && !cuda.is_available())
        {
            Console.Error.WriteLine("fit on cuda needs CUDA (torch.cuda.is_available() is false); use --device cpu --arch tiny-llama for a smoke run");
            return 2;
        }
        var stats = BenchmarkDevice.Start(device);
        var counter = device.type == DeviceType.CUDA ? CudaApiCounts.TryStart() : null;
        Console.WriteLine($"fit: {arch}, {dtypeName}, {deviceName}, batch {batch}, contexts {string.Join(",", contexts)}, checkpointing {(checkpointing ? "on" : "off")}, " +
            (distributed is null ? "" : $"data parallel through {(device.type == DeviceType.CUDA ? "NCCL" : "MPI")} at world size 1, ZeRO stage {distributed.ZeroStage}, ") +
            $"{warmup} warm-up + {steps} timed steps; memory stats: {(stats is null ? "n/a" : "caching allocator")}");

        var results = new List<FitResult>();
        Directory.CreateDirectory(outDir);
        foreach (int context in contexts)
        {
            // Liger first: an eager OOM then cannot leave fragments behind that the Liger run would pay for.
            foreach (var (name, kernels) in new[] { ("Liger", new LigerKernelOptions()), ("eager", LigerKernelOptions.None) })
            {
                if (Option(args, "--only") is { } only && !only.Equals(name, StringComparison.OrdinalIgnoreCase))
                    continue;
                var result = Measure(name, kernels, arch, device, dtype, dtypeName, batch, context, warmup, steps, seed, checkpointing, stats, counter, distributed);
                results.Add(result);
                Console.WriteLine(result.Error is { } e
                    ? $"{name,-6} {batch}x{context}: {e}"
                    : $"{name,-6} {batch}x{context}: median {result.MedianStepMs:F1} ms/step, {result.TokensPerSecond:F0} tokens/s, " +
                      $"peak {Fmt(result.PeakGiB)} GiB, loss {result.FirstLoss:F3} -> {result.FinalLoss:F3}" +
                      (result.Counts is { } n ? $"; per step {n.Launches} launches, {n.Syncs} host syncs, {n.CopiesToHost} copies to host" : "") +
                      (result.Breakdown is { } b ? $"; one step outside the trainer: saved {b.SavedGiB:F2}, forward peak {b.ForwardPeakGiB:F2}, backward peak {b.BackwardPeakGiB:F2} GiB" : ""));
                // Written after every configuration: a run cut short by the time limit keeps what it measured.
                Write(outDir, results, Header(arch, dtypeName, device, batch, warmup, steps, checkpointing) +
                    (distributed is null ? "" : $", data parallel at world size 1 (ZeRO stage {distributed.ZeroStage})"));
            }
        }
        Console.WriteLine();
        Console.Write(Table(results));
        return 0;
    }

    private static FitResult Measure(string name, LigerKernelOptions kernels, string arch, Device device, ScalarType dtype, string dtypeName,
        int batch, int context, int warmup, int steps, int seed, bool checkpointing, CudaMemoryStats? stats, CudaApiCounts? counter,
        Microsoft.ML.Liger.Distributed.DistributedOptions? distributed)
    {
        var counts = new List<ApiCounts>();
        BenchmarkDevice.FreeMemory(device);
        var stamps = new List<double>();
        var peaks = new List<long?>();
        var losses = new List<double>();
        double? weightsGiB = null;
        MemoryBreakdown? breakdown = null;
        CausalLM? model = null;
        try
        {
            var config = CausalLMArchitectures.Create(arch);
            long before = stats?.Allocated() ?? 0;
            model = new CausalLM(config, new CausalLMOptions { Kernels = kernels, DType = dtype, Device = device, Seed = seed });
            if (stats is not null)
            {
                cuda.synchronize();
                weightsGiB = (stats.Allocated() - before) / GiB;
            }
            var data = RandomExamples(batch * (warmup + steps), context, (int)config.VocabSize, seed);
            var clock = Stopwatch.StartNew();
            var options = new CausalLMTrainingOptions
            {
                MaxContextLength = context, BatchSize = batch, MaxSteps = warmup + steps, LoggingInterval = 1,
                LearningRate = 1e-4, Kernels = kernels, Seed = seed, GradientCheckpointing = checkpointing, Distributed = distributed,
                OnProgress = p =>
                {
                    if (p.EvalLoss is not null)
                        return;
                    stamps.Add(clock.Elapsed.TotalMilliseconds);
                    if (counter is not null)
                        counts.Add(counter.Read());
                    peaks.Add(p.PeakMemoryBytes);
                    losses.Add(p.Loss);
                },
            };
            new CausalLMTrainer(model, options, padTokenId: 0, eosTokenId: 1).Train(data);
            if (stats is not null)
                breakdown = Breakdown(model, data.Take(batch).ToList(), context, checkpointing, stats);
        }
        catch (ExternalException e) when (e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase))
        {
            return Failed(name, arch, batch, context, dtypeName, warmup, steps, weightsGiB, "OOM");
        }
        catch (Exception e)
        {
            string first = e.Message.Split('\n')[0];
            return Failed(name, arch, batch, context, dtypeName, warmup, steps, weightsGiB, $"{e.GetType().Name}: {first[..Math.Min(first.Length, 200)]}");
        }
        finally
        {
            model?.Dispose();
        }

        // Step i's time is the gap between reports i-1 and i; the first warm-up step also pays for setup.
        var timed = Enumerable.Range(warmup, steps).Select(i => stamps[i] - stamps[i - 1]).Order().ToArray();
        double median = timed.Length % 2 == 1 ? timed[timed.Length / 2] : (timed[timed.Length / 2 - 1] + timed[timed.Length / 2]) / 2;
        long? peak = peaks.Skip(warmup).Any(p => p is null) ? null : peaks.Skip(warmup).Max();
        return new FitResult(name, arch, batch, context, dtypeName, warmup, steps, median, timed[0], (double)batch * context / (median / 1e3),
            peak / GiB, weightsGiB, losses[0], losses[^1], null, checkpointing, breakdown, PerStep(counts, warmup, steps));
    }

    private static StepCounts? PerStep(List<ApiCounts> counts, int warmup, int steps)
    {
        if (counts.Count < warmup + steps)
            return null;
        var perStep = Enumerable.Range(warmup, steps).Select(i => counts[i] - counts[i - 1]).ToArray();
        static long Median(IEnumerable<long> values) { var v = values.Order().ToArray(); return v[v.Length / 2]; }
        return new StepCounts(Median(perStep.Select(c => c.Launches)), Median(perStep.Select(c => c.Syncs)), Median(perStep.Select(c => c.CopiesToHost)));
    }

    /// <summary>Where a step's memory goes besides the optimizer: see <see cref="MemoryBreakdown"/>.</summary>
    private static MemoryBreakdown Breakdown(CausalLM model, List<TokenizedExample> rows, int context, bool checkpointing, CudaMemoryStats stats)
    {
        var device = model.LmHeadWeight.device;
        long[] shape = [rows.Count, context];
        var ids = rows.SelectMany(r => r.Tokens.Select(t => (long)t)).ToArray();
        model.train();
        model.GradientCheckpointing = checkpointing;
        BenchmarkDevice.FreeMemory(device);
        using var scope = NewDisposeScope();
        var input = new CausalLMInput { InputIds = tensor(ids, shape, device: device), Labels = tensor(ids, shape, device: device) };
        cuda.synchronize();
        long start = stats.Allocated();
        stats.ResetPeak();
        var output = model.forward(input);
        cuda.synchronize();
        long saved = stats.Allocated() - start, forwardPeak = stats.Peak() - start;
        stats.ResetPeak();
        output.Loss!.backward();
        cuda.synchronize();
        long backwardPeak = stats.Peak() - start;
        output.Dispose();
        foreach (var p in model.parameters())
            p.grad = null;
        model.GradientCheckpointing = false;
        return new MemoryBreakdown(saved / GiB, forwardPeak / GiB, backwardPeak / GiB);
    }

    private static FitResult Failed(string name, string arch, int batch, int context, string dtype, int warmup, int steps, double? weightsGiB, string error) =>
        new(name, arch, batch, context, dtype, warmup, steps, null, null, null, null, weightsGiB, null, null, error);

    /// <summary>Examples of exactly <paramref name="length"/> uniform random tokens: no padding, every token a target.</summary>
    private static List<TokenizedExample> RandomExamples(int count, int length, int vocabulary, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count)
            .Select(_ => new TokenizedExample(Enumerable.Range(0, length).Select(_ => random.Next(vocabulary)).ToArray(), PromptLength: 0))
            .ToList();
    }

    private static string Header(string arch, string dtype, Device device, int batch, int warmup, int steps, bool checkpointing) =>
        $"{arch} (random weights), {dtype} weights with fp32 master weights and AdamW, {device}, batch {batch}, " +
        $"gradient checkpointing {(checkpointing ? "on" : "off")}, " +
        $"{warmup} warm-up + median of {steps} timed steps, one report (one host sync) per step";

    private static string Table(List<FitResult> results)
    {
        var table = new StringBuilder();
        table.AppendLine("| batch x context | kernels | median step ms | tokens/s | peak allocated GiB | weights GiB | saved by forward GiB | fwd / bwd peak above start GiB | launches / host syncs per step | loss first -> last | Liger/eager tokens/s | Liger/eager peak |");
        table.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|");
        foreach (var r in results)
        {
            var eager = results.FirstOrDefault(o => o.Kernels == "eager" && o.Context == r.Context && o.Batch == r.Batch);
            string speed = "", memory = "";
            if (r.Kernels == "Liger" && eager is not null)
            {
                speed = r.TokensPerSecond is double a && eager.TokensPerSecond is double b ? $"{a / b:F2}x" : eager.Error ?? "";
                memory = r.PeakGiB is double c && eager.PeakGiB is double d ? $"{c / d:F2}x" : eager.Error ?? "";
            }
            string loss = r.FirstLoss is null ? r.Error ?? "" : $"{r.FirstLoss:F3} -> {r.FinalLoss:F3}";
            table.AppendLine($"| {r.Batch} x {r.Context} | {r.Kernels} | {Num(r.MedianStepMs, "F1")} | {Num(r.TokensPerSecond, "F0")} | " +
                             $"{Fmt(r.PeakGiB)} | {Fmt(r.WeightsGiB)} | {Fmt(r.Breakdown?.SavedGiB)} | " +
                             $"{(r.Breakdown is { } split ? $"{split.ForwardPeakGiB:F2} / {split.BackwardPeakGiB:F2}" : "—")} | " +
                             $"{(r.Counts is { } n ? $"{n.Launches} / {n.Syncs}" : "—")} | {loss} | {speed} | {memory} |");
        }
        return table.ToString();
    }

    private static void Write(string outDir, List<FitResult> results, string header)
    {
        File.WriteAllText(Path.Combine(outDir, "fit-benchmarks.md"), $"{header}\n\n{Table(results)}");
        File.WriteAllText(Path.Combine(outDir, "fit-benchmarks.json"), JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
    }

    private static string Num(double? value, string format) => value is double v ? v.ToString(format, CultureInfo.InvariantCulture) : "—";

    private static string Fmt(double? gib) => Num(gib, "F2");

    private static int Int(string[] args, string name, int fallback) =>
        Option(args, name) is { } value ? int.Parse(value, CultureInfo.InvariantCulture) : fallback;

    private static string? Option(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
