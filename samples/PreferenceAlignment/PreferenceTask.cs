namespace PreferenceAlignment;

/// <summary>One preference pair: the prompt, the preferred answer and a dispreferred one, and what the prompt offers.</summary>
/// <param name="Prompt">"Question: Which word do you like best: lion, blue, pear, Spain, seven?\nAnswer:".</param>
/// <param name="Chosen">" pear": the listed fruit.</param>
/// <param name="Rejected">Another listed word, with its leading space.</param>
/// <param name="Fruit">The listed fruit, as a generation is checked against it.</param>
public sealed record PreferencePair(string Prompt, string Chosen, string Rejected, string Fruit);

/// <summary>
/// A preference with a checkable answer, made up on the spot (no download): each prompt lists one word of each of five
/// categories, in the main sample's question format but asking which word the model likes best; the preferred answer
/// is always the fruit, the rejected one another word of the list. Nothing in a prompt says "fruit", so the model must
/// learn which words are fruits from the preference alone. The main sample's model answers "Which word is an animal /
/// a color" questions: it starts with no liking for fruits.
/// </summary>
public static class PreferenceTask
{
    // The main sample's categories (every word one GPT-2 token with its leading space); the fruit is the preferred kind.
    private static readonly string[][] Categories =
    [
        ["cat", "dog", "horse", "cow", "pig", "sheep", "lion", "tiger", "bear", "wolf", "fox", "mouse", "rabbit", "duck", "goat"],
        ["red", "blue", "green", "yellow", "black", "white", "brown", "pink", "purple", "gray"],
        ["apple", "banana", "grape", "lemon", "cherry", "peach", "pear", "mango", "melon", "plum"],
        ["France", "Spain", "Italy", "Japan", "China", "India", "Brazil", "Canada", "Egypt", "Mexico", "Germany", "Russia"],
        ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"],
    ];

    private const int FruitCategory = 2;

    /// <summary>
    /// <paramref name="trainCount"/> training and <paramref name="heldOutCount"/> held-out pairs, the same for a seed;
    /// no held-out prompt is a training prompt.
    /// </summary>
    public static (IReadOnlyList<PreferencePair> Train, IReadOnlyList<PreferencePair> HeldOut) Generate(int trainCount, int heldOutCount, int seed)
    {
        var random = new Random(seed);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        List<PreferencePair> Draw(int count)
        {
            var pairs = new List<PreferencePair>(count);
            while (pairs.Count < count)
            {
                var pair = Next(random);
                if (seen.Add(pair.Prompt))
                    pairs.Add(pair);
            }
            return pairs;
        }
        return (Draw(trainCount), Draw(heldOutCount));
    }

    /// <summary>Whether a generated answer (the text after the prompt) is the listed fruit: its first line, trimmed.</summary>
    public static bool AnswersTheFruit(PreferencePair pair, string generated)
    {
        int end = generated.IndexOfAny(['\n', '<']);
        return string.Equals((end >= 0 ? generated[..end] : generated).Trim(), pair.Fruit, StringComparison.Ordinal);
    }

    private static PreferencePair Next(Random random)
    {
        var words = Categories.Select(c => c[random.Next(c.Length)]).ToArray();
        string fruit = words[FruitCategory];
        string rejected = words[(FruitCategory + 1 + random.Next(Categories.Length - 1)) % Categories.Length];
        random.Shuffle(words);
        return new PreferencePair($"Question: Which word do you like best: {string.Join(", ", words)}?\nAnswer:", " " + fruit, " " + rejected, fruit);
    }
}
