using Microsoft.ML.Data;

namespace Microsoft.ML.Liger;

/// <summary>
/// The input rows with the transformer's columns appended, computed lazily: a row's completion is generated
/// (and its loss scored) only when a cursor asks for that column of that row, so pipelines that never read the
/// columns (ML.NET's <c>Fit</c> of a chain transforms the training data once) cost nothing.
/// </summary>
internal sealed class CausalLMDataView : IDataView
{
    private readonly CausalLMTransformer transformer;
    private readonly IDataView input;
    private readonly (string Name, DataViewType Type, OutputKind Kind)[] added;

    public CausalLMDataView(CausalLMTransformer transformer, IDataView input)
    {
        this.transformer = transformer;
        this.input = input;
        added = transformer.OutputColumns(name => input.Schema.GetColumnOrNull(name)?.Type is TextDataViewType).ToArray();
        Schema = transformer.GetOutputSchema(input.Schema);
    }

    public bool CanShuffle => input.CanShuffle;

    public DataViewSchema Schema { get; }

    public long? GetRowCount() => input.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var needed = columnsNeeded.Select(c => c.Index).ToHashSet();
        int inputCount = input.Schema.Count;
        var activeAdded = added.Where((_, i) => needed.Contains(inputCount + i)).Select(a => a.Kind).ToHashSet();
        // The texts an added column is computed from must be read too.
        var sources = new HashSet<string>();
        if (activeAdded.Contains(OutputKind.Completion))
            sources.Add(transformer.Info.PromptColumnName);
        if (activeAdded.Contains(OutputKind.Loss) || activeAdded.Contains(OutputKind.Perplexity))
            foreach (var name in transformer.Info.DataFormat == DataFormat.PromptResponse
                         ? new[] { transformer.Info.PromptColumnName, transformer.Info.ResponseColumnName }
                         : [transformer.Info.TextColumnName])
                sources.Add(name);
        var inputColumns = input.Schema.Where(c => needed.Contains(c.Index) || sources.Contains(c.Name) && !c.IsHidden
                                                   && input.Schema.GetColumnOrNull(c.Name)?.Index == c.Index);
        return new Cursor(this, input.GetRowCursor(inputColumns, rand), needed);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)]; // one model, one cursor: generation is not split across threads

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly CausalLMDataView view;
        private readonly DataViewRowCursor inner;
        private readonly HashSet<int> active;
        private long computedFor = -1;
        private string? completion;
        private double? loss;

        public Cursor(CausalLMDataView view, DataViewRowCursor inner, HashSet<int> active)
        {
            this.view = view;
            this.inner = inner;
            this.active = active;
        }

        public override DataViewSchema Schema => view.Schema;

        public override long Position => inner.Position;

        public override long Batch => inner.Batch;

        public override bool MoveNext() => inner.MoveNext();

        public override ValueGetter<DataViewRowId> GetIdGetter() => inner.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) => active.Contains(column.Index);

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            int inputCount = view.input.Schema.Count;
            if (column.Index < inputCount)
                return inner.GetGetter<TValue>(view.input.Schema[column.Index]);
            var kind = view.added[column.Index - inputCount].Kind;
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
            string column = view.transformer.Info.PromptColumnName;
            try
            {
                return completion = view.transformer.Generate(Text(column));
            }
            catch (ArgumentException e) when (e.ParamName == "prompt")
            {
                throw new ArgumentException($"Column '{column}', row {inner.Position}: {e.Message}", column, e);
            }
        }

        private double Loss()
        {
            Refresh();
            return loss ??= view.transformer.ScoreRow(Text);
        }

        private void Refresh()
        {
            if (computedFor == inner.Position)
                return;
            computedFor = inner.Position;
            completion = null;
            loss = null;
        }

        private string Text(string columnName)
        {
            var column = view.input.Schema[columnName];
            ReadOnlyMemory<char> value = default;
            inner.GetGetter<ReadOnlyMemory<char>>(column)(ref value);
            return value.ToString();
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
                inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
