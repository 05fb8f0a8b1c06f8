using Microsoft.ML.Data;

namespace Microsoft.ML.Liger;

/// <summary>
/// Builds the output SchemaShape of <see cref="FineTuning.FineTuneCausalLMEstimator.GetOutputSchema"/>. ML.NET keeps the
/// constructor of <see cref="SchemaShape.Column"/> internal, so the new columns are taken from the output shape
/// of a public estimator that adds exactly them: a CustomMapping whose output type declares a text completion and
/// two float columns, renamed through its schema definition. It is only asked for its shape, never fitted.
/// </summary>
internal static class AddedColumns
{
    public static SchemaShape Append(MLContext context, SchemaShape input, string? completion, string? loss, string? perplexity)
    {
        var definition = SchemaDefinition.Create(typeof(Outputs));
        definition[nameof(Outputs.Completion)].ColumnName = completion ?? "\u0001completion";
        definition[nameof(Outputs.Loss)].ColumnName = loss ?? "\u0001loss";
        definition[nameof(Outputs.Perplexity)].ColumnName = perplexity ?? "\u0001perplexity";
        var shape = context.Transforms.CustomMapping<NoInputs, Outputs>((_, _) => { }, contractName: null, outputSchemaDefinition: definition)
            .GetOutputSchema(new SchemaShape([]));
        var wanted = new[] { completion, loss, perplexity }.Where(n => n is not null).ToHashSet();
        var added = shape.Where(c => wanted.Contains(c.Name)).ToList();
        return new SchemaShape(input.Where(c => !wanted.Contains(c.Name)).Concat(added));
    }

    private sealed class NoInputs
    {
    }

    private sealed class Outputs
    {
        public string Completion { get; set; } = "";
        public float Loss { get; set; }
        public float Perplexity { get; set; }
    }
}
