using Microsoft.ML.Data;

namespace Microsoft.ML.Liger;

/// <summary>
/// <see cref="CausalLMTransformer"/> as a row-to-row mapper: what <c>mlContext.Model.CreatePredictionEngine</c> (and a
/// <see cref="TransformerChain{TLastTransformer}"/>'s mapper) asks for. Each output row maps one input row, so a
/// prediction engine runs the same code as a cursor of <see cref="CausalLMTransformer.Transform"/>.
/// </summary>
internal sealed class CausalLMRowMapper : IRowToRowMapper
{
    /// <summary>Checks <paramref name="inputSchema"/> (see <see cref="CausalLMTransformer.GetOutputSchema"/>) and maps rows of it.</summary>
    public CausalLMRowMapper(CausalLMTransformer transformer, DataViewSchema inputSchema)
    {
        Transformer = transformer;
        InputSchema = inputSchema;
        OutputSchema = transformer.GetOutputSchema(inputSchema);
        Added = transformer.OutputColumns(name => inputSchema.GetColumnOrNull(name)?.Type is TextDataViewType).ToArray();
    }

    public CausalLMTransformer Transformer { get; }

    public DataViewSchema InputSchema { get; }

    public DataViewSchema OutputSchema { get; }

    /// <summary>The columns appended after the input's, in schema order.</summary>
    internal (string Name, DataViewType Type, OutputKind Kind)[] Added { get; }

    /// <summary>The input columns needed for <paramref name="dependingColumns"/>: the input columns among them, and the texts the added ones are computed from.</summary>
    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        ArgumentNullException.ThrowIfNull(dependingColumns);
        var needed = dependingColumns.Select(c => c.Index).ToHashSet();
        int inputCount = InputSchema.Count;
        var kinds = Added.Where((_, i) => needed.Contains(inputCount + i)).Select(a => a.Kind).ToHashSet();
        var sources = new HashSet<string>();
        if (kinds.Contains(OutputKind.Completion))
            sources.Add(Transformer.Info.PromptColumnName);
        if (kinds.Contains(OutputKind.Loss) || kinds.Contains(OutputKind.Perplexity))
            sources.UnionWith(Transformer.ScoredColumns);
        // A source is read by name, so it is the visible column of that name, never a hidden one.
        return InputSchema.Where(c => needed.Contains(c.Index) || sources.Contains(c.Name) && InputSchema.GetColumnOrNull(c.Name)?.Index == c.Index);
    }

    /// <summary>The row <paramref name="input"/> (a row of <see cref="InputSchema"/>) with the added columns, computed when read.</summary>
    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(activeColumns);
        // Columns are found by index: a row of another schema would read the wrong ones.
        if (input.Schema != InputSchema)
            throw new ArgumentException("The row's schema is not the one this mapper was made for (GetRowToRowMapper's inputSchema).", nameof(input));
        return new CausalLMRow(this, input, activeColumns.Select(c => c.Index).ToHashSet());
    }
}
