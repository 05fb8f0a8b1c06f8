using Microsoft.ML.Liger.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.Models;

/// <summary>
/// Gradient checkpointing per decoder layer: the same loss and bit-identical gradients as without it
/// (float32 on the CPU: the recompute runs the same ops in the same order), with Liger's kernels inside.
/// </summary>
[TestClass]
public sealed class LayerRecomputeTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [DataRow("llama3"), DataRow("mixtral"), DataRow("gemma2"), DataRow("qwen2_sliding"), DataRow("phi3"), DataRow("olmo2"), DataRow("glm4")]
    public void CheckpointedLayersGiveTheSameGradients(string name)
    {
        int seed = Random.Shared.Next();
        TestContext.WriteLine($"seed {seed}");
        var config = TinyModels.All[name];
        using var plain = new CausalLM(config);
        using var checkpointed = new CausalLM(config) { GradientCheckpointing = true };
        TinyModels.Randomize(plain, seed);
        checkpointed.load_state_dict(plain.state_dict());
        var batch = Batches.Random(seed, batch: 2, length: 11, padLast: 3);

        using var expected = plain.forward(batch.Input);
        using var actual = checkpointed.forward(batch.Input);
        expected.Loss!.backward();
        actual.Loss!.backward();
        Recompute.ThrowIfBackwardFailed();

        Assert.AreEqual(expected.Loss.item<float>(), actual.Loss.item<float>(), "loss");
        var grads = checkpointed.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad);
        foreach (var (parameterName, parameter) in plain.named_parameters())
        {
            // A Mixtral expert reached only by padding tokens gets an all-zero gradient or none, depending on
            // how libtorch meets the undefined gradient: both mean zero.
            var plainGrad = parameter.grad ?? zeros_like(parameter);
            var checkpointedGrad = grads[parameterName] ?? zeros_like(parameter);
            Assert.IsTrue(plainGrad.eq(checkpointedGrad).all().item<bool>(), $"grad of {parameterName} differs");
        }
    }

    /// <summary>The layers' activations are really dropped: the checkpointed forward keeps far less live memory.</summary>
    [TestMethod]
    public void CheckpointedForwardKeepsNoLayerActivations()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Inconclusive("live native heap bytes are read through glibc");
        var config = TinyModels.All["llama2"].With(new Dictionary<string, object?> { ["num_hidden_layers"] = 6 });
        long Kept(bool checkpointing)
        {
            using var model = new CausalLM(config) { GradientCheckpointing = checkpointing };
            var batch = Batches.Random(3, batch: 4, length: 64, padLast: 0);
            NativeHeap.Settle();
            long before = NativeHeap.LiveBytes();
            using var output = model.forward(batch.Input);
            long kept = NativeHeap.LiveBytes() - before;
            output.Loss!.backward();
            return kept;
        }
        long plain = Kept(false), checkpointed = Kept(true);
        TestContext.WriteLine($"live after forward: plain {plain / 1024} KiB, checkpointed {checkpointed / 1024} KiB");
        Assert.IsLessThan(plain / 3, checkpointed, $"plain {plain} bytes, checkpointed {checkpointed} bytes");
    }

    [TestMethod]
    public void CheckpointingIsOffByDefaultAndSkippedOutsideTraining()
    {
        using var model = new CausalLM(TinyModels.All["llama2"]);
        Assert.IsFalse(model.GradientCheckpointing);
        model.GradientCheckpointing = true;
        model.eval();
        var batch = Batches.Random(1, batch: 1, length: 5, padLast: 0);
        using var output = model.forward(batch.Input);
        output.Loss!.backward(); // eval mode: plain layers, a normal graph
        Assert.IsNotNull(model.LmHeadWeight.grad);
    }
}
