using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// The handles a custom backward leaves behind are freed at the next Liger backward on the same thread,
/// not left to the garbage collector (on the GPU they pin gradient-sized memory).
/// </summary>
[TestClass]
public sealed class BackwardLifetimeTests
{
    [TestMethod]
    public void ReturnedGradientHandles_AreFreedByTheNextBackward_AndGradientsStayCorrect()
    {
        using var scope = NewDisposeScope();
        var hidden = randn(6, 8);
        var weight = randn(20, 8);
        var target = randint(0, 20, [6]);
        Tensor? firstGrad = null;
        int parkedAfterFirst = 0;
        for (int step = 0; step < 3; step++)
        {
            var x = hidden.clone().requires_grad_(true);
            var w = weight.clone().requires_grad_(true);
            var loss = LigerFusedLinearCrossEntropyFunction.Apply(x, w, target);
            loss.backward();   // CPU: the backward runs on this thread
            if (step == 0)
            {
                parkedAfterFirst = BackwardLifetime.ParkedCount;
                firstGrad = x.grad!.clone();
            }
            else
            {
                Assert.AreEqual(parkedAfterFirst, BackwardLifetime.ParkedCount, $"step {step}: the previous backward's handles were released, not accumulated");
                TensorAssert.BitwiseEqual(firstGrad!, x.grad!, $"hidden grad at step {step}", "the same inputs give the same gradient");
            }
        }
        Assert.IsGreaterThan(0, parkedAfterFirst, "the returned gradients' handles are parked until libtorch has read them");
    }
}
