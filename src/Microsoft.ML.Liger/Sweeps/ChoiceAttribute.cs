namespace Microsoft.ML.Liger.Sweeps;

/// <summary>
/// Declares a search dimension over a fixed set of values on a public settable property of a parameters class
/// (the shape of AutoML's <c>Microsoft.ML.SearchSpace.ChoiceAttribute</c>, which our package feed does not serve).
/// Values are ints, doubles, bools or strings, of the property's type (ints are accepted for a double property).
/// </summary>
/// <example><c>[Choice(512, 1024, 2048)] public int MaxContextLength { get; set; } = 512;</c></example>
[AttributeUsage(AttributeTargets.Property, AllowMultiple = false, Inherited = true)]
public sealed class ChoiceAttribute : Attribute
{
    /// <summary>Declares the values the sweep may try, in the order the grid visits them.</summary>
    public ChoiceAttribute(params object[] values) => Values = values ?? [];

    /// <summary>The candidate values as declared.</summary>
    public IReadOnlyList<object> Values { get; }
}
