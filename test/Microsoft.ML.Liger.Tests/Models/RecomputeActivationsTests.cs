using Microsoft.ML.Liger.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.Models;

/// <summary>
/// <see cref="LigerKernelOptions.RecomputeActivations"/> changes what a Liger model keeps for the backward, never what
/// it computes: with the same weights and batch, the loss and every parameter's gradient are the same bits with it on
/// and off, for every family, in float32 on the CPU and in bfloat16 on CUDA (the GPU host runs those rows).
/// </summary>
[TestClass]
public sealed class RecomputeActivationsTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [DynamicData(nameof(TinyModels.Cases), typeof(TinyModels))]
    public void SameLossAndGradientsBitForBit_OnTheCpu(string name) => Compare(name, ScalarType.Float32, CPU);

    [TestMethod]
    [DynamicData(nameof(TinyModels.Cases), typeof(TinyModels))]
    public void SameLossAndGradientsBitForBit_InBFloat16OnCuda(string name)
    {
        if (!cuda.is_available())
            Assert.Inconclusive("no CUDA device: the bf16 rows run on the GPU host");
        Compare(name, ScalarType.BFloat16, CUDA);
    }

    private void Compare(string name, ScalarType dtype, Device device)
    {
        var config = TinyModels.All[name];
        int seed = Random.Shared.Next();
        TestContext.WriteLine($"seed {seed}");
        using var keeping = new CausalLM(config, new CausalLMOptions
        {
            Kernels = new LigerKernelOptions { RecomputeActivations = false }, DType = dtype, Device = device,
        });
        using var recomputing = new CausalLM(config, new CausalLMOptions { Kernels = new LigerKernelOptions(), DType = dtype, Device = device });
        TinyModels.Randomize(keeping, seed);
        recomputing.load_state_dict(keeping.state_dict());
        var batch = Batches.Random(seed, batch: 3, length: 13, padLast: 4);
        var input = batch.Input with
        {
            InputIds = batch.Input.InputIds.to(device), Labels = batch.Input.Labels?.to(device), AttentionMask = batch.Input.AttentionMask?.to(device),
        };

        using var expected = keeping.forward(input);
        using var actual = recomputing.forward(input);
        expected.Loss!.backward();
        actual.Loss!.backward();
        Assert.AreEqual(expected.Loss.to(ScalarType.Float64).item<double>(), actual.Loss!.to(ScalarType.Float64).item<double>(), 0.0, "loss");
        var recomputed = recomputing.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (parameterName, parameter) in keeping.named_parameters())
        {
            if (parameter.grad is null)
            {
                Assert.IsNull(recomputed[parameterName].grad, $"{parameterName}: a gradient with recomputation only");
                continue;
            }
            var a = parameter.grad.cpu().to(ScalarType.Float64);
            var b = recomputed[parameterName].grad!.cpu().to(ScalarType.Float64);
            long differing = a.ne(b).sum().item<long>();
            Assert.AreEqual(0L, differing, $"grad of {parameterName}: {differing} of {a.numel()} elements differ " +
                $"(largest difference {(a - b).abs().max().item<double>():E3})");
        }
    }
}
