using System.Globalization;
using System.Text;

namespace Liger.Benchmarks.Gpu;

/// <summary>The prefs mode's results: prefs-benchmarks.md (both tables), prefs-benchmarks.csv and prefs-check.csv under the --out folder.</summary>
internal sealed class PreferenceReport(string outDir, string header)
{
    internal string Header { get; } = header;
    internal List<PreferenceCheckResult> Checks { get; } = [];
    internal List<PreferenceResult> Results { get; } = [];

    private const string Method =
        "B is the rows of the hidden states, as in Liger-Kernel's loss benchmarks: paired losses take B/2 chosen then B/2 rejected " +
        "sequences, KTO B sequences. Every row masks a prompt of 1 to T/4 positions (shared within a pair), up to T/8 of padding and " +
        "its last position. DPO and KTO take a reference model (the policy plus noise) and lm_head has a bias, as in Liger-Kernel's " +
        "benchmarks; ORPO, CPO and SimPO have none. Each loss at its defaults. A step is forward + backward (autograd.grad of the loss " +
        "by hidden, weight and bias), timed between two device synchronisations on the host clock. Memory: peak allocated by the CUDA " +
        "caching allocator during one step beyond what existed before it (the inputs); \"with inputs\" adds the inputs' bytes (hidden, " +
        "lm_head, targets, the reference's hidden and lm_head), which Liger-Kernel's figures include. Eager: full logits, float32 " +
        "log_softmax, gather, per-sequence sums, the formula, chosen NLL by cross-entropy (TRL's composite), each intermediate released " +
        "once the composite stops using it, as reference counting does in PyTorch. max rel diff: the largest difference of the loss and the gradients at the benchmark shape, " +
        "over eager's largest magnitude.\n\n" +
        "Reference (Liger-Kernel's benchmark data, peaks with inputs): ORPO and CPO 33418 -> 8497 MB (0.254), SimPO 33418 -> 8011 MB " +
        "(0.240) at B=16 T=1024 H=4096 V=128256 bf16 (A100); KTO 30703 -> 3433 MB (0.112) at B=32 T=512 H=1024 V=128256 bf16 (H100).";

    internal string Markdown()
    {
        var md = new StringBuilder();
        md.AppendLine("# Preference losses: Liger .NET against eager TorchSharp").AppendLine();
        md.AppendLine(Header).AppendLine().AppendLine(Method).AppendLine();
        if (Checks.Count > 0)
        {
            md.AppendLine("## Check: Liger against eager (relative = max abs difference / eager's max magnitude)").AppendLine();
            md.AppendLine("| loss | dtype | shape | eager loss | Liger loss | loss abs / rel | log-probs abs / rel | d hidden abs / rel | d weight abs / rel | d bias abs / rel | tolerance loss / log-probs / grads | kernels | ok |");
            md.AppendLine("|---|---|---|---:|---:|---|---|---|---|---|---:|---|---|");
            foreach (var c in Checks)
                md.AppendLine($"| {c.Loss} | {c.DType} | {c.Shape} | {Num(c.EagerLoss, "F5")} | {Num(c.LigerLoss, "F5")} | {c.LossDifference} | {c.LogProbs} | " +
                              $"{c.GradHidden} | {c.GradWeight} | {c.GradBias} | {c.Tolerance} | {c.Paths} | {(c.Passed ? "yes" : $"**NO** {c.Error}")} |");
            md.AppendLine();
        }
        if (Results.Count > 0)
        {
            md.AppendLine("## Forward + backward").AppendLine();
            md.AppendLine("| loss | shape | dtype | bias | eager ms | **Liger ms** | eager / Liger | eager MiB | **Liger MiB** | Liger / eager | inputs MiB | eager MiB with inputs | Liger MiB with inputs | Liger / eager with inputs | max rel diff |");
            md.AppendLine("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var r in Results)
                md.AppendLine($"| {r.Loss} | {r.Shape} | {r.DType} | {(r.Bias ? "yes" : "no")} | {Num(r.EagerMs, "F2", r.EagerError)} | {Num(r.LigerMs, "F2", r.LigerError)} | " +
                              $"{Times(r.Speedup)} | {Num(r.EagerMiB, "F0", r.EagerError)} | {Num(r.LigerMiB, "F0", r.LigerError)} | {Num(r.MemoryRatio, "F3")} | " +
                              $"{r.InputsMiB:F0} | {Num(r.EagerWithInputs, "F0")} | {Num(r.LigerWithInputs, "F0")} | {Num(r.MemoryRatioWithInputs, "F3")} | " +
                              $"{Num(r.MaxRelativeDifference, "E1", r.DifferenceError)} |");
        }
        return md.ToString();
    }

    internal void Write()
    {
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "prefs-benchmarks.md"), Markdown());
        var results = new StringBuilder("loss,rows,length,hidden,vocab,dtype,bias,eager_ms,liger_ms,speedup,eager_mib,liger_mib,memory_ratio," +
            "inputs_mib,eager_mib_with_inputs,liger_mib_with_inputs,memory_ratio_with_inputs,max_rel_diff,eager_error,liger_error,diff_error\n");
        foreach (var r in Results)
            results.AppendLine(string.Join(",", Csv(r.Loss), r.Shape.Rows, r.Shape.Length, r.Shape.Size, r.Shape.Vocab, r.DType, r.Bias,
                Raw(r.EagerMs), Raw(r.LigerMs), Raw(r.Speedup), Raw(r.EagerMiB), Raw(r.LigerMiB), Raw(r.MemoryRatio), Raw(r.InputsMiB),
                Raw(r.EagerWithInputs), Raw(r.LigerWithInputs), Raw(r.MemoryRatioWithInputs), Raw(r.MaxRelativeDifference), Csv(r.EagerError), Csv(r.LigerError), Csv(r.DifferenceError)));
        File.WriteAllText(Path.Combine(outDir, "prefs-benchmarks.csv"), results.ToString());
        var checks = new StringBuilder("loss,dtype,shape,eager_loss,liger_loss,loss_abs,loss_rel,logps_abs,logps_rel,grad_hidden_abs,grad_hidden_rel," +
            "grad_weight_abs,grad_weight_rel,grad_bias_abs,grad_bias_rel,tolerance_loss,tolerance_logps,tolerance_grads,passed,kernels,error\n");
        foreach (var c in Checks)
            checks.AppendLine(string.Join(",", Csv(c.Loss), c.DType, Csv(c.Shape), Raw(c.EagerLoss), Raw(c.LigerLoss),
                Raw(c.LossDifference?.MaxAbs), Raw(c.LossDifference?.Relative), Raw(c.LogProbs?.MaxAbs), Raw(c.LogProbs?.Relative),
                Raw(c.GradHidden?.MaxAbs), Raw(c.GradHidden?.Relative), Raw(c.GradWeight?.MaxAbs), Raw(c.GradWeight?.Relative),
                Raw(c.GradBias?.MaxAbs), Raw(c.GradBias?.Relative), Raw(c.Tolerance.Loss), Raw(c.Tolerance.LogProbs), Raw(c.Tolerance.Gradients), c.Passed, Csv(c.Paths), Csv(c.Error)));
        File.WriteAllText(Path.Combine(outDir, "prefs-check.csv"), checks.ToString());
    }

    internal static string CheckLine(PreferenceCheckResult c) =>
        $"check {c.Loss,-20} {c.DType,-4} loss {Num(c.EagerLoss, "F5")} / {Num(c.LigerLoss, "F5")} ({c.LossDifference})  logps {c.LogProbs}  " +
        $"dH {c.GradHidden}  dW {c.GradWeight}  db {c.GradBias}  [{c.Paths}]  {(c.Passed ? "ok" : $"FAILED {c.Error}")}";

    internal static string ResultLine(PreferenceResult r) =>
        $"{r.Loss,-6} {r.Shape,-30} eager {Num(r.EagerMs, "F2", r.EagerError)} ms  liger {Num(r.LigerMs, "F2", r.LigerError)} ms  " +
        $"{Times(r.Speedup)}  mem {Num(r.EagerMiB, "F0", r.EagerError)} / {Num(r.LigerMiB, "F0", r.LigerError)} MiB beyond {r.InputsMiB:F0} MiB of inputs  " +
        $"maxdiff {Num(r.MaxRelativeDifference, "E1", r.DifferenceError)}";

    private static string Num(double? value, string format, string? error = null) =>
        value is double v ? v.ToString(format, CultureInfo.InvariantCulture) : error ?? "n/a";

    private static string Times(double? ratio) => ratio is double v ? v.ToString("F2", CultureInfo.InvariantCulture) + "x" : "n/a";

    private static string Raw(double? value) => value is double v ? v.ToString("R", CultureInfo.InvariantCulture) : "";

    private static string Csv(string? text) => text is null ? "" : text.Contains(',') || text.Contains('"') ? $"\"{text.Replace("\"", "\"\"")}\"" : text;
}
