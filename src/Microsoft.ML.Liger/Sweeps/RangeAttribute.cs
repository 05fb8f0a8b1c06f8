namespace Microsoft.ML.Liger.Sweeps;

/// <summary>
/// Declares a search dimension over an interval on a public settable property of a parameters class (the shape of
/// AutoML's <c>Microsoft.ML.SearchSpace.RangeAttribute</c>): a double interval for a double property, an integer
/// interval (both ends included) for an int property. With <see cref="LogBase"/> the sweep samples and grids the
/// logarithm uniformly, as learning rates want (1e-5 to 1e-2 then gets as many points per decade).
/// </summary>
/// <example><c>[Range(1e-5, 1e-2, logBase: true)] public double LearningRate { get; set; } = 1e-4;</c></example>
[AttributeUsage(AttributeTargets.Property, AllowMultiple = false, Inherited = true)]
public sealed class RangeAttribute : Attribute
{
    /// <summary>A double interval [<paramref name="min"/>, <paramref name="max"/>], on a log scale when <paramref name="logBase"/>.</summary>
    public RangeAttribute(double min, double max, bool logBase = false)
    {
        Min = min;
        Max = max;
        LogBase = logBase;
    }

    /// <summary>An integer interval [<paramref name="min"/>, <paramref name="max"/>], both ends included.</summary>
    public RangeAttribute(int min, int max)
        : this(min, max, logBase: false)
    {
    }

    /// <summary>An integer interval [<paramref name="min"/>, <paramref name="max"/>], on a log scale when <paramref name="logBase"/>.</summary>
    public RangeAttribute(int min, int max, bool logBase)
    {
        Min = min;
        Max = max;
        LogBase = logBase;
        IsInteger = true;
    }

    /// <summary>The lower end (included).</summary>
    public double Min { get; }

    /// <summary>The upper end (included).</summary>
    public double Max { get; }

    /// <summary>Whether values are spread uniformly in log space.</summary>
    public bool LogBase { get; }

    /// <summary>Whether the interval was declared with integer ends (and so holds integers).</summary>
    public bool IsInteger { get; }
}
