using System.Globalization;

namespace Microsoft.ML.Liger.Training;

/// <summary>What a training report says (through ML.NET's progress channel, its log, and <see cref="CausalLMTrainingOptions.OnProgress"/>).</summary>
/// <param name="Step">Optimizer steps done.</param>
/// <param name="TotalSteps">Optimizer steps the run will make.</param>
/// <param name="Epoch">Epoch (fractional: how far through the data).</param>
/// <param name="Loss">Mean training loss over the steps since the last report (per target token in fine-tuning, per
/// pair or sequence in preference alignment); NaN in an evaluation-only report (whose LearningRate is NaN too), or when
/// every step since the last report was skipped.</param>
/// <param name="LearningRate">Learning rate of the last step.</param>
/// <param name="GradientNorm">Global gradient norm before clipping, at the last step (NaN when not computed).</param>
/// <param name="TokensPerSecond">Input tokens (padding excluded) per second of wall clock since the last report.</param>
/// <param name="PeakMemoryBytes">Peak memory since the last report: CUDA allocator's peak on a GPU (when the
/// statistics shim is available), the process's peak resident set on the CPU; null when unknown.</param>
/// <param name="EvalLoss">Validation loss (per target token, or per pair or sequence), in evaluation reports; otherwise null.</param>
/// <param name="Metrics">The objective's own metrics, named as TRL logs them (preference alignment: "rewards/chosen",
/// "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected", "logits/chosen",
/// "logits/rejected", "nll_loss", KTO's "kl", ORPO's "log_odds_ratio" and "log_odds_chosen"): means over the
/// steps since the last report, or over the validation set in evaluation reports; null when there are none
/// (fine-tuning). After a resume, the first report's metrics cover only the steps since the resume.</param>
/// <param name="SkippedSteps">Optimizer steps skipped so far for a non-finite loss or gradient norm
/// (<see cref="CausalLMTrainingOptions.SkipNonFiniteSteps"/>); <paramref name="Loss"/> is the mean over the others.</param>
public sealed record TrainingProgress(int Step, int TotalSteps, double Epoch, double Loss, double LearningRate, double GradientNorm,
    double TokensPerSecond, long? PeakMemoryBytes, double? EvalLoss, IReadOnlyDictionary<string, double>? Metrics = null, int SkippedSteps = 0)
{
    /// <summary>One line for logs.</summary>
    public override string ToString()
    {
        string memory = PeakMemoryBytes is long b ? $"{b / (1024.0 * 1024.0):F0} MiB" : "n/a";
        string eval = EvalLoss is double e ? $", eval loss {e:F4}{(Metrics is null ? $" (ppl {Math.Exp(e):F2})" : "")}" : "";
        // An evaluation-only report is the one without a learning rate: a training loss may itself be NaN (all steps skipped).
        string train = double.IsNaN(LearningRate) ? "" : $", loss {Loss:F4}, lr {LearningRate:E2}, grad norm {GradientNorm:F3}, {TokensPerSecond:F0} tokens/s, peak {memory}";
        string metrics = Metrics is { Count: > 0 }
            ? ", " + string.Join(", ", Metrics.Select(m => $"{m.Key} {m.Value.ToString("G4", CultureInfo.InvariantCulture)}"))
            : "";
        string skipped = SkippedSteps > 0 ? $", {SkippedSteps} step{(SkippedSteps == 1 ? "" : "s")} skipped (non-finite)" : "";
        return $"step {Step}/{TotalSteps} (epoch {Epoch:F2}){train}{eval}{metrics}{skipped}";
    }
}
