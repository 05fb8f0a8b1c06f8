using System.Reflection;

namespace Microsoft.ML.Liger.Sweeps;

/// <summary>
/// The values a sweep may try, read from the <see cref="ChoiceAttribute"/> and <see cref="RangeAttribute"/> properties
/// of a parameters class <typeparamref name="T"/> (declaration order, base class first), with overrides through
/// <see cref="WithChoice"/> and <see cref="WithRange(string, double, double, bool)"/>. Immutable: the overrides return a new space.
/// </summary>
/// <remarks>Properties without an attribute keep the value a new <typeparamref name="T"/> gives them in every point.</remarks>
/// <typeparam name="T">A class with a public parameterless constructor and public settable int, double, bool or string properties.</typeparam>
public sealed class SearchSpace<T> : ISearchSpace
    where T : class, new()
{
    private readonly IReadOnlyList<SearchDimension> dimensions;

    /// <summary>The space <typeparamref name="T"/>'s attributes declare.</summary>
    /// <exception cref="ArgumentException">An attribute is malformed or sits on an unsuitable property (the property is named).</exception>
    public SearchSpace()
        : this(FromAttributes())
    {
    }

    private SearchSpace(IReadOnlyList<SearchDimension> dimensions) => this.dimensions = dimensions;

    /// <summary>The dimensions, in declaration order (overrides keep their place; new ones come last).</summary>
    public IReadOnlyList<SearchDimension> Dimensions => dimensions;

    /// <summary>A <typeparamref name="T"/> with every dimension at its <see cref="SearchDimension.DefaultValue"/>.</summary>
    public T Default => Create(DefaultPoint);

    /// <summary>A point drawn uniformly from each dimension (log-uniformly on log scales).</summary>
    public T Sample(Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        return Create(SamplePoint(random));
    }

    /// <summary>
    /// Every combination of the dimensions' grid values (each choice; <paramref name="pointsPerRange"/> evenly spaced
    /// values of a range, ends included), the first dimension varying slowest, each distinct point once.
    /// </summary>
    public IEnumerable<T> Grid(int pointsPerRange = 3) => GridPoints(pointsPerRange).Select(Create);

    /// <summary>This space with <paramref name="propertyName"/> taking one of <paramref name="values"/> (replacing its attribute, or adding a dimension).</summary>
    /// <exception cref="ArgumentException">No such public settable property, or values that do not fit it (named).</exception>
    public SearchSpace<T> WithChoice(string propertyName, params object[] values) =>
        With(SearchDimension.Choice(typeof(T).Name, Property(propertyName), values, Initial(propertyName)));

    /// <summary>This space with <paramref name="propertyName"/> taking values in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    /// <exception cref="ArgumentException">No such public settable property, or an interval that does not fit it (named).</exception>
    public SearchSpace<T> WithRange(string propertyName, double min, double max, bool logBase = false) =>
        With(SearchDimension.Range(typeof(T).Name, Property(propertyName), min, max, logBase, Initial(propertyName)));

    /// <summary>This space with <paramref name="propertyName"/> taking integers in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    /// <exception cref="ArgumentException">No such public settable property, or an interval that does not fit it (named).</exception>
    public SearchSpace<T> WithRange(string propertyName, int min, int max, bool logBase = false) =>
        WithRange(propertyName, (double)min, max, logBase);

    /// <summary>A <typeparamref name="T"/> holding <paramref name="parameters"/> (a trial's <see cref="TrialResult.Parameters"/>).</summary>
    /// <exception cref="ArgumentException">A dimension is missing from <paramref name="parameters"/> or its value is not one the dimension takes.</exception>
    public T Create(IReadOnlyDictionary<string, object> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var item = new T();
        foreach (var dimension in dimensions)
        {
            if (!parameters.TryGetValue(dimension.Name, out var value))
                throw new ArgumentException($"The parameters have no value for {typeof(T).Name}.{dimension.Name}.", nameof(parameters));
            if (!dimension.Contains(value))
                throw new ArgumentException(
                    $"{typeof(T).Name}.{dimension.Name} = {SearchDimension.Format(value)} is outside the space ({dimension}).", nameof(parameters));
            var property = typeof(T).GetProperty(dimension.Name)!;
            property.SetValue(item, dimension.ValueType == typeof(double) ? Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture) : value);
        }
        return item;
    }

    /// <inheritdoc/>
    public override string ToString() => $"{typeof(T).Name}: " + string.Join("; ", dimensions);

    IReadOnlyDictionary<string, object> ISearchSpace.DefaultPoint => DefaultPoint;

    IReadOnlyDictionary<string, object> ISearchSpace.SamplePoint(Random random) => SamplePoint(random);

    IReadOnlyList<IReadOnlyDictionary<string, object>> ISearchSpace.GridPoints(int pointsPerRange) => GridPoints(pointsPerRange);

    private Dictionary<string, object> DefaultPoint => dimensions.ToDictionary(d => d.Name, d => d.DefaultValue);

    private Dictionary<string, object> SamplePoint(Random random) => dimensions.ToDictionary(d => d.Name, d => d.Sample(random));

    private List<IReadOnlyDictionary<string, object>> GridPoints(int pointsPerRange)
    {
        if (pointsPerRange < 1)
            throw new ArgumentOutOfRangeException(nameof(pointsPerRange), pointsPerRange, "A grid needs at least 1 point per range.");
        var points = new List<IReadOnlyDictionary<string, object>> { new Dictionary<string, object>() };
        foreach (var dimension in dimensions)
        {
            var values = dimension.GridValues(pointsPerRange);
            points = points.SelectMany(p => values.Select(v => (IReadOnlyDictionary<string, object>)new Dictionary<string, object>(p) { [dimension.Name] = v })).ToList();
        }
        return points; // distinct already: each dimension's grid values are distinct
    }

    private SearchSpace<T> With(SearchDimension dimension)
    {
        var list = dimensions.ToList();
        int at = list.FindIndex(d => d.Name == dimension.Name);
        if (at >= 0)
            list[at] = dimension;
        else
            list.Add(dimension);
        return new SearchSpace<T>(list);
    }

    private static PropertyInfo Property(string propertyName)
    {
        ArgumentNullException.ThrowIfNull(propertyName);
        return typeof(T).GetProperty(propertyName, BindingFlags.Public | BindingFlags.Instance)
            ?? throw new ArgumentException($"{typeof(T).Name} has no public property '{propertyName}'.", nameof(propertyName));
    }

    private static object? Initial(string propertyName) =>
        typeof(T).GetProperty(propertyName) is { GetMethod.IsPublic: true } property ? property.GetValue(new T()) : null;

    private static List<SearchDimension> FromAttributes()
    {
        var instance = new T();
        var list = new List<SearchDimension>();
        foreach (var property in DeclarationOrder())
        {
            var choice = property.GetCustomAttribute<ChoiceAttribute>(inherit: true);
            var range = property.GetCustomAttribute<RangeAttribute>(inherit: true);
            if (choice is not null && range is not null)
                throw new ArgumentException($"{typeof(T).Name}.{property.Name} has both [Choice] and [Range]; keep one.", property.Name);
            object? initial = property.GetMethod is { IsPublic: true } ? property.GetValue(instance) : null;
            if (choice is not null)
                list.Add(SearchDimension.Choice(typeof(T).Name, property, choice.Values, initial));
            else if (range is not null)
                list.Add(SearchDimension.Range(typeof(T).Name, property, range.Min, range.Max, range.LogBase, initial));
        }
        return list;
    }

    // Reflection does not promise declaration order; metadata tokens follow it within a type, and base classes come first.
    private static IEnumerable<PropertyInfo> DeclarationOrder()
    {
        var chain = new List<Type>();
        for (var type = typeof(T); type is not null && type != typeof(object); type = type.BaseType)
            chain.Insert(0, type);
        return chain.SelectMany(type => type
            .GetProperties(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.DeclaredOnly)
            .Where(p => p.GetMethod?.GetBaseDefinition().DeclaringType == type || p.SetMethod?.GetBaseDefinition().DeclaringType == type)
            .OrderBy(p => p.MetadataToken));
    }
}

/// <summary>A search space without its parameters class: what the tuners and the sweep see.</summary>
internal interface ISearchSpace
{
    IReadOnlyList<SearchDimension> Dimensions { get; }

    IReadOnlyDictionary<string, object> DefaultPoint { get; }

    IReadOnlyDictionary<string, object> SamplePoint(Random random);

    IReadOnlyList<IReadOnlyDictionary<string, object>> GridPoints(int pointsPerRange);
}
