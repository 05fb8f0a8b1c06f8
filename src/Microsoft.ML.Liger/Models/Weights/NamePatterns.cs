using System.Text.RegularExpressions;

namespace Microsoft.ML.Liger.Models.Weights;

/// <summary>State-dict name patterns where '*' matches any run of characters, dots included.</summary>
internal sealed class NamePatterns
{
    private readonly Regex? _regex;

    public NamePatterns(IEnumerable<string> patterns, string optionName)
    {
        var alternatives = new List<string>();
        foreach (var pattern in patterns)
        {
            if (string.IsNullOrWhiteSpace(pattern))
                throw new ArgumentException($"{optionName} contains an empty pattern.", optionName);
            alternatives.Add(string.Join(".*", pattern.Split('*').Select(Regex.Escape)));
        }
        if (alternatives.Count > 0)
            _regex = new Regex($"^(?:{string.Join("|", alternatives)})$", RegexOptions.CultureInvariant);
    }

    public bool Matches(string name) => _regex?.IsMatch(name) ?? false;
}
