using Microsoft.ML.Data;

namespace Microsoft.ML.Liger;

/// <summary>
/// One input row with the transformer's columns appended, computed lazily: a row's completion is generated (and its
/// loss scored) only when its getter is called, once per position. The same row serves a cursor of
/// <see cref="CausalLMTransformer.Transform"/> and a prediction engine (through <see cref="CausalLMRowMapper"/>), so
/// both give the same values for the same row. Not thread-safe (as ML.NET rows are not): one per cursor or engine.
/// </summary>
internal sealed class CausalLMRow : DataViewRow
{
    private readonly CausalLMRowMapper mapper;
    private readonly DataViewRow input;
    private readonly HashSet<int> active;
    private long computedFor = -1;
    private string? completion;
    private double? loss;

    public CausalLMRow(CausalLMRowMapper mapper, DataViewRow input, HashSet<int> active)
    {
        this.mapper = mapper;
        this.input = input;
        this.active = active;
    }

    private CausalLMTransformer Transformer => mapper.Transformer;

    public override DataViewSchema Schema => mapper.OutputSchema;

    public override long Position => input.Position;

    public override long Batch => input.Batch;

    public override ValueGetter<DataViewRowId> GetIdGetter() => input.GetIdGetter();

    public override bool IsColumnActive(DataViewSchema.Column column) => active.Contains(column.Index);

    public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
    {
        int inputCount = mapper.InputSchema.Count;
        if (column.Index < inputCount)
            return input.GetGetter<TValue>(mapper.InputSchema[column.Index]);
        var kind = mapper.Added[column.Index - inputCount].Kind;
        if (kind == OutputKind.Completion)
        {
            if (typeof(TValue) != typeof(ReadOnlyMemory<char>))
                throw new InvalidOperationException($"Column '{column.Name}' is text: read it as ReadOnlyMemory<char>, not {typeof(TValue).Name}.");
            ValueGetter<ReadOnlyMemory<char>> text = (ref ReadOnlyMemory<char> value) => value = Completion().AsMemory();
            return (ValueGetter<TValue>)(Delegate)text;
        }
        if (typeof(TValue) != typeof(float))
            throw new InvalidOperationException($"Column '{column.Name}' is Single: read it as float, not {typeof(TValue).Name}.");
        ValueGetter<float> number = kind == OutputKind.Loss
            ? (ref float value) => value = (float)Loss()
            : (ref float value) => value = (float)Math.Exp(Loss());
        return (ValueGetter<TValue>)(Delegate)number;
    }

    private string Completion()
    {
        Refresh();
        if (completion is not null)
            return completion;
        string column = Transformer.Info.PromptColumnName;
        try
        {
            return completion = Transformer.Generate(Text(column));
        }
        catch (ArgumentException e) when (e.ParamName == "prompt")
        {
            throw new ArgumentException($"Column '{column}', row {input.Position}: {e.Message}", column, e);
        }
    }

    private double Loss()
    {
        Refresh();
        return loss ??= Transformer.ScoreRow(Text);
    }

    /// <summary>Forgets the previous row's values when the input has moved on (a cursor's MoveNext, an engine's next example).</summary>
    private void Refresh()
    {
        if (computedFor == input.Position)
            return;
        computedFor = input.Position;
        completion = null;
        loss = null;
    }

    private string Text(string columnName)
    {
        var column = mapper.InputSchema[columnName];
        ReadOnlyMemory<char> value = default;
        input.GetGetter<ReadOnlyMemory<char>>(column)(ref value);
        return value.ToString();
    }
}
