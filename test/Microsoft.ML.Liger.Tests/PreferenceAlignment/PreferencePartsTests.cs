using Microsoft.ML.Liger.PreferenceAlignment;
using Microsoft.ML.Liger.Tests.FineTuning;
using Microsoft.ML.Liger.Training;

namespace Microsoft.ML.Liger.Tests.PreferenceAlignment;

/// <summary>The estimator's parts on their own: truncation, batch layout and targets, the epoch plan, KTO's KL sequences.</summary>
[TestClass]
public sealed class PreferencePartsTests
{
    [TestMethod]
    [DataRow(12, null), DataRow(12, 5), DataRow(6, null), DataRow(40, 3)]
    public void Encoder_CutsPromptsFromTheStart_KeepsBos_AndLeavesAResponseToken(int maxContext, int? maxPrompt)
    {
        var tokenizer = FineTuneFixtures.Tokenizer();
        var plain = new ExampleEncoder(tokenizer, useChatTemplate: false, systemPrompt: null);
        var encoder = new PreferenceEncoder(plain, maxContext, maxPrompt);
        string prompt = "pick one of these words please: red blue green cat dog bird tree stone river cloud sun moon =";
        int[] fullPrompt = plain.Prompt(prompt), fullChosen = plain.Response(" cat"), fullRejected = plain.Response(" stone river cloud sun moon");
        var example = encoder.Pair(prompt, " cat", " stone river cloud sun moon");

        int budget = Math.Min(maxPrompt ?? int.MaxValue, maxContext - 1);
        Assert.AreEqual(Math.Min(budget, fullPrompt.Length), example.Prompt.Length, "prompt length");
        Assert.AreEqual(tokenizer.BosTokenId, fullPrompt[0], "the fixture tokenizer starts prompts with BOS");
        Assert.AreEqual(fullPrompt[0], example.Prompt[0], "BOS stays in front");
        CollectionAssert.AreEqual(fullPrompt[^(example.Prompt.Length - 1)..], example.Prompt[1..], "the rest is the prompt's end");
        foreach (var (response, full) in new[] { (example.First, fullChosen), (example.Second!, fullRejected) })
        {
            Assert.IsGreaterThanOrEqualTo(1, response.Length, "at least one response token");
            Assert.IsLessThanOrEqualTo(maxContext, example.Prompt.Length + response.Length, "prompt + response fit");
            CollectionAssert.AreEqual(full[..response.Length], response, "a response keeps its start");
        }
    }

    [TestMethod]
    public void Pad_PutsEachResponseTokenAsTheTargetOfThePositionBeforeIt()
    {
        var random = new Random(Random.Shared.Next());
        var rows = Enumerable.Range(0, 5).Select(_ => (
            Prompt: Enumerable.Range(0, random.Next(0, 4)).Select(_ => 10 + random.Next(90)).ToArray(),
            Response: Enumerable.Range(0, random.Next(2, 6)).Select(_ => 10 + random.Next(90)).ToArray())).ToList();
        var batch = SequenceRows.Pad(rows, padId: 3);
        int length = rows.Max(r => r.Prompt.Length + r.Response.Length);
        Assert.AreEqual(length, batch.Length);
        for (int r = 0; r < rows.Count; r++)
        {
            var tokens = rows[r].Prompt.Concat(rows[r].Response).ToArray();
            for (int t = 0; t < length; t++)
            {
                int at = r * length + t;
                Assert.AreEqual(t < tokens.Length ? tokens[t] : 3L, batch.InputIds[at], $"row {r} id {t}");
                Assert.AreEqual(t < tokens.Length ? 1L : 0L, batch.AttentionMask[at], $"row {r} mask {t}");
                // Position t predicts token t + 1, scored when that token is a response token.
                long target = t + 1 < tokens.Length && t + 1 >= Math.Max(1, rows[r].Prompt.Length) ? tokens[t + 1] : -100;
                Assert.AreEqual(target, batch.Targets[at], $"row {r} target {t}");
            }
        }
        Assert.AreEqual(rows.Sum(r => r.Prompt.Length + r.Response.Length), batch.InputTokens);
    }

    [TestMethod]
    public void Plan_VisitsEveryPairOncePerEpoch_ChosenRowsFirst_AndRebuildsAnyStep()
    {
        var examples = Enumerable.Range(0, 11).Select(i => new PreferenceExample([1, 100 + i], [200 + i], [300 + i, 301])).ToList();
        var options = new CausalLMTrainingOptions { BatchSize = 3, GradientAccumulationSteps = 2, Epochs = 2, Seed = 5 };
        var plan = new PreferenceBatchPlan(examples, options, paired: true, padId: 0);
        Assert.AreEqual(2, plan.StepsPerEpoch, "ceil(ceil(11 / 3) / 2)");
        Assert.AreEqual(4, plan.TotalSteps);
        for (int epoch = 0; epoch < 2; epoch++)
        {
            var seen = new List<int>();
            for (int step = epoch * 2; step < epoch * 2 + 2; step++)
                foreach (var batch in plan.Step(step))
                {
                    Assert.AreEqual(2 * batch.Units, batch.Main.Rows, "chosen and rejected rows");
                    for (int i = 0; i < batch.Units; i++)
                    {
                        int example = batch.Examples[i];
                        Assert.AreEqual(100 + example, batch.Main.InputIds[i * batch.Main.Length + 1], "row i: pair i's prompt");
                        Assert.AreEqual(200 + example, batch.Main.InputIds[i * batch.Main.Length + 2], "row i: pair i's chosen response");
                        Assert.AreEqual(300 + example, batch.Main.InputIds[(batch.Units + i) * batch.Main.Length + 2], "row P + i: its rejected response");
                    }
                    seen.AddRange(batch.Examples);
                }
            CollectionAssert.AreEquivalent(Enumerable.Range(0, 11).ToArray(), seen.ToArray(), $"epoch {epoch} covers every pair once");
        }
        var again = new PreferenceBatchPlan(examples, options, paired: true, padId: 0);
        CollectionAssert.AreEqual(plan.Step(3).SelectMany(b => b.Examples).ToArray(), again.Step(3).SelectMany(b => b.Examples).ToArray(), "a step is rebuilt from its number");
        Assert.AreNotEqual(string.Join(',', plan.Step(0)[0].Examples), string.Join(',', plan.Step(2)[0].Examples), "each epoch has its own order");
    }

    [TestMethod]
    public void KlSequences_PairEachPromptWithThePreviousRowsCompletion()
    {
        var rows = Enumerable.Range(0, 4).Select(i => new PreferenceExample([1, 10 + i], [20 + i, 21 + i, 22 + i], null, i % 2 == 0)).ToList();
        var withKl = PreferenceEncoder.WithKlCompletions(rows, maxContextLength: 4);
        for (int i = 0; i < 4; i++)
        {
            Assert.AreSame(rows[i].Prompt, withKl[i].Prompt);
            CollectionAssert.AreEqual(rows[(i + 3) % 4].First[..2], withKl[i].Second, $"row {i}: the previous row's completion, cut to fit");
            Assert.AreEqual(rows[i].Desirable, withKl[i].Desirable);
        }
        var batch = PreferenceBatch.Of(withKl, [2, 0], paired: false, padId: 0);
        Assert.AreEqual(2, batch.Main.Rows);
        Assert.AreEqual(2, batch.Kl!.Rows);
        CollectionAssert.AreEqual(new[] { true, true }, batch.Desirable);
        Assert.AreEqual(21L, batch.Kl.InputIds[2], "row 0 of the KL batch: example 2's prompt, then example 1's completion");
    }
}
