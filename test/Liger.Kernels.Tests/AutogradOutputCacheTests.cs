using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// TorchSharp keeps an empty_like copy of every custom-function output on the graph node; our ops free
/// it right after apply (Runtime/AutogradOutputCache.cs). These tests fail if a TorchSharp upgrade moves
/// the private field the release relies on, or if the release breaks gradients.
/// </summary>
[TestClass]
public sealed class AutogradOutputCacheTests
{
    // Where the release happens (Supported, one copy released per apply, on every path) is covered by
    // RuntimeTests.AutogradOutputCopies_AreReleasedAfterEachApply; these cover what the release must not break.

    [TestMethod]
    [DataRow("rms_norm")]
    [DataRow("silu_mul")]
    public void AfterTheRelease_GradientsStillReachTheInput(string op)
    {
        using var scope = NewDisposeScope();
        using var path = PathScope.Enter(TestPaths.Torch);
        var x = randn(4, 16).requires_grad_();
        var w = randn(16).requires_grad_();
        var y = op == "rms_norm" ? LigerRMSNormFunction.Apply(x, w) : LigerSiLUMulFunction.Apply(x, w.expand(4, 16).contiguous());
        y.sum().backward();
        Assert.IsNotNull(x.grad);
        Assert.IsTrue(x.grad.isfinite().all().item<bool>());
        Assert.IsTrue(x.grad.abs().sum().item<float>() > 0, "gradient must reach the input");
    }

    [TestMethod]
    public void Apply_WithoutGradients_HasNothingToRelease()
    {
        using var scope = NewDisposeScope();
        using var path = PathScope.Enter(TestPaths.Torch);
        var y = LigerRMSNormFunction.Apply(randn(4, 16), randn(16));
        Assert.AreEqual(0, AutogradOutputCache.LastReleasedCount);
        Assert.IsFalse(y.requires_grad);
    }

    [TestMethod]
    public void UnusedOutput_InALargerGraph_GetsNoGradientAndDoesNotBreakBackward()
    {
        // With materialisation off, an op whose output takes no part in the loss is simply skipped.
        using var scope = NewDisposeScope();
        using var path = PathScope.Enter(TestPaths.Torch);
        var x = randn(3, 8).requires_grad_();
        var w = randn(8).requires_grad_();
        var unused = LigerRMSNormFunction.Apply(x, w);
        (x.Times(2)).sum().backward();
        Assert.IsNull(w.grad);
        Assert.IsTrue(x.grad!.EqualTo(2).all().item<bool>());
        GC.KeepAlive(unused);
    }
}
