namespace Microsoft.ML.Liger;

/// <summary>What the training rows hold.</summary>
public enum DataFormat
{
    /// <summary>Prompt and response when the input has both columns, text otherwise.</summary>
    Auto,

    /// <summary>One text column: language modelling, loss on every token.</summary>
    Text,

    /// <summary>Prompt and response columns: supervised fine-tuning, loss on the response only.</summary>
    PromptResponse,
}
