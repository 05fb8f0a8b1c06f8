using System.Text;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Liger.Models.Tokenization;

/// <summary>Hugging Face's NFC/NFD/NFKC/NFKD normalizers (Qwen2 uses NFC), applied in order.</summary>
internal sealed class UnicodeNormalizer : Normalizer
{
    private readonly NormalizationForm[] _forms;

    public UnicodeNormalizer(IEnumerable<NormalizationForm> forms) => _forms = forms.ToArray();

    public override string Normalize(string original)
    {
        string text = original;
        foreach (NormalizationForm form in _forms)
            text = text.Normalize(form);
        return text;
    }

    public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());
}
