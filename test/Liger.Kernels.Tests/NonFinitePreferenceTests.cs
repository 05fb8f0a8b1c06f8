using Liger.Kernels.Losses;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// The fused-linear preference losses inherit cross-entropy's NaN and ±inf rule: a NaN, +inf or −inf in one
/// target token's hidden state, or a NaN in lm_head's weight, gives a loss and gradients non-finite exactly
/// where the eager float64 reference's (References.Preference) are, on every path. The poison sits on
/// positions with a target: the eager reference masks ignored positions by multiplying (TRL's and
/// Liger-Kernel's way), so a NaN there poisons its sequence through 0·NaN, where this library follows
/// torch's cross_entropy (an ignored position adds nothing to the loss).
/// </summary>
[TestClass]
public sealed class NonFinitePreferenceTests
{
    /// <summary>Rows: path, loss, poison.</summary>
    public static IEnumerable<object[]> Cases() =>
        from path in TestPaths.Names
        from loss in new[] { "orpo", "dpo", "cpo", "simpo", "kto" }
        from poison in new[] { "nan", "posinf", "neginf", "weight" }
        select new object[] { path, loss, poison };

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void PreferenceLoss_NonFiniteInputs_MatchReferencePattern(string path, string lossName, string poison)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var random = new Random((int)seed);
        const long sequences = 4, length = 5, size = 7, vocab = 11;
        var c = lossName switch
        {
            "orpo" => new PreferenceCase("orpo", Nll: true),
            "cpo" => new PreferenceCase("cpo", Nll: true),
            "simpo" => new PreferenceCase("simpo", Beta: 2.0, Gamma: 0.5, Average: true),
            "kto" => new PreferenceCase("kto"),
            _ => new PreferenceCase("dpo"),
        };
        var hidden = NonFinite.Randn([sequences, length, size]);
        var weight = NonFinite.Randn([vocab, size], 0.5);
        var target = PreferenceLossTests.Targets(sequences, length, vocab);
        var labels = c.Loss == "kto" ? tensor(new[] { true, false, false, true }) : null;
        var counted = target.reshape(-1).NotEqualTo(-100).nonzero().squeeze(1).data<long>().ToArray();
        long row = counted[random.Next(counted.Length)];
        if (poison == "weight")
            NonFinite.Set(weight, random.NextInt64(weight.numel()), double.NaN);
        else
            NonFinite.Set(hidden, row * size + random.NextInt64(size),
                poison == "nan" ? double.NaN : poison == "posinf" ? double.PositiveInfinity : double.NegativeInfinity);
        var gradOutput = tensor(0.75f);
        var expected = References.Preference(c, hidden, weight, null, target, null, null, labels, null, gradOutput);
        string context = Inputs.Describe(seed, path, lossName, poison, $"row {row}");

        using var p = PathScope.Enter(path);
        var x = p.On(hidden).requires_grad_(true);
        var w = p.On(weight).requires_grad_(true);
        var y = p.On(target);
        Tensor loss = c.Loss switch
        {
            "orpo" => LigerFusedLinearOrpoLoss.Apply(x, w, y, options: new OrpoLossOptions { Beta = c.Beta, AverageLogProb = c.Average, ComputeNllLoss = true, Alpha = c.Alpha }).Loss,
            "cpo" => LigerFusedLinearCpoLoss.Apply(x, w, y, options: new CpoLossOptions { Beta = c.Beta, ComputeNllLoss = true, Alpha = c.Alpha }).Loss,
            "simpo" => LigerFusedLinearSimPoLoss.Apply(x, w, y, options: new SimPoLossOptions { Beta = c.Beta, Gamma = c.Gamma }).Loss,
            "kto" => LigerFusedLinearKtoLoss.Apply(x, w, y, p.On(labels!), null, null, new KtoLossOptions { Beta = c.Beta }).Loss,
            _ => LigerFusedLinearDpoLoss.Apply(x, w, y, null, null, new DpoLossOptions { Beta = c.Beta }).Loss,
        };
        loss.backward([p.On(gradOutput)]);
        p.AssertRan("cross_entropy_forward");

        NonFinite.AssertSame(loss, expected.Loss, "loss", context);
        NonFinite.AssertSame(x.grad!, expected.GradHidden, "hidden's gradient", context);
        NonFinite.AssertSame(w.grad!, expected.GradWeight, "weight's gradient", context);
    }
}
