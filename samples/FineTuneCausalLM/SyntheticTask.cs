namespace FineTuneCausalLM;

/// <summary>One instruction: the prompt the model reads, the response it is trained to write, and the answer checked.</summary>
/// <param name="Prompt">"Question: …\nAnswer:", ending where the model starts writing.</param>
/// <param name="Response">What follows the prompt in training: a space and the answer (the end-of-text token is the caller's to add).</param>
/// <param name="Answer">The expected answer, one word.</param>
/// <param name="Choices">The words the prompt offers; a guess among them is the chance baseline.</param>
public sealed record SyntheticExample(string Prompt, string Response, string Answer, IReadOnlyList<string> Choices);

/// <summary>The training and held-out examples of <see cref="SyntheticTask.Generate"/>.</summary>
/// <param name="Train">Examples to train on.</param>
/// <param name="HeldOut">Examples whose prompts never occur in <paramref name="Train"/>.</param>
public sealed record SyntheticData(IReadOnlyList<SyntheticExample> Train, IReadOnlyList<SyntheticExample> HeldOut);

/// <summary>
/// A small instruction task with one checkable answer per prompt, made up on the spot so the sample needs no
/// download: "Question: Which word is a color: lion, pear, blue, Spain, seven?\nAnswer:" → " blue". Every prompt
/// lists one word of each of five categories (animal, color, fruit, country, number) in a random order and asks for
/// the animal or the color, so answering takes reading the question and knowing each word's category; copying a
/// fixed position or a fixed word scores chance. The held-out prompts
/// are combinations the model never saw, so a high held-out score means it generalised, not memorised.
/// </summary>
/// <remarks>
/// Every word is a single GPT-2 token with its leading space, so the answer is one token followed by end-of-text.
/// </remarks>
public static class SyntheticTask
{
    // (question phrase, words). One word of each category per prompt; no word belongs to two categories. Only the
    // first AskedCategories are asked about, the rest are distractors: a 2-layer model trained for ~100 s learns to
    // tell two asked categories apart reliably, while with three or five it masters some and stays stuck on others.
    private static readonly (string Phrase, string[] Words)[] Categories =
    [
        ("an animal", ["cat", "dog", "horse", "cow", "pig", "sheep", "lion", "tiger", "bear", "wolf", "fox", "mouse", "rabbit", "duck", "goat"]),
        ("a color", ["red", "blue", "green", "yellow", "black", "white", "brown", "pink", "purple", "gray"]),
        ("a fruit", ["apple", "banana", "grape", "lemon", "cherry", "peach", "pear", "mango", "melon", "plum"]),
        ("a country", ["France", "Spain", "Italy", "Japan", "China", "India", "Brazil", "Canada", "Egypt", "Mexico", "Germany", "Russia"]),
        ("a number", ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]),
    ];

    private const int AskedCategories = 2;

    /// <summary>Words each prompt offers (one per category).</summary>
    public static int ChoiceCount => Categories.Length;

    /// <summary>
    /// The accuracy of guessing uniformly among the words a prompt offers: 1 / <see cref="ChoiceCount"/> = 20%.
    /// A model that has learnt nothing about the task does worse (it need not answer with one of the words at all).
    /// </summary>
    public static double ChanceAccuracy => 1.0 / ChoiceCount;

    /// <summary>
    /// Makes <paramref name="trainCount"/> training and <paramref name="heldOutCount"/> held-out examples, the same
    /// for the same <paramref name="seed"/>. Prompts are distinct within each set, and no held-out prompt is a
    /// training prompt.
    /// </summary>
    public static SyntheticData Generate(int trainCount, int heldOutCount, int seed = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(trainCount);
        ArgumentOutOfRangeException.ThrowIfNegative(heldOutCount);
        var random = new Random(seed);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        // Far fewer than the distinct prompts (180,000 word choices × 120 orders × 2 questions), so the loop ends quickly.
        List<SyntheticExample> Draw(int count)
        {
            var examples = new List<SyntheticExample>(count);
            while (examples.Count < count)
            {
                var example = Next(random);
                if (seen.Add(example.Prompt))
                    examples.Add(example);
            }
            return examples;
        }
        var train = Draw(trainCount);
        var heldOut = Draw(heldOutCount);
        return new SyntheticData(train, heldOut);
    }

    /// <summary>
    /// Whether <paramref name="generated"/> (the text written after the prompt) gives the expected answer: its text
    /// up to the first end-of-text marker or newline, trimmed, equals <see cref="SyntheticExample.Answer"/> exactly.
    /// </summary>
    public static bool IsCorrect(SyntheticExample example, string generated)
    {
        ArgumentNullException.ThrowIfNull(example);
        ArgumentNullException.ThrowIfNull(generated);
        int end = generated.IndexOf("<|endoftext|>", StringComparison.Ordinal);
        if (end >= 0)
            generated = generated[..end];
        end = generated.IndexOf('\n');
        if (end >= 0)
            generated = generated[..end];
        return string.Equals(generated.Trim(), example.Answer, StringComparison.Ordinal);
    }

    private static SyntheticExample Next(Random random)
    {
        var choices = Categories.Select(c => c.Words[random.Next(c.Words.Length)]).ToArray();
        int asked = random.Next(AskedCategories);
        string answer = choices[asked];
        random.Shuffle(choices);
        string prompt = $"Question: Which word is {Categories[asked].Phrase}: {string.Join(", ", choices)}?\nAnswer:";
        return new SyntheticExample(prompt, " " + answer, answer, choices);
    }
}
