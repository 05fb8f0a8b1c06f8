using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger.Sweeps;

/// <summary>What a trial runs: the point, the options it makes (a copy of the base options), the training data.</summary>
internal sealed record TrialContext(int Id, IReadOnlyDictionary<string, object> Parameters, FineTuneCausalLMOptions Options,
    IDataView Train, LigerCatalog Catalog);

/// <summary>What a completed trial measured (see <see cref="TrialResult"/>).</summary>
internal sealed record TrialMetrics(double? EvalLoss, double? TokensPerSecond, long? PeakMemoryBytes);

/// <summary>The real trial: a fine-tuning run with the trial's options, measured through its progress reports.</summary>
internal static class FineTuneTrial
{
    public static TrialMetrics Run(TrialContext context)
    {
        var options = context.Options;
        var reports = new List<TrainingProgress>();
        var userProgress = options.OnProgress;
        options.OnProgress = p =>
        {
            reports.Add(p);
            userProgress?.Invoke(p);
        };
        using var model = context.Catalog.FineTuneCausalLM(options).Fit(context.Train);
        var info = model.Info;
        double? loss = info.EvalLosses.Count > 0 ? info.EvalLosses[^1].Loss
            : info.StepLosses.Count > 0 ? info.StepLosses[^1]
            : null;
        var training = reports.Where(r => r.EvalLoss is null && !double.IsNaN(r.Loss)).ToList();
        return new TrialMetrics(loss, MedianThroughput(training), training.Max(r => r.PeakMemoryBytes));
    }

    /// <summary>The median tokens/s over the reports, without the first (compilation, allocator warm-up) when there are others.</summary>
    internal static double? MedianThroughput(IReadOnlyList<TrainingProgress> reports)
    {
        var values = (reports.Count > 1 ? reports.Skip(1) : reports).Select(r => r.TokensPerSecond).Order().ToArray();
        if (values.Length == 0)
            return null;
        int mid = values.Length / 2;
        return values.Length % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
    }
}
