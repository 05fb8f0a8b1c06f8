namespace Microsoft.ML.Liger.Training;

/// <summary>
/// One training example as token ids: <see cref="PromptLength"/> leading tokens that are context only
/// (no loss on them: the prompt of supervised fine-tuning; 0 for plain language modelling), then the target tokens.
/// </summary>
public sealed record TokenizedExample(int[] Tokens, int PromptLength)
{
    /// <summary>Target tokens (those the loss is computed on, after the shift: every token but the prompt's).</summary>
    public int TargetCount => Tokens.Length - PromptLength;
}
