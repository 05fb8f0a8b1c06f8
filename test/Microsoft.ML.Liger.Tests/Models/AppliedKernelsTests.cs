using Microsoft.ML.Liger.Models;

namespace Microsoft.ML.Liger.Tests.Models;

/// <summary>What a model reports it runs on Liger's kernels, per family and options.</summary>
[TestClass]
public sealed class AppliedKernelsTests
{
    [TestMethod]
    [DataRow("llama3", "rope, rms_norm, swiglu, fused_linear_cross_entropy")]
    [DataRow("mixtral", "rope, rms_norm, swiglu, fused_linear_cross_entropy")]
    [DataRow("gemma2", "rope, rms_norm, geglu, fused_linear_cross_entropy")]
    [DataRow("glm4", "rms_norm, swiglu, fused_linear_cross_entropy")] // interleaved rotary stays eager, as in Liger
    public void DefaultsAreTheReferences(string name, string expected)
    {
        using var model = new CausalLM(TinyModels.All[name]);
        Assert.AreEqual(expected, model.AppliedKernels);
    }

    [TestMethod]
    public void OptionsTurnKernelsOff()
    {
        using var eager = new CausalLM(TinyModels.All["qwen3"], new CausalLMOptions { Kernels = LigerKernelOptions.None });
        Assert.AreEqual("none (eager)", eager.AppliedKernels);
        using var some = new CausalLM(TinyModels.All["qwen3"], new CausalLMOptions
        {
            Kernels = new LigerKernelOptions { Rope = false, SwiGlu = false, FusedLinearCrossEntropy = false, CrossEntropy = true },
        });
        Assert.AreEqual("rms_norm, cross_entropy", some.AppliedKernels);
    }
}
