using Microsoft.ML.Data;

namespace Microsoft.ML.Liger;

/// <summary>
/// The input rows with the transformer's columns appended, computed lazily: a row's completion is generated
/// (and its loss scored) only when a cursor asks for that column of that row, so pipelines that never read the
/// columns (ML.NET's <c>Fit</c> of a chain transforms the training data once) cost nothing. Each cursor's rows are
/// <see cref="CausalLMRow"/>s, the rows a prediction engine reads too.
/// </summary>
internal sealed class CausalLMDataView : IDataView
{
    private readonly IDataView input;
    private readonly CausalLMRowMapper mapper;

    public CausalLMDataView(CausalLMTransformer transformer, IDataView input)
    {
        this.input = input;
        mapper = new CausalLMRowMapper(transformer, input.Schema);
    }

    public bool CanShuffle => input.CanShuffle;

    public DataViewSchema Schema => mapper.OutputSchema;

    public long? GetRowCount() => input.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var needed = columnsNeeded.ToList();
        var inner = input.GetRowCursor(mapper.GetDependencies(needed), rand);
        return new Cursor(inner, new CausalLMRow(mapper, inner, needed.Select(c => c.Index).ToHashSet()));
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)]; // one model, one cursor: generation is not split across threads

    /// <summary>Moves the input cursor; reads through the row that appends the columns.</summary>
    private sealed class Cursor : DataViewRowCursor
    {
        private readonly DataViewRowCursor inner;
        private readonly CausalLMRow row;

        public Cursor(DataViewRowCursor inner, CausalLMRow row)
        {
            this.inner = inner;
            this.row = row;
        }

        public override DataViewSchema Schema => row.Schema;

        public override long Position => inner.Position;

        public override long Batch => inner.Batch;

        public override bool MoveNext() => inner.MoveNext();

        public override ValueGetter<DataViewRowId> GetIdGetter() => inner.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) => row.IsColumnActive(column);

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column) => row.GetGetter<TValue>(column);

        protected override void Dispose(bool disposing)
        {
            if (disposing)
                inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
