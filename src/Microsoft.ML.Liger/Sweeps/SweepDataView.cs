using Microsoft.ML.Data;

namespace Microsoft.ML.Liger.Sweeps;

/// <summary>
/// A sweep's trials as an IDataView through <see cref="DataOperationsCatalog.LoadFromEnumerable{TRow}(IEnumerable{TRow}, SchemaDefinition)"/>.
/// ML.NET maps columns to a row type's members, so the row type is fixed: every parameter goes into one text column,
/// and the <see cref="FineTuneCausalLMSearchSpace"/> parameters also get typed columns, kept in the schema only when the sweep
/// varied them (with the same name and type). ML.NET has no nullable columns: a missing number is NaN, a missing text empty.
/// </summary>
internal static class SweepDataView
{
    private static readonly Dictionary<string, Type> TypedParameters = new()
    {
        [nameof(TrialRow.MaxContextLength)] = typeof(int),
        [nameof(TrialRow.BatchSize)] = typeof(int),
        [nameof(TrialRow.GradientAccumulationSteps)] = typeof(int),
        [nameof(TrialRow.LearningRate)] = typeof(double),
        [nameof(TrialRow.GradientCheckpointing)] = typeof(bool),
        [nameof(TrialRow.Liger)] = typeof(bool),
    };

    public static IDataView Create(MLContext mlContext, SweepResult result)
    {
        var typed = TypedParameters.Keys
            .Where(name => result.ParameterNames.Contains(name) && result.Trials.All(t => t.Parameters[name].GetType() == TypedParameters[name]))
            .ToHashSet();
        var schema = SchemaDefinition.Create(typeof(TrialRow));
        foreach (var column in schema.Where(c => TypedParameters.ContainsKey(c.MemberName) && !typed.Contains(c.MemberName)).ToList())
            schema.Remove(column);
        var rows = result.Trials.Select(t => Row(t, result, typed)).ToList();
        return mlContext.Data.LoadFromEnumerable(rows, schema);
    }

    private static TrialRow Row(TrialResult t, SweepResult result, HashSet<string> typed)
    {
        T Typed<T>(string name) where T : struct => typed.Contains(name) ? (T)t.Parameters[name] : default;
        return new TrialRow
        {
            Id = t.Id,
            Parameters = string.Join("; ", result.ParameterNames.Select(n => $"{n}={SearchDimension.Format(t.Parameters[n])}")),
            MaxContextLength = Typed<int>(nameof(TrialRow.MaxContextLength)),
            BatchSize = Typed<int>(nameof(TrialRow.BatchSize)),
            GradientAccumulationSteps = Typed<int>(nameof(TrialRow.GradientAccumulationSteps)),
            LearningRate = Typed<double>(nameof(TrialRow.LearningRate)),
            GradientCheckpointing = Typed<bool>(nameof(TrialRow.GradientCheckpointing)),
            Liger = Typed<bool>(nameof(TrialRow.Liger)),
            Status = t.Status.ToString(),
            EvalLoss = t.EvalLoss ?? double.NaN,
            TokensPerSecond = t.TokensPerSecond ?? double.NaN,
            PeakMemoryBytes = t.PeakMemoryBytes ?? double.NaN,
            DurationSeconds = t.Duration.TotalSeconds,
            Error = t.Error ?? "",
            IsBest = ReferenceEquals(t, result.BestTrial),
        };
    }

    /// <summary>One row of the view; ML.NET reads its public fields in declaration order.</summary>
    internal sealed class TrialRow
    {
        public int Id;
        public string Parameters = "";
        public int MaxContextLength;
        public int BatchSize;
        public int GradientAccumulationSteps;
        public double LearningRate;
        public bool GradientCheckpointing;
        public bool Liger;
        public string Status = "";
        public double EvalLoss;
        public double TokensPerSecond;
        public double PeakMemoryBytes;
        public double DurationSeconds;
        public string Error = "";
        public bool IsBest;
    }
}
