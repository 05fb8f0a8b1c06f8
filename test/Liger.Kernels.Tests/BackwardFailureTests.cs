using System.Runtime.InteropServices;
using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// A failure inside a Liger backward runs in libtorch's native callback, where a .NET exception ended the process
/// (SIGABRT). It must reach the caller of backward() as a catchable exception that names the op and carries the
/// cause, and the process, libtorch's engine and the ops must keep working afterwards.
/// </summary>
[TestClass]
public sealed class BackwardFailureTests
{
    /// <summary>How the test node's backward fails.</summary>
    public static readonly string[] Failures = ["throws", "wrong-count", "gradient-for-a-non-tensor"];

    /// <summary>Rows: path, failure.</summary>
    public static IEnumerable<object[]> Cases() =>
        from path in TestPaths.Names
        from failure in Failures
        select new object[] { path, failure };

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void FailingBackward_SurfacesAsCatchableException_NamingTheOpAndCause_AndTheProcessCarriesOn(string path, string failure)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        string context = Inputs.Describe(seed, path, failure);
        using var p = PathScope.Enter(path);
        var (x, weight) = (p.On(randn(3, 5, 16)), p.On(randn(16)));
        var before = RmsNormGradients(x, weight);

        // A Liger op on each side of the failing node: the graph fails in the middle.
        var leaf = x.clone().requires_grad_(true);
        var normed = LigerRMSNormFunction.Apply(leaf, weight.clone().requires_grad_(true));
        var failing = FailingAutograd.apply(normed, failure, $"deliberate failure (seed {seed})")[0];
        var loss = LigerRMSNormFunction.Apply(failing, weight).sum();

        var raised = Assert.ThrowsExactly<ExternalException>(() => loss.backward(), context);
        StringAssert.Contains(raised.Message, FailingAutograd.OpName, $"the op is named. {context}");
        var expectedCause = failure == "throws" ? typeof(FormatException) : typeof(InvalidOperationException);
        Assert.IsInstanceOfType(raised.InnerException, expectedCause, $"{raised}. {context}");
        StringAssert.Contains(raised.Message, raised.InnerException!.Message, $"the cause's message is in the caller's. {context}");
        if (failure == "throws")
            StringAssert.Contains(raised.Message, $"deliberate failure (seed {seed})", context);
        Assert.AreSame(raised.InnerException, raised.Data[AutogradFailures.DataKey], context);
        Assert.AreEqual(0, AutogradFailures.PendingCount, $"the failure was surfaced once, not left for a later backward. {context}");
        Assert.IsNull(leaf.grad, $"nothing reached the leaf behind the refused node. {context}");

        // The process, libtorch's engine and the ops carry on.
        TensorAssert.BitwiseEqual(before.Dx, RmsNormGradients(x, weight).Dx, "RMSNorm dx after the failure", context);
    }

    /// <summary>A real op: its saved input modified in place makes libtorch's check throw inside its backward.</summary>
    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void SavedInputModifiedInPlace_FailsTheBackwardCatchably_NamingTheOp(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        string context = Inputs.Describe(seed, path);
        using var p = PathScope.Enter(path);
        var (x, weight) = (p.On(randn(4, 16)), p.On(randn(16)));
        var before = RmsNormGradients(x, weight);

        var input = x.clone().requires_grad_(true);
        var hidden = input.mul(input);   // an intermediate: in-place changes are allowed, and bump its version
        var loss = LigerRMSNormFunction.Apply(hidden, weight.clone().requires_grad_(true)).sum();
        hidden.PlusInPlace(ones_like(hidden));

        var raised = Assert.ThrowsExactly<ExternalException>(() => loss.backward(), context);
        StringAssert.Contains(raised.Message, "LigerRMSNormBackward", $"the op is named. {context}");
        StringAssert.Contains(raised.Message, "inplace operation", $"libtorch's cause is kept. {context}");
        Assert.IsInstanceOfType<ExternalException>(raised.InnerException, context);
        TensorAssert.BitwiseEqual(before.Dx, RmsNormGradients(x, weight).Dx, "RMSNorm dx after the failure", context);
    }

    [TestMethod]
    public void FailingForward_ThrowsTheOriginalException_AndTheProcessCarriesOn()
    {
        using var scope = NewDisposeScope();
        var x = randn(3, 16, requires_grad: true);
        var thrown = Assert.ThrowsExactly<FormatException>(() => FailingAutograd.apply(x, "forward", "forward broke"));
        Assert.AreEqual("forward broke", thrown.Message);
        var (dx, _) = RmsNormGradients(x.detach(), randn(16));
        TensorAssert.AssertFinite(dx, "RMSNorm dx after the failed forward", "");
    }

    [TestMethod]
    public void TheCallersExceptionCanCarryTheCause()
    {
        // Reflection on System.Exception's fields; if a runtime renames them, the cause is only in Exception.Data.
        Assert.IsTrue(AutogradFailures.Supported);
    }

    private static (Tensor Dx, Tensor Dw) RmsNormGradients(Tensor x, Tensor weight)
    {
        var leaf = x.clone().requires_grad_(true);
        var w = weight.clone().requires_grad_(true);
        LigerRMSNormFunction.Apply(leaf, w).sum().backward();
        return (leaf.grad!, w.grad!);
    }

    /// <summary>Identity in the forward; its backward fails as the second argument says.</summary>
    private sealed class FailingAutograd : autograd.MultiTensorFunction<FailingAutograd>
    {
        internal const string OpName = "LigerTestFailingBackward";

        public override string Name => OpName;

        public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
        {
            AutogradOutputCache.Track(ctx, Name, vars);
            if ((string)vars[1] == "forward")
                throw new FormatException((string)vars[2]);
            ctx.save_data("failure", vars[1]);
            ctx.save_data("message", vars[2]);
            return [((Tensor)vars[0]).clone()];
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grads) =>
            BackwardLifetime.Run(ctx, grads, incoming => (string)ctx.get_data("failure") switch
            {
                "throws" => throw new FormatException((string)ctx.get_data("message")),
                "wrong-count" => [incoming[0].clone()],                          // three arguments, one gradient
                _ => [incoming[0].clone(), incoming[0].clone(), null!],          // a gradient for the string argument
            });
    }
}
