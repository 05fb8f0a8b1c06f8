using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger.FineTuning;

/// <summary>
/// Options of <see cref="LigerCatalog.FineTuneCausalLM"/>: which columns, plus what every causal-LM estimator takes
/// (inherited from <see cref="CausalLMEstimatorOptions"/>: model, tokenizer, chat format, generation; and the training
/// loop's batch size, learning rate, schedule, precision, checkpoints, ...).
/// </summary>
/// <remarks>
/// The data is either plain text (one column, <see cref="TextColumnName"/>: language modelling on every token)
/// or prompt and response columns (supervised fine-tuning: the loss is on the response's tokens only). With
/// <see cref="DataFormat.Auto"/> the input's schema decides: prompt and response when both columns exist.
/// </remarks>
public sealed class FineTuneCausalLMOptions : CausalLMEstimatorOptions
{
    /// <summary>Text or prompt/response; default <see cref="DataFormat.Auto"/>.</summary>
    public DataFormat DataFormat { get; set; } = DataFormat.Auto;

    /// <summary>The text column for language modelling. Default "Text".</summary>
    public string TextColumnName { get; set; } = "Text";

    /// <summary>The prompt column for supervised fine-tuning (and for the transformer's completions). Default "Prompt".</summary>
    public string PromptColumnName { get; set; } = "Prompt";

    /// <summary>The response column for supervised fine-tuning. Default "Response".</summary>
    public string ResponseColumnName { get; set; } = "Response";

    /// <summary>Name of the transformer's generated-completion column (added when the input has the prompt column). Default "Completion".</summary>
    public string CompletionColumnName { get; set; } = "Completion";

    /// <summary>A shallow copy (a sweep's trial changes its copy's scalar options; the tokenizer and data are shared).</summary>
    internal FineTuneCausalLMOptions Copy() => (FineTuneCausalLMOptions)MemberwiseClone();

    /// <inheritdoc/>
    public override void Validate() => ValidateModelAndColumns(
    [
        (nameof(TextColumnName), TextColumnName), (nameof(PromptColumnName), PromptColumnName),
        (nameof(ResponseColumnName), ResponseColumnName), (nameof(CompletionColumnName), CompletionColumnName),
    ]);
}
