using Microsoft.ML.Liger.Sweeps;

namespace Microsoft.ML.Liger.Tests.Sweeps;

/// <summary>A parameters class using every kind of dimension, plus a property the space leaves alone.</summary>
public sealed class MixedSpace
{
    [Choice(3, 5, 7)]
    public int Width { get; set; } = 5;

    [Range(0.25, 4.0)]
    public double Scale { get; set; } = 9.0; // outside the range: the default falls back to the middle

    [Range(1e-6, 1e-1, logBase: true)]
    public double Rate { get; set; } = 1e-3;

    [Range(2, 9)]
    public int Depth { get; set; } = 3;

    [Choice("adam", "sgd, momentum")]
    public string Optimizer { get; set; } = "sgd, momentum";

    [Choice(false, true)]
    public bool Flag { get; set; }

    [Choice(1, 2.5)] // an int among a double property's choices
    public double Mixed { get; set; } = 2.5;

    public int NotSwept { get; set; } = 11;
}

public sealed class ChoiceOfDoublesOnInt
{
    [Choice(1.5, 2.5)]
    public int Count { get; set; }
}

public sealed class RangeOnBool
{
    [Range(0, 1)]
    public bool Enabled { get; set; }
}

public sealed class LogRangeFromZero
{
    [Range(0.0, 1.0, logBase: true)]
    public double Rate { get; set; }
}

public sealed class ReversedRange
{
    [Range(9, 2)]
    public int Layers { get; set; }
}

public sealed class EmptyChoice
{
    [Choice]
    public int Heads { get; set; }
}

public sealed class RepeatedChoice
{
    [Choice(8, 16, 8)]
    public int Batch { get; set; }
}

public sealed class BothAttributes
{
    [Choice(1, 2)]
    [Range(1, 2)]
    public int Steps { get; set; }
}

public sealed class GetterOnly
{
    [Choice(1, 2)]
    public int Frozen { get; } = 1;
}

public sealed class UnsupportedType
{
    [Choice(1L, 2L)]
    public long Tokens { get; set; }
}

public sealed class FractionalRangeOnInt
{
    [Range(0.5, 3.5)]
    public int Blocks { get; set; }
}

public sealed class StringInIntChoice
{
    [Choice(1, "two")]
    public int Mode { get; set; }
}

/// <summary>A custom space for a sweep: names the cost-aware tuner does not know, with a result-column-like property left out.</summary>
public sealed class WarmupSpace
{
    [Choice(0, 2, 5)]
    public int WarmupSteps { get; set; }

    [Choice(0.0, 0.1)]
    public double WeightDecay { get; set; }
}

public sealed class ClashingSpace
{
    [Choice(1, 2)]
    public int Status { get; set; }
}
