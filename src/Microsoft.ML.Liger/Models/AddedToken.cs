namespace Microsoft.ML.Liger.Models;

/// <summary>
/// A token matched as a whole in the text before the model sees it (Hugging Face's <c>added_tokens</c>):
/// chat markers, BOS/EOS and the like.
/// </summary>
/// <param name="Id">The token's id.</param>
/// <param name="Content">The exact text that stands for the token.</param>
/// <param name="Special">Whether <see cref="CausalLMTokenizer.Decode"/> drops it when asked to skip special tokens.</param>
/// <param name="LStrip">Whether the token swallows the whitespace on its left.</param>
/// <param name="RStrip">Whether the token swallows the whitespace on its right.</param>
public sealed record AddedToken(int Id, string Content, bool Special, bool LStrip = false, bool RStrip = false);
