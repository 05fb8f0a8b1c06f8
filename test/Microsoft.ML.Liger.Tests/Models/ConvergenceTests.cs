using Microsoft.ML.Liger.Training;
using Microsoft.ML.Liger.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.Models;

/// <summary>
/// Liger-Kernel's mini-model convergence test, per family: from the same seed, a Liger model and an eager
/// model train for 32 AdamW steps on the same small corpus; the loss curves agree at every step, the loss
/// falls, and the final parameters agree.
/// </summary>
[TestClass]
public sealed class ConvergenceTests
{
    private const int Steps = 32;
    // float32. Per-op rounding differences (about 1e-7 relative) are amplified by every AdamW step, which
    // normalises gradients: after 32 steps at lr 1e-2 the curves differ by up to about 1.6e-4 (Gemma 3, one
    // run in several hundred), and final weights by up to 3e-4 by norm. A wrong kernel moves the first
    // step's loss by 1e-2 or more.
    private const double LossTolerance = 5e-4, ParameterTolerance = 5e-3;

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [DynamicData(nameof(TinyModels.Cases), typeof(TinyModels))]
    public void LigerAndEagerTrainAlike(string name) =>
        TrainBoth(name, ScalarType.Float32, CPU, LossTolerance, LossTolerance, ParameterTolerance);

    /// <summary>
    /// bfloat16 weights and AdamW on a CUDA device (the GPU host runs it; elsewhere it is inconclusive), with
    /// Liger-Kernel's bf16 convergence tolerances on the loss (1e-2 + 5e-2 relative at every step; measured:
    /// at most 0.27 of that). Final parameters within 1e-1 by norm: AdamW at lr 1e-2 turns bf16 rounding
    /// differences into full-size steps, and after 32 steps the two models' weights differ by up to 6% (measured
    /// on an H100: a Mixtral router, a Gemma 2 q_proj), while their losses stay within the tolerance above.
    /// </summary>
    [TestMethod]
    [DynamicData(nameof(TinyModels.Cases), typeof(TinyModels))]
    public void LigerAndEagerTrainAlikeInBFloat16OnCuda(string name)
    {
        if (!cuda.is_available())
            Assert.Inconclusive("no CUDA device: the bf16 convergence test runs on the GPU host");
        TrainBoth(name, ScalarType.BFloat16, CUDA, 1e-2, 5e-2, 1e-1);
    }

    private void TrainBoth(string name, ScalarType dtype, Device device, double lossAbsolute, double lossRelative, double parameterTolerance)
    {
        var config = TinyModels.All[name];
        int seed = Random.Shared.Next();
        TestContext.WriteLine($"seed {seed}");
        var corpus = Corpus(seed);
        var eagerLosses = Train(config, LigerKernelOptions.None, seed, corpus, dtype, device, out var eagerParameters);
        var ligerLosses = Train(config, new LigerKernelOptions(), seed, corpus, dtype, device, out var ligerParameters);

        double worst = 0;
        for (int step = 0; step < Steps; step++)
        {
            double error = Math.Abs(eagerLosses[step] - ligerLosses[step]);
            worst = Math.Max(worst, error / (lossAbsolute + lossRelative * Math.Abs(eagerLosses[step])));
            Assert.IsLessThanOrEqualTo(lossAbsolute + lossRelative * Math.Abs(eagerLosses[step]), error,
                $"step {step}: eager {eagerLosses[step]:F6}, liger {ligerLosses[step]:F6}");
        }
        TestContext.WriteLine($"worst loss difference: {worst:F3} of the tolerance");
        Assert.IsLessThan(0.85 * eagerLosses[0], eagerLosses[^1], $"the loss must fall: {eagerLosses[0]:F4} → {eagerLosses[^1]:F4}");
        double worstParameter = 0;
        string worstName = "";
        foreach (var (parameterName, expected) in eagerParameters)
        {
            // k_proj's bias has an exactly zero gradient in exact arithmetic (it shifts all of a query's scores
            // equally, and softmax ignores that), so its gradient is rounding noise, which AdamW turns into
            // full-size steps in both models alike: not comparable. In bf16 Mixtral's router likewise: a token
            // whose top-2 flips under rounding moves the router's weights discontinuously (measured up to 13%
            // on an H100) while the losses still agree.
            // The same flip changes which tokens an expert sees, so in bf16 Mixtral's experts drift too: 10.4-12.1% by
            // norm in 3 of 4 runs on an H100 (2026-11-25, before and after the recomputing layers, which give the same
            // bits: RecomputeActivationsTests), with the losses within tolerance at every step.
            if (parameterName.EndsWith("k_proj.bias", StringComparison.Ordinal)
                || (dtype != ScalarType.Float32 && parameterName.Contains("block_sparse_moe.", StringComparison.Ordinal)))
                continue;
            // By norm: AdamW divides each gradient by its running scale, so an element whose gradient is
            // near zero in both models takes full-size, sign-driven steps; a few such elements may drift
            // apart while the matrix as a whole, and the losses, agree.
            double error = (ligerParameters[parameterName].to(ScalarType.Float64) - expected.to(ScalarType.Float64)).norm().item<double>()
                / Math.Max(expected.to(ScalarType.Float64).norm().item<double>(), 1e-12);
            if (error > worstParameter)
                (worstParameter, worstName) = (error, parameterName);
            Assert.IsLessThanOrEqualTo(parameterTolerance, error, $"final {parameterName}: relative norm error {error:E3}");
        }
        TestContext.WriteLine($"worst parameter difference: {worstParameter:E2} ({worstName})");
    }

    /// <summary>
    /// Sequences of a learnable pattern: each row counts up from a random start with a random stride (mod
    /// the vocabulary, above the special ids), so the next token is predictable from the previous two.
    /// </summary>
    private static List<Tensor> Corpus(int seed)
    {
        var random = new Random(seed);
        var batches = new List<Tensor>();
        for (int b = 0; b < 4; b++)
        {
            var rows = new long[4, 16];
            for (int r = 0; r < 4; r++)
            {
                int start = random.Next(94), stride = 1 + random.Next(3);
                for (int t = 0; t < 16; t++)
                    rows[r, t] = 3 + (start + stride * t) % 94;
            }
            batches.Add(tensor(rows));
        }
        return batches;
    }

    private static double[] Train(CausalLMConfig config, LigerKernelOptions kernels, int seed, List<Tensor> corpus,
        ScalarType dtype, Device device, out Dictionary<string, Tensor> finalParameters)
    {
        using var model = new CausalLM(config, new CausalLMOptions { Kernels = kernels, DType = dtype, Device = device });
        TinyModels.Randomize(model, seed, std: 0.1);
        model.train();
        using var optimizer = optim.AdamW(model.parameters(), lr: 1e-2, weight_decay: 0.01);
        var losses = new double[Steps];
        for (int step = 0; step < Steps; step++)
        {
            using var scope = NewDisposeScope();
            var ids = corpus[step % corpus.Count].to(device);
            optimizer.zero_grad();
            using var output = model.forward(new CausalLMInput { InputIds = ids, Labels = ids });
            output.Loss!.backward();
            losses[step] = output.Loss.item<float>();
            AdamWStep.Apply(optimizer);
        }
        finalParameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().to(ScalarType.Float32, CPU).clone());
        return losses;
    }
}
