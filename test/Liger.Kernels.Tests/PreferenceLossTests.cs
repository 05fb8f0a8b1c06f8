using Liger.Kernels.Runtime;
using Liger.Kernels.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// The chunked preference losses against an eager float64 reference that backpropagates through the full logits:
/// loss, metrics, and the gradients of hidden states, weight and bias, on every path, with chunks forced small
/// (several, the last one shorter) and sequences whose prompt, padding and completion lengths differ.
/// </summary>
[TestClass]
public sealed class PreferenceLossTests
{
    private const string Forward = "cross_entropy_forward";

    /// <summary>The cases, by name.</summary>
    public static readonly Dictionary<string, PreferenceCase> CaseTable = new()
    {
        ["orpo"] = new("orpo", Average: true, Nll: true),
        ["orpo-sum-bias-softcap"] = new("orpo", Beta: 0.3, Average: false, Nll: true, Alpha: 0.5, Softcap: 3.0),
        ["orpo-no-nll"] = new("orpo", Average: true),
        ["dpo"] = new("dpo"),
        ["dpo-hinge"] = new("dpo", Beta: 0.5, DpoType: "hinge"),
        ["dpo-ipo"] = new("dpo", Average: true, DpoType: "ipo"),
        ["dpo-robust"] = new("dpo", Beta: 0.2, DpoType: "robust", LabelSmoothing: 0.2),
        ["dpo-apo-zero"] = new("dpo", Beta: 0.3, DpoType: "apo_zero"),
        ["dpo-apo-down"] = new("dpo", Beta: 0.3, DpoType: "apo_down", Nll: true),
        ["dpo-reference-free"] = new("dpo"),
        ["dpo-given-logprobs"] = new("dpo", Average: true),
        ["cpo"] = new("cpo", Nll: true),
        ["cpo-smoothed"] = new("cpo", Beta: 0.5, Nll: true, LabelSmoothing: 0.2),
        ["simpo"] = new("simpo", Average: true, Gamma: 0.5),
        ["simpo-smoothed"] = new("simpo", Beta: 2.0, Average: true, Gamma: 1.0, LabelSmoothing: 0.1),
        ["kto"] = new("kto", DesirableWeight: 1.0, UndesirableWeight: 1.33),
        ["kto-kl-average"] = new("kto", Beta: 0.5, Average: true, DesirableWeight: 0.7),
        ["kto-reference-free"] = new("kto"),
        ["frozen-hidden"] = new("orpo", Average: true, Nll: true),
        ["eval"] = new("dpo"),
        ["all-rows"] = new("dpo", Average: true, Nll: true),   // CPU keeps the ignored positions, as a GPU does
    };

    /// <summary>Rows: path, case, dtype (bf16 for a few cases on each path).</summary>
    public static IEnumerable<object[]> Cases() =>
        from path in TestPaths.Names
        from name in CaseTable.Keys
        from dtype in name is "orpo" or "dpo" or "kto" or "simpo" ? new[] { ScalarType.Float32, ScalarType.BFloat16 } : [ScalarType.Float32]
        select new object[] { path, name, dtype };

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void MatchesFloat64Reference(string path, string name, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var c = CaseTable[name];
        bool kto = c.Loss == "kto";
        long sequences = kto ? 5 : 6, length = 7, size = 16, vocab = name == "orpo" ? 37 : 40;   // 37: the scalar kernel
        var hidden = Inputs.Randn([sequences, length, size], dtype);
        var weight = Inputs.Randn([vocab, size], dtype, scale: 0.5);
        var bias = name == "orpo-sum-bias-softcap" ? Inputs.Randn([vocab], dtype) : null;
        var target = Targets(sequences, length, vocab);
        bool usesReference = c.Loss is "dpo" or "kto" && !name.EndsWith("reference-free");
        var referenceHidden = usesReference ? Inputs.Randn([sequences, length, size], dtype) : null;
        var referenceWeight = usesReference ? Inputs.Randn([vocab, size], dtype, scale: 0.5) : null;
        var labels = kto ? tensor(new[] { true, false, true, true, false }) : null;
        var kl = name == "kto-kl-average" ? tensor(0.05f) : null;
        var gradOutput = tensor(name == "eval" ? 1f : 0.75f);
        var expected = References.Preference(c, hidden, weight, bias, target, referenceHidden, referenceWeight, labels, kl, gradOutput);
        string context = Inputs.Describe(seed, path, name, dtype);

        using var p = PathScope.Enter(path);
        PreferenceChunks.DropIgnoredOnCpu = name != "all-rows";
        try
        {
            Check(p, c, name, dtype, hidden, weight, bias, target, referenceHidden, referenceWeight, labels, kl, gradOutput, expected, context);
        }
        finally
        {
            PreferenceChunks.DropIgnoredOnCpu = true;
        }
    }

    private static void Check(PathScope p, PreferenceCase c, string name, ScalarType dtype, Tensor hidden, Tensor weight, Tensor? bias,
        Tensor target, Tensor? referenceHidden, Tensor? referenceWeight, Tensor? labels, Tensor? kl, Tensor gradOutput,
        PreferenceExpected expected, string context)
    {
        bool kto = c.Loss == "kto";
        long length = target.shape[1], vocab = weight.shape[0];
        bool usesReference = referenceHidden is not null;
        bool gradients = name != "eval";
        var x = p.On(hidden).requires_grad_(gradients && name != "frozen-hidden");
        var w = p.On(weight).requires_grad_(gradients);
        var b = bias is null ? null : p.On(bias).requires_grad_(gradients);
        var y = p.On(target);
        // Chunks of two pairs (paired) or two sequences: 2 + 1 pairs, or 2 + 2 + 1 sequences.
        long chunkBytes = 2 * (kto ? 1 : 2) * length * vocab * hidden.element_size();
        var reference = !usesReference ? null
            : name == "dpo-given-logprobs"
                ? PreferenceReference.FromLogProbs(LigerFusedLinearSequenceLogProbs.Apply(p.On(referenceHidden!), p.On(referenceWeight!), y, average: true))
                : PreferenceReference.FromModel(p.On(referenceHidden!), p.On(referenceWeight!));

        Tensor loss, logps, rewards;
        Tensor? chosenMean = null, rejectedMean = null, sequenceMean = null, nll = null, klUsed = null;
        IReadOnlyDictionary<string, Tensor> extras = new Dictionary<string, Tensor>();
        if (kto)
        {
            var result = LigerFusedLinearKtoLoss.Apply(x, w, y, p.On(labels!), reference, b,
                new KtoLossOptions { Beta = c.Beta, AverageLogProb = c.Average, DesirableWeight = c.DesirableWeight, UndesirableWeight = c.UndesirableWeight, ChunkBytes = chunkBytes },
                kl is null ? null : p.On(kl));
            (loss, logps, rewards, sequenceMean, klUsed) = (result.Loss, result.LogProbs, result.Rewards, result.LogitsMean, result.Kl);
        }
        else
        {
            PreferenceLossOptions options = c.Loss switch
            {
                "orpo" => new OrpoLossOptions { Beta = c.Beta, AverageLogProb = c.Average, ComputeNllLoss = c.Nll, Alpha = c.Alpha, Softcap = c.Softcap },
                "cpo" => new CpoLossOptions { Beta = c.Beta, LabelSmoothing = c.LabelSmoothing, ComputeNllLoss = c.Nll },
                "simpo" => new SimPoLossOptions { Beta = c.Beta, Gamma = c.Gamma, LabelSmoothing = c.LabelSmoothing },
                _ => new DpoLossOptions
                {
                    Beta = c.Beta, AverageLogProb = c.Average && c.DpoType != "ipo", ComputeNllLoss = c.Nll, LabelSmoothing = c.LabelSmoothing,   // IPO averages by itself
                    LossType = c.DpoType switch
                    {
                        "hinge" => DpoLossType.Hinge, "ipo" => DpoLossType.Ipo, "robust" => DpoLossType.Robust,
                        "apo_zero" => DpoLossType.ApoZero, "apo_down" => DpoLossType.ApoDown, _ => DpoLossType.Sigmoid,
                    },
                },
            };
            options = options with { ChunkBytes = chunkBytes };
            var result = c.Loss == "dpo"
                ? LigerFusedLinearDpoLoss.Apply(x, w, y, reference, b, (DpoLossOptions)options)
                : LigerFusedLinearPreferenceLoss.Apply(x, w, y, options, b);
            loss = result.Loss;
            logps = cat([result.ChosenLogProbs, result.RejectedLogProbs]);
            rewards = cat([result.ChosenRewards, result.RejectedRewards]);
            (chosenMean, rejectedMean, nll, extras) = (result.ChosenLogitsMean, result.RejectedLogitsMean, result.NllLoss, result.Extras);
        }
        if (gradients)
            loss.backward([p.On(gradOutput)]);
        p.AssertRan(Forward);

        var tolerance = dtype == ScalarType.Float32 ? Tolerance.VersusFloat64(ScalarType.Float32) with { Atol = 1e-5 } : new Tolerance(3e-2, 3e-2, 3e-2);
        Assert.AreEqual(ScalarType.Float32, loss.dtype, $"loss dtype. {context}");
        TensorAssert.Close(loss, expected.Loss, tolerance, "loss", context, scale: expected.Loss.abs().Plus(1));
        TensorAssert.Close(logps, expected.LogProbs, tolerance, "sequence log-probs", context);
        TensorAssert.Close(rewards, expected.Rewards, tolerance, "rewards", context, scale: expected.Rewards.abs().Plus(0.1));
        if (kto)
        {
            TensorAssert.Close(sequenceMean!, expected.SequenceLogitsMean, tolerance, "logits mean per sequence", context, scale: expected.SequenceLogitsMean.abs().Plus(0.1));
            TensorAssert.Close(klUsed!, expected.Kl, tolerance, "kl", context);
        }
        else
        {
            TensorAssert.Close(chosenMean!, expected.ChosenLogitsMean, tolerance, "chosen logits mean", context, scale: expected.ChosenLogitsMean.abs().Plus(0.1));
            TensorAssert.Close(rejectedMean!, expected.RejectedLogitsMean, tolerance, "rejected logits mean", context, scale: expected.RejectedLogitsMean.abs().Plus(0.1));
            if (c.Nll)
                TensorAssert.Close(nll!, expected.Nll, tolerance, "nll", context);
            CollectionAssert.AreEquivalent(expected.Extras.Keys.ToList(), extras.Keys.ToList(), $"extras. {context}");
            // ORPO's log-odds, log(p / (1 − p)) of each mean log-prob, amplify its error by 1 / (1 − p): in bf16 the
            // log-probs' rounding reaches 3e-2 there at some seeds (seen: 3.03e-2), so the extras get the gradients' bound.
            var extrasTolerance = dtype == ScalarType.Float32 ? tolerance : new Tolerance(5e-2, 5e-2, 5e-2);
            foreach (var (key, value) in expected.Extras)
                TensorAssert.Close(extras[key], value, extrasTolerance, key, context, scale: value.abs().Plus(0.1));
        }
        if (!gradients)
        {
            Assert.IsNull(w.grad, $"eval: no weight gradient. {context}");
            return;
        }
        var gradTolerance = dtype == ScalarType.Float32 ? tolerance : new Tolerance(3e-2, 5e-2, 5e-2);
        if (x.requires_grad)
            TensorAssert.Close(x.grad!, expected.GradHidden, gradTolerance, "grad hidden", context);
        else
            Assert.IsNull(x.grad, $"frozen hidden states get no gradient. {context}");
        TensorAssert.Close(w.grad!, expected.GradWeight, gradTolerance, "grad weight", context);
        if (b is not null)
            TensorAssert.Close(b.grad!, expected.GradBias!, gradTolerance, "grad bias", context);
    }

    /// <summary>
    /// Shifted targets of sequences laid out as prompt, completion, padding: every position before the completion and
    /// after it is ignored, at least one completion token per sequence, lengths drawn per row.
    /// </summary>
    public static Tensor Targets(long sequences, long length, long vocab)
    {
        var target = ScalarArithmetic.Full([sequences, length], -100L, ScalarType.Int64);
        var random = new Random((int)randint(0, int.MaxValue, [1]).item<long>());
        for (long row = 0; row < sequences; row++)
        {
            int prompt = random.Next(0, (int)length - 1);
            int completion = random.Next(1, (int)length - prompt + 1);
            for (int t = prompt; t < prompt + completion; t++)
                target[row, t] = tensor((long)random.Next(0, (int)vocab));
        }
        return target;
    }

    [TestMethod]
    public void DpoAgainstItselfIsLogTwoAndRewardsAreZero()
    {
        // Policy and reference identical: every log-ratio is 0, so the sigmoid loss is −log σ(0) = ln 2 for any data.
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var hidden = randn(8, 9, 12);
        var weight = randn(33, 12);
        var target = Targets(8, 9, 33);
        var result = LigerFusedLinearDpoLoss.Apply(hidden, weight, target, PreferenceReference.FromModel(hidden, weight));
        Assert.AreEqual(Math.Log(2), result.Loss.item<float>(), 1e-6, Seeds.Describe(seed));
        Assert.AreEqual(0.0, result.ChosenRewards.abs().max().item<float>(), 1e-6, Seeds.Describe(seed));
        Assert.AreEqual(0.0, result.RewardMargin().item<float>(), 1e-6, Seeds.Describe(seed));
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void ChunkingDoesNotChangeTheResult(string path)
    {
        // One pair per chunk and all pairs in one chunk: the same loss and gradients to float32 summation order.
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        using var p = PathScope.Enter(path);
        var hidden = p.On(randn(10, 6, 16));
        var weight = p.On(randn(40, 16));
        var target = p.On(Targets(10, 6, 40));
        (Tensor Loss, Tensor Grad) Run(long? chunkBytes)
        {
            var w = weight.detach().requires_grad_(true);
            var loss = LigerFusedLinearOrpoLoss.Apply(hidden, w, target, options: new OrpoLossOptions { ChunkBytes = chunkBytes }).Loss;
            loss.backward();
            return (loss.detach(), w.grad!);
        }
        var (oneLoss, oneGrad) = Run(1);
        var (allLoss, allGrad) = Run(null);
        string context = Inputs.Describe(seed, path);
        TensorAssert.Close(oneLoss, allLoss, Tolerance.SameRounding(ScalarType.Float32), "loss", context);
        TensorAssert.Close(oneGrad, allGrad, Tolerance.SameRounding(ScalarType.Float32) with { NormRel = 1e-5 }, "grad weight", context);
    }

    [TestMethod]
    public void SequencesPerChunkHoldsWholePairsWithinTheBudget()
    {
        Assert.AreEqual(2L, PreferenceChunks.SequencesPerChunk(32, 1024, 128256, 2, null, paired: true), "B=16 T=1024 V=128256 bf16 in 1 GiB");
        Assert.AreEqual(1L, PreferenceChunks.SequencesPerChunk(4, 10, 10, 4, 1, paired: true), "at least one pair");
        Assert.AreEqual(2L, PreferenceChunks.SequencesPerChunk(6, 7, 40, 4, 2 * 7 * 40 * 4 * 2, paired: true), "2 of 3 pairs fit: 2 + 1");
        Assert.AreEqual(3L, PreferenceChunks.SequencesPerChunk(5, 7, 40, 4, 4 * 7 * 40 * 4, paired: false), "4 fit, then 3 + 2");
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void BadInputsNameTheArgument(string path)
    {
        using var scope = NewDisposeScope();
        using var p = PathScope.Enter(path);
        var x = p.On(randn(4, 5, 8));
        var w = p.On(randn(10, 8));
        var y = p.On(Targets(4, 5, 10));
        PreferenceLossResult Orpo(Tensor h, Tensor weight, Tensor target, Tensor? b = null, OrpoLossOptions? o = null) =>
            LigerFusedLinearOrpoLoss.Apply(h, weight, target, b, o);
        RmsNormTests.ExpectArgument<ArgumentException>("hidden", () => Orpo(p.On(randn(3, 5, 8)), w, p.On(Targets(3, 5, 10))), "odd number of sequences");
        RmsNormTests.ExpectArgument<ArgumentException>("hidden", () => Orpo(x.reshape(20, 8), w, y.reshape(20)), "2-d hidden");
        RmsNormTests.ExpectArgument<ArgumentException>("weight", () => Orpo(x, p.On(randn(10, 7)), y), "hidden size 7 for 8");
        RmsNormTests.ExpectArgument<ArgumentException>("weight", () => Orpo(x, w.to(ScalarType.BFloat16), y), "bf16 weight, fp32 hidden");
        RmsNormTests.ExpectArgument<ArgumentException>("bias", () => Orpo(x, w, y, p.On(randn(9))), "9 biases for 10 classes");
        RmsNormTests.ExpectArgument<ArgumentException>("target", () => Orpo(x, w, y.narrow(1, 0, 4)), "targets for 4 positions of 5");
        RmsNormTests.ExpectArgument<ArgumentException>("target", () => Orpo(x, w, y.to(ScalarType.Int32)), "int32 targets");
        if (p.Device.type == DeviceType.CPU)
            RmsNormTests.ExpectArgument<ArgumentException>("target", () => Orpo(x, w, y.clone().FillInPlace(10)), "target = V");
        else   // on a GPU the range check would cost a host synchronisation: a target out of range poisons the loss instead, loudly
            Assert.IsTrue(float.IsNaN(Orpo(x, w, y.clone().FillInPlace(10)).Loss.item<float>()), "target = V gives a NaN loss on the GPU");
        RmsNormTests.ExpectArgument<ArgumentOutOfRangeException>("Beta", () => Orpo(x, w, y, o: new OrpoLossOptions { Beta = 0 }), "beta 0");
        RmsNormTests.ExpectArgument<ArgumentOutOfRangeException>("ChunkBytes", () => Orpo(x, w, y, o: new OrpoLossOptions { ChunkBytes = 0 }), "chunk of 0 bytes");
        RmsNormTests.ExpectArgument<ArgumentOutOfRangeException>("LabelSmoothing",
            () => LigerFusedLinearCpoLoss.Apply(x, w, y, options: new CpoLossOptions { LabelSmoothing = 0.6 }), "smoothing 0.6");
        RmsNormTests.ExpectArgument<ArgumentOutOfRangeException>("LabelSmoothing",
            () => LigerFusedLinearDpoLoss.Apply(x, w, y, null, options: new DpoLossOptions { LabelSmoothing = 0.1 }), "smoothing without the robust loss");
        RmsNormTests.ExpectArgument<ArgumentException>("reference",
            () => LigerFusedLinearPreferenceLoss.Apply(x, w, y, new OrpoLossOptions(), reference: PreferenceReference.FromModel(x, w)), "ORPO given a reference");
        RmsNormTests.ExpectArgument<ArgumentException>("reference.Hidden",
            () => LigerFusedLinearDpoLoss.Apply(x, w, y, PreferenceReference.FromModel(x.narrow(1, 0, 4), w)), "reference of another shape");
        RmsNormTests.ExpectArgument<ArgumentException>("reference.LogProbs",
            () => LigerFusedLinearDpoLoss.Apply(x, w, y, PreferenceReference.FromLogProbs(p.On(randn(3)))), "3 reference log-probs for 4 sequences");
        RmsNormTests.ExpectArgument<ArgumentException>("options",
            () => LigerFusedLinearPreferenceLoss.Apply(x, w, y, new KtoLossOptions()), "KTO through the paired entry");
        var labels = p.On(tensor(new[] { true, false, true, false }));
        RmsNormTests.ExpectArgument<ArgumentException>("labels",
            () => LigerFusedLinearKtoLoss.Apply(x, w, y, labels.to(ScalarType.Int64)), "int labels");
        RmsNormTests.ExpectArgument<ArgumentException>("labels",
            () => LigerFusedLinearKtoLoss.Apply(x, w, y, labels.narrow(0, 0, 3)), "3 labels for 4 sequences");
        RmsNormTests.ExpectArgument<ArgumentException>("kl",
            () => LigerFusedLinearKtoLoss.Apply(x, w, y, labels, kl: p.On(randn(2))), "2 KL values for 4 sequences");
        RmsNormTests.ExpectArgument<ArgumentException>("ComputeNllLoss",
            () => LigerFusedLinearKtoLoss.Apply(x, w, y, labels, options: new KtoLossOptions { ComputeNllLoss = true }), "KTO with an NLL term");
    }
}
