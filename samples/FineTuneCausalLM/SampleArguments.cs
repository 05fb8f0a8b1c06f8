namespace FineTuneCausalLM;

/// <summary>"--name value" command-line options of the samples (linked into each of them).</summary>
internal static class SampleArguments
{
    /// <summary>The value after <paramref name="name"/>, or <paramref name="fallback"/>.</summary>
    public static string Text(string[] args, string name, string fallback)
    {
        int at = Array.IndexOf(args, name);
        return at >= 0 && at + 1 < args.Length ? args[at + 1] : fallback;
    }

    /// <summary>The integer after <paramref name="name"/>, or <paramref name="fallback"/>.</summary>
    public static int Int(string[] args, string name, int fallback) =>
        int.TryParse(Text(args, name, ""), out int value) ? value : fallback;
}
