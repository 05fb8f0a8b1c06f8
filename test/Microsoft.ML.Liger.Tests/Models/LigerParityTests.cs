using Microsoft.ML.Liger.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.Models;

/// <summary>
/// Every family with Liger's kernels against the same weights with everything eager: same logits, same
/// loss, same gradient for every parameter, in float32 on fresh random weights and tokens, with padding.
/// </summary>
[TestClass]
public sealed class LigerParityTests
{
    // float32: the kernels and eager torch round differently inside each op (fused vs separate steps), and
    // the differences grow through two layers; measured worst case is about 1e-6 relative.
    private const double LogitTolerance = 2e-5, GradientTolerance = 5e-5;

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [DynamicData(nameof(TinyModels.Cases), typeof(TinyModels))]
    public void FusedLinearCrossEntropyModelMatchesEager(string name) =>
        Compare(name, new LigerKernelOptions());

    [TestMethod]
    [DynamicData(nameof(TinyModels.Cases), typeof(TinyModels))]
    public void CrossEntropyModelMatchesEager(string name) =>
        Compare(name, new LigerKernelOptions { FusedLinearCrossEntropy = false, CrossEntropy = true });

    private void Compare(string name, LigerKernelOptions kernels)
    {
        var config = TinyModels.All[name];
        int seed = Random.Shared.Next();
        TestContext.WriteLine($"seed {seed}");
        using var eager = new CausalLM(config, new CausalLMOptions { Kernels = LigerKernelOptions.None });
        using var liger = new CausalLM(config, new CausalLMOptions { Kernels = kernels });
        TinyModels.Randomize(eager, seed);
        liger.load_state_dict(eager.state_dict());
        var batch = Batches.Random(seed, batch: 3, length: 13, padLast: 4);

        using var expected = eager.forward(batch.Input with { ReturnLogits = true });
        using var actual = liger.forward(batch.Input with { ReturnLogits = true });
        expected.Loss!.backward();
        actual.Loss!.backward();

        var real = batch.Mask.to(ScalarType.Bool);
        ModelAssert.Close(expected.Logits![real], actual.Logits![real], LogitTolerance, "logits");
        ModelAssert.Close(expected.Loss, actual.Loss, LogitTolerance, "loss");
        if (expected.AuxLoss is not null)
            ModelAssert.Close(expected.AuxLoss, actual.AuxLoss!, LogitTolerance, "aux loss");
        var ligerParameters = liger.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        // A Mixtral expert reached only by padding tokens gets an all-zero gradient on one path and none on the
        // other (libtorch may skip an undefined gradient): both mean zero.
        foreach (var (parameterName, parameter) in eager.named_parameters())
            ModelAssert.Close(parameter.grad ?? zeros_like(parameter), ligerParameters[parameterName].grad ?? zeros_like(parameter),
                GradientTolerance, $"grad of {parameterName}");
    }

    [TestMethod]
    public void FusedLossReturnsNoLogitsUnlessAsked()
    {
        var config = TinyModels.All["llama2"];
        using var model = new CausalLM(config);
        var batch = Batches.Random(Random.Shared.Next(), batch: 2, length: 7, padLast: 0);
        using (var output = model.forward(batch.Input))
        {
            Assert.IsNotNull(output.Loss);
            Assert.IsNull(output.Logits, "the fused loss must not materialise logits by default");
        }
        using (var output = model.forward(batch.Input with { Labels = null }))
            CollectionAssert.AreEqual(new long[] { 2, 7, TinyModels.Vocab }, output.Logits!.shape);
    }

    [TestMethod]
    public void CrossEntropyAndFusedLossTogetherAreRefused()
    {
        var error = Assert.ThrowsExactly<ArgumentException>(() =>
            new CausalLM(TinyModels.All["llama2"], new CausalLMOptions { Kernels = new LigerKernelOptions { CrossEntropy = true } }));
        StringAssert.Contains(error.Message, "FusedLinearCrossEntropy");
    }
}
