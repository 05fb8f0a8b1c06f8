using Microsoft.ML.Liger.Models;

namespace Microsoft.ML.Liger;

/// <summary>
/// The options both estimators share that say how the trained model reads, scores and completes rows; the transformer
/// keeps them in <see cref="CausalLMModelInfo"/> (<see cref="CausalLMModelInfo.Describe"/>).
/// </summary>
internal interface IScoringOptions
{
    bool UseChatTemplate { get; }
    string? SystemPrompt { get; }
    int MaxContextLength { get; }
    GenerationOptions Generation { get; }
    string LossColumnName { get; }
    string PerplexityColumnName { get; }
}
