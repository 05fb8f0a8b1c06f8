using System.Globalization;
using System.Text;
using Microsoft.ML;
using Microsoft.ML.Liger;
using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Sweeps;
using Microsoft.ML.Liger.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>
/// The points of <see cref="SweepBenchmark"/>, in grid order (the first property varies slowest): checkpointing on
/// before off, so the configurations most likely to fit are measured first and a run cut short keeps them; context
/// length ascending; Liger before eager at each context, so an eager out-of-memory cannot leave fragments behind that
/// the Liger trial would pay for. The command line replaces the choices.
/// </summary>
public sealed class ContextLengthPoint
{
    /// <summary>Recompute each decoder layer in the backward.</summary>
    [Choice(true)]
    public bool GradientCheckpointing { get; set; } = true;

    /// <summary>Tokens per packed row.</summary>
    [Choice(2048, 4096, 8192, 16384, 32768)]
    public int MaxContextLength { get; set; } = 2048;

    /// <summary>Liger's kernels (the default <see cref="LigerKernelOptions"/>) or none.</summary>
    [Choice(true, false)]
    public bool Liger { get; set; } = true;
}

/// <summary>
/// The sweep API on a random-init model (Llama 3.2 1B's shape by default, bf16 with fp32 master weights) trained on
/// random tokens with packing, so every row is exactly the context long: a grid over context length, Liger on/off
/// and gradient checkpointing at a fixed batch, a few steps per trial. Out-of-memory trials are recorded as
/// infeasible and the grid goes on. Writes sweep-benchmarks.md (the largest context that fits per setting, with
/// its tokens/s and peak memory, then every trial) and the sweep's own CSV/JSON under --out, after every trial.
/// Peak memory is the CUDA caching allocator's peak allocated bytes (the trainer reads it through the shim that
/// gpu-run.sh compiles), the process's peak resident set on the CPU.
/// </summary>
internal static class SweepBenchmark
{
    private const double GiB = 1024.0 * 1024.0 * 1024.0;

    internal static int Run(string[] args)
    {
        bool small = args.Contains("--small");
        string outDir = Option(args, "--out") ?? ".";
        string arch = Option(args, "--arch") ?? (small ? "tiny-llama" : "llama-3.2-1b");
        string deviceName = Option(args, "--device") ?? (small ? "cpu" : "cuda");
        int batch = Int(args, "--batch", 1), steps = Int(args, "--steps", 4), seed = Int(args, "--seed", 42);
        int seconds = Int(args, "--seconds", small ? 300 : 360); // no trial starts after this: with the shim's compile and the last trial, about 8 minutes in all
        int[] contexts = (Option(args, "--contexts") ?? (small ? "16,32,64" : "2048,4096,8192,16384,32768"))
            .Split(',').Select(c => int.Parse(c, CultureInfo.InvariantCulture)).ToArray();
        bool[] checkpointing = (Option(args, "--checkpointing") ?? "on") switch
        {
            "on" => [true],
            "off" => [false],
            "both" => [true, false],
            var other => throw new ArgumentException($"--checkpointing must be on, off or both; got '{other}'."),
        };
        var device = new Device(deviceName);
        if (device.type == DeviceType.CUDA && !cuda.is_available())
        {
            Console.Error.WriteLine("sweep on cuda needs CUDA (torch.cuda.is_available() is false); use --small for a CPU run");
            return 2;
        }
        var stats = BenchmarkDevice.Start(device);
        string memory = device.type == DeviceType.CUDA
            ? stats is null ? "n/a (no LIGER_CUDA_STATS shim)" : "CUDA caching allocator's peak allocated"
            : "peak resident set of the process";

        var ml = new MLContext(seed);
        var tokenizer = CausalLMTokenizer.Gpt2();
        // One row more than the trials use at the largest context, so no trained row is the padded last one.
        long tokensNeeded = (long)contexts.Max() * batch * (steps + 1);
        var texts = RandomText(tokenizer, tokensNeeded, seed);
        var train = ml.Data.LoadFromEnumerable(texts.Select(t => new TextRow { Text = t }));
        var baseOptions = new FineTuneCausalLMOptions
        {
            Architecture = arch,
            // Llama 3.2 1B's vocabulary (its tokenizer is not packaged; GPT-2's ids all fit), so the loss's size is the real one.
            ArchitectureOverrides = arch == "llama-3.2-1b" ? new Dictionary<string, object?> { ["vocab_size"] = 128256L } : null,
            Tokenizer = tokenizer,
            DataFormat = DataFormat.Text,
            Device = deviceName,
            Precision = device.type == DeviceType.CUDA ? TrainingPrecision.BFloat16 : TrainingPrecision.Float32,
            Packing = true,
            BatchSize = batch,
            LearningRate = 1e-4,
            Seed = seed,
            OnProgress = p => Console.WriteLine($"    {p}"),
        };

        var space = new SearchSpace<ContextLengthPoint>()
            .WithChoice(nameof(ContextLengthPoint.MaxContextLength), contexts.Cast<object>().ToArray())
            .WithChoice(nameof(ContextLengthPoint.GradientCheckpointing), checkpointing.Cast<object>().ToArray());
        var sweep = ml.Liger().CreateSweep(baseOptions);
        sweep.SetSearchSpace(space, (point, options) =>
        {
            options.MaxContextLength = point.MaxContextLength;
            options.Kernels = point.Liger ? new LigerKernelOptions() : LigerKernelOptions.None;
            options.GradientCheckpointing = point.GradientCheckpointing;
        });
        sweep.SetDataset(train);
        sweep.SetGridSearchTuner();
        sweep.SetMaxTrials(contexts.Length * 2 * checkpointing.Length);
        sweep.SetStepsPerTrial(steps);
        sweep.SetTrainingTimeInSeconds(seconds);
        Directory.CreateDirectory(outDir);
        sweep.SetOutputFolder(outDir);

        string header = $"{arch} (random weights{(baseOptions.ArchitectureOverrides is null ? "" : ", vocabulary 128256")}), " +
                        $"{(device.type == DeviceType.CUDA ? "bf16 weights with fp32 master weights and AdamW" : "fp32")}, {device}, batch {batch}, " +
                        $"random tokens packed into full rows, {steps} steps per trial (tokens/s: the median over the steps after the first), grid tuner, time budget {seconds} s; peak memory: {memory}";
        Console.WriteLine($"sweep: {header}; contexts {string.Join(",", contexts)}, checkpointing {string.Join("/", checkpointing.Select(OnOff))}, " +
                          $"{texts.Count} row(s) of random text");
        var trials = new List<TrialResult>();
        sweep.TrialCompleted += (_, trial) =>
        {
            trials.Add(trial);
            Console.WriteLine($"trial {trial.Id}: {Point(trial)} -> {trial.Status}" + (trial.Status == TrialStatus.Completed
                ? $", {Num(trial.TokensPerSecond, "F0")} tokens/s, peak {Num(trial.PeakMemoryBytes / GiB, "F2")} GiB, loss {Num(trial.EvalLoss, "F3")}"
                : $": {FirstLine(trial.Error, 300)}") + $" ({trial.Duration.TotalSeconds:F1} s)");
            // Written after every trial: a run cut short keeps what it measured.
            File.WriteAllText(Path.Combine(outDir, "sweep-benchmarks.md"), Report(header, trials));
            BenchmarkDevice.FreeMemory(device);
        };
        var result = sweep.RunAsync().GetAwaiter().GetResult();

        int skipped = space.Grid().Count() - result.Trials.Count;
        string report = Report(header, result.Trials) + (skipped > 0 ? $"\n{skipped} grid point(s) not run: the time budget ran out.\n" : "");
        File.WriteAllText(Path.Combine(outDir, "sweep-benchmarks.md"), report);
        Console.WriteLine();
        Console.Write(report);
        Console.WriteLine($"Written to {Path.GetFullPath(outDir)}: {string.Join(", ", Directory.GetFiles(outDir).Select(Path.GetFileName).Order())}");
        return 0;
    }

    /// <summary>The summary (largest context that fits, per setting) and every trial, as markdown.</summary>
    internal static string Report(string header, IReadOnlyList<TrialResult> trials)
    {
        var text = new StringBuilder($"{header}\n\n");
        text.AppendLine("| kernels | checkpointing | largest context that fits | tokens/s there | peak GiB there | smallest context out of memory |");
        text.AppendLine("|---|---|---:|---:|---:|---:|");
        foreach (var group in trials.GroupBy(t => (Liger: Liger(t), Checkpointing: Checkpointing(t))).OrderByDescending(g => g.Key.Liger).ThenByDescending(g => g.Key.Checkpointing))
        {
            var fits = group.Where(t => t.Status == TrialStatus.Completed).MaxBy(Context);
            var oom = group.Where(t => t.Status == TrialStatus.Infeasible).MinBy(Context);
            text.AppendLine($"| {Kernels(group.Key.Liger)} | {OnOff(group.Key.Checkpointing)} | {(fits is null ? "none" : Context(fits).ToString(CultureInfo.InvariantCulture))} | " +
                            $"{Num(fits?.TokensPerSecond, "F0")} | {Num(fits?.PeakMemoryBytes / GiB, "F2")} | {(oom is null ? "—" : Context(oom).ToString(CultureInfo.InvariantCulture))} |");
        }
        text.AppendLine();
        text.AppendLine("| trial | context | kernels | checkpointing | status | tokens/s | peak GiB | last training loss | seconds | error |");
        text.AppendLine("|---:|---:|---|---|---|---:|---:|---:|---:|---|");
        foreach (var t in trials)
            text.AppendLine($"| {t.Id} | {Context(t)} | {Kernels(Liger(t))} | {OnOff(Checkpointing(t))} | {t.Status} | {Num(t.TokensPerSecond, "F0")} | " +
                            $"{Num(t.PeakMemoryBytes / GiB, "F2")} | {Num(t.EvalLoss, "F3")} | {t.Duration.TotalSeconds:F1} | {FirstLine(t.Error, 120).Replace("|", "/", StringComparison.Ordinal)} |");
        return text.ToString();
    }

    /// <summary>
    /// Rows of uniformly random GPT-2 tokens (the ordinary ones: no raw bytes, no end-of-text), decoded to text, until
    /// their re-encoding holds at least <paramref name="tokens"/> tokens. Random tokens leave nothing to learn, which
    /// is fine: the sweep measures what fits and how fast.
    /// </summary>
    internal static List<string> RandomText(CausalLMTokenizer tokenizer, long tokens, int seed, int rowTokens = 1024)
    {
        var random = new Random(seed);
        var rows = new List<string>();
        for (long encoded = 0; encoded < tokens;)
        {
            string row = tokenizer.Decode(Enumerable.Range(0, rowTokens).Select(_ => random.Next(256, 50000)));
            encoded += tokenizer.Encode(row).Count;
            rows.Add(row);
        }
        return rows;
    }

    private static string Point(TrialResult t) => $"context {Context(t)}, {Kernels(Liger(t))}, checkpointing {OnOff(Checkpointing(t))}";

    private static int Context(TrialResult t) => Convert.ToInt32(t.Parameters[nameof(ContextLengthPoint.MaxContextLength)], CultureInfo.InvariantCulture);

    private static bool Liger(TrialResult t) => Convert.ToBoolean(t.Parameters[nameof(ContextLengthPoint.Liger)], CultureInfo.InvariantCulture);

    private static bool Checkpointing(TrialResult t) => Convert.ToBoolean(t.Parameters[nameof(ContextLengthPoint.GradientCheckpointing)], CultureInfo.InvariantCulture);

    private static string Kernels(bool liger) => liger ? "Liger" : "eager";

    private static string OnOff(bool on) => on ? "on" : "off";

    private static string FirstLine(string? text, int limit)
    {
        string line = text?.Split('\n')[0] ?? "";
        return line.Length > limit ? line[..limit] + "…" : line;
    }

    private static string Num(double? value, string format) => value is double v ? v.ToString(format, CultureInfo.InvariantCulture) : "—";

    private static int Int(string[] args, string name, int fallback) =>
        Option(args, name) is { } value ? int.Parse(value, CultureInfo.InvariantCulture) : fallback;

    private static string? Option(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    /// <summary>A row of the training data.</summary>
    internal sealed class TextRow
    {
        public string Text { get; set; } = "";
    }
}
