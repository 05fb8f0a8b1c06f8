using System.Globalization;
using System.Reflection;

namespace Microsoft.ML.Liger.Sweeps;

/// <summary>
/// One dimension of a <see cref="SearchSpace{T}"/>: a property of the parameters class and the values a sweep may
/// give it, either a list of choices or an interval (integer or double, linear or log scale).
/// </summary>
public sealed class SearchDimension
{
    private SearchDimension(string name, Type valueType, IReadOnlyList<object>? choices, double min, double max, bool logBase, object? initial)
    {
        Name = name;
        ValueType = valueType;
        Choices = choices;
        Min = min;
        Max = max;
        LogBase = logBase;
        DefaultValue = initial is not null && Contains(initial) ? Normalize(initial) : Fallback();
    }

    /// <summary>The property's name: the parameter's name in trial results, tables and files.</summary>
    public string Name { get; }

    /// <summary>The property's type: <see cref="int"/>, <see cref="double"/>, <see cref="bool"/> or <see cref="string"/>.</summary>
    public Type ValueType { get; }

    /// <summary>The candidate values (of <see cref="ValueType"/>) of a choice; null for a range.</summary>
    public IReadOnlyList<object>? Choices { get; }

    /// <summary>Whether this is an interval rather than a list of choices.</summary>
    public bool IsRange => Choices is null;

    /// <summary>A range's lower end (included); NaN for a choice.</summary>
    public double Min { get; }

    /// <summary>A range's upper end (included); NaN for a choice.</summary>
    public double Max { get; }

    /// <summary>Whether a range is spread uniformly in log space.</summary>
    public bool LogBase { get; }

    /// <summary>
    /// The value of <see cref="SearchSpace{T}.Default"/>: the property's initial value when the dimension holds it,
    /// otherwise the first choice, or the range's middle (geometric middle on a log scale).
    /// </summary>
    public object DefaultValue { get; }

    /// <inheritdoc/>
    public override string ToString() => IsRange
        ? $"{Name}: {(ValueType == typeof(int) ? "integer " : "")}{(LogBase ? "log " : "")}range [{Format(Min)}, {Format(Max)}]"
        : $"{Name}: choice of {string.Join(", ", Choices!.Select(Format))}";

    internal static SearchDimension Choice(string owner, PropertyInfo property, IReadOnlyList<object>? values, object? initial)
    {
        string where = $"{owner}.{property.Name}";
        var type = CheckedType(where, property, "[Choice]");
        if (values is null || values.Count == 0)
            throw new ArgumentException($"{where}: [Choice] needs at least one value.", property.Name);
        var converted = new List<object>(values.Count);
        for (int i = 0; i < values.Count; i++)
        {
            object value = values[i] ?? throw new ArgumentException($"{where}: [Choice] value {i} is null.", property.Name);
            object typed = type == typeof(double) && value is int n ? (double)n : value;
            if (typed.GetType() != type)
                throw new ArgumentException(
                    $"{where}: [Choice] value {Format(value)} is {value.GetType().Name}, but the property is {type.Name}.", property.Name);
            if (typed is double d && !double.IsFinite(d))
                throw new ArgumentException($"{where}: [Choice] value {Format(d)} is not a finite number.", property.Name);
            if (converted.Contains(typed))
                throw new ArgumentException($"{where}: [Choice] lists {Format(typed)} twice.", property.Name);
            converted.Add(typed);
        }
        return new SearchDimension(property.Name, type, converted, double.NaN, double.NaN, false, initial);
    }

    internal static SearchDimension Range(string owner, PropertyInfo property, double min, double max, bool logBase, object? initial)
    {
        string where = $"{owner}.{property.Name}";
        var type = CheckedType(where, property, "[Range]");
        if (type != typeof(int) && type != typeof(double))
            throw new ArgumentException($"{where}: [Range] needs an int or double property; it is {type.Name} (use [Choice]).", property.Name);
        if (!double.IsFinite(min) || !double.IsFinite(max) || !(min < max))
            throw new ArgumentException($"{where}: [Range] needs finite ends with min < max; got [{Format(min)}, {Format(max)}].", property.Name);
        if (logBase && !(min > 0))
            throw new ArgumentException($"{where}: a log-scale [Range] needs min > 0; got {Format(min)}.", property.Name);
        if (type == typeof(int) && (min != Math.Floor(min) || max != Math.Floor(max) || min < int.MinValue || max > int.MaxValue))
            throw new ArgumentException($"{where}: the property is Int32, so [Range] needs integer ends; got [{Format(min)}, {Format(max)}].", property.Name);
        return new SearchDimension(property.Name, type, null, min, max, logBase, initial);
    }

    /// <summary>A value drawn uniformly (log-uniformly on a log scale) from the dimension.</summary>
    internal object Sample(Random random)
    {
        if (Choices is not null)
            return Choices[random.Next(Choices.Count)];
        double u = random.NextDouble();
        if (ValueType == typeof(int))
        {
            // Integers: uniform on [min, max + 1) (its log on a log scale), floored, so every integer can come up.
            double upper = Max + 1;
            double x = LogBase ? Math.Exp(Math.Log(Min) + u * (Math.Log(upper) - Math.Log(Min))) : Min + u * (upper - Min);
            return (int)Math.Clamp(Math.Floor(x), Min, Max);
        }
        double value = LogBase ? Math.Exp(Math.Log(Min) + u * (Math.Log(Max) - Math.Log(Min))) : Min + u * (Max - Min);
        return Math.Clamp(value, Min, Max);
    }

    /// <summary>
    /// The grid's values: every choice, or <paramref name="pointsPerRange"/> evenly spaced points of a range, ends
    /// included (one point: the middle); integer ranges are rounded and their repeats dropped.
    /// </summary>
    internal IReadOnlyList<object> GridValues(int pointsPerRange)
    {
        if (Choices is not null)
            return Choices;
        var values = new List<object>();
        for (int i = 0; i < pointsPerRange; i++)
        {
            double t = pointsPerRange == 1 ? 0.5 : (double)i / (pointsPerRange - 1);
            double x = i == 0 && pointsPerRange > 1 ? Min : i == pointsPerRange - 1 && pointsPerRange > 1 ? Max : At(t);
            object value = ValueType == typeof(int) ? (object)(int)Math.Round(x) : x;
            if (!values.Contains(value))
                values.Add(value);
        }
        return values;
    }

    /// <summary>Whether <paramref name="value"/> is one this dimension can take (ints count for a double dimension).</summary>
    internal bool Contains(object value)
    {
        object typed = Normalize(value);
        if (typed.GetType() != ValueType)
            return false;
        if (Choices is not null)
            return Choices.Contains(typed);
        double x = Convert.ToDouble(typed, CultureInfo.InvariantCulture);
        return x >= Min && x <= Max;
    }

    private object Normalize(object value) => ValueType == typeof(double) && value is int n ? (double)n : value;

    private double At(double t) => LogBase ? Math.Exp(Math.Log(Min) + t * (Math.Log(Max) - Math.Log(Min))) : Min + t * (Max - Min);

    private object Fallback()
    {
        if (Choices is not null)
            return Choices[0];
        double middle = At(0.5);
        return ValueType == typeof(int) ? (object)(int)Math.Round(middle) : middle;
    }

    private static Type CheckedType(string where, PropertyInfo property, string attribute)
    {
        if (property.SetMethod is not { IsPublic: true } || property.GetIndexParameters().Length > 0)
            throw new ArgumentException($"{where}: {attribute} needs a public settable property.", property.Name);
        var type = property.PropertyType;
        if (type != typeof(int) && type != typeof(double) && type != typeof(bool) && type != typeof(string))
            throw new ArgumentException($"{where}: {attribute} needs an int, double, bool or string property; it is {type.Name}.", property.Name);
        return type;
    }

    internal static string Format(object? value) => value switch
    {
        null => "null",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}
