using Liger.Kernels.Runtime;
using System.Runtime.InteropServices;
using Liger.Kernels.Modules;
using Microsoft.ML.Liger.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests;

/// <summary>
/// Checkpointed blocks against the same blocks run plainly: gradients bitwise equal on the CPU in float32,
/// the forward keeping no activations, and failures in the recompute surfacing on the caller's thread.
/// </summary>
[TestClass]
public sealed class RecomputeTests
{
    [TestMethod]
    public void EagerBlock_GradientsEqualPlainRun_Bitwise_AndOnlyTheRecomputeBuildsAGraph()
    {
        using var scope = NewDisposeScope();
        long seed = Gradients.FreshSeed();
        var block = new EagerBlock(37, 83);
        var x0 = randn(3, 11, 37, requires_grad: true);
        var weights = randn(3, 11, 37);

        (Tensor? XGrad, Dictionary<string, Tensor?> Params) Run(bool checkpoint)
        {
            Gradients.Clear(block);
            x0.grad = null;
            var x = x0.Times(1.25); // an input with a history, as a layer's input has
            var y = checkpoint ? Recompute.Apply(block, block.forward, x) : block.forward(x);
            (y * weights).sum().backward();
            return (x0.grad?.clone(), Gradients.Of(("block", block)));
        }

        var plain = Run(checkpoint: false);
        block.InnerRequiresGrad.Clear();
        var checkpointed = Run(checkpoint: true);
        string context = $"seed {seed}";
        CollectionAssert.AreEqual(new[] { false, true }, block.InnerRequiresGrad,
            $"the checkpointed forward must run the block without a graph, and the backward run it again with one. {context}");
        Gradients.AssertBitwise(plain.XGrad, checkpointed.XGrad, "x0.grad", context);
        Gradients.AssertBitwise(plain.Params, checkpointed.Params, context);
    }

    [TestMethod]
    public void Apply_WithGradDisabled_RunsTheBlockOnce_AndReturnsItsOutputs()
    {
        using var scope = NewDisposeScope();
        long seed = Gradients.FreshSeed();
        var block = new EagerBlock(19, 23);
        var x = randn(5, 19, requires_grad: true);
        var expected = block.forward(x).detach();
        block.InnerRequiresGrad.Clear();
        Tensor y;
        using (no_grad())
            y = Recompute.Apply(block, block.forward, x);
        Assert.HasCount(1, block.InnerRequiresGrad, $"one call, no recompute to prepare. seed {seed}");
        Assert.IsFalse(y.requires_grad, $"no graph under no_grad. seed {seed}");
        Gradients.AssertBitwise(expected, y, "output", $"seed {seed}");
    }

    [TestMethod]
    public void LigerOpsBlock_GradientsEqualPlainRun_Bitwise()
    {
        using var scope = NewDisposeScope();
        long seed = Gradients.FreshSeed();
        var layer = new LigerBlock(hidden: 45, heads: 3, headDim: 10, inner: 71);
        var rotary = new LigerRotaryEmbedding(headDim: 10, theta: 10000.0);
        var x0 = randn(2, 13, 45, requires_grad: true);
        var positions = (Ranges.Int64(0, 13).Plus(randint(0, 50, [2, 1]))).contiguous();
        var (cos, sin) = rotary.forward(x0, positions);
        var weights = randn(2, 13, 45);

        (Tensor? XGrad, Dictionary<string, Tensor?> Params, Tensor Output) Run(bool checkpoint)
        {
            Gradients.Clear(layer);
            x0.grad = null;
            var x = x0.Times(0.75);
            var y = checkpoint
                ? Recompute.Apply(layer, xs => [layer.forward(xs[0], xs[1], xs[2])], x, cos, sin)[0]
                : layer.forward(x, cos, sin);
            (y * weights).sum().backward();
            return (x0.grad?.clone(), Gradients.Of(("layer", layer)), y.detach());
        }

        var plain = Run(checkpoint: false);
        var checkpointed = Run(checkpoint: true);
        string context = $"seed {seed}";
        Gradients.AssertBitwise(plain.Output, checkpointed.Output, "output", context);
        Gradients.AssertBitwise(plain.XGrad, checkpointed.XGrad, "x0.grad", context);
        Gradients.AssertBitwise(plain.Params, checkpointed.Params, context);
        Assert.IsFalse(cos.requires_grad || sin.requires_grad, "cos and sin stay constants");
    }

    [TestMethod]
    public void SeveralInputsAndOutputs_WithUnusedAndIntegerAndPassedThroughOutputs_AndAConstantInput_EqualPlainRun()
    {
        using var scope = NewDisposeScope();
        long seed = Gradients.FreshSeed();
        var proj = nn.Linear(29, 29);
        var router = nn.Linear(29, 5);
        var unusedHead = nn.Linear(29, 7);
        Parameter[] parameters = [.. proj.parameters(), .. router.parameters(), .. unusedHead.parameters()];
        var x = randn(3, 17, 29, requires_grad: true);   // a leaf
        var y0 = randn(3, 17, 29, requires_grad: true);
        var mask = randn(3, 17, 29).GreaterThan(0).to(ScalarType.Float32); // needs no gradient
        var (w1, w2, w3) = (randn(3, 17, 29), randn(3, 17, 5), randn(3, 17, 29));
        int calls = 0;

        Tensor[] Block(Tensor[] xs)
        {
            calls++;
            var mixed = (proj.forward(xs[0]) * xs[1].tanh()).Plus(xs[2]);
            var routerLogits = router.forward(xs[0]);        // depends on x and the router only
            var unused = unusedHead.forward(xs[1]);           // takes no part in the loss
            var choice = routerLogits.argmax(-1);             // int64: no gradient
            return [mixed, routerLogits, unused, choice, xs[1]]; // the last one an input, passed through
        }

        (Dictionary<string, Tensor?> Grads, Tensor[] Outputs) Run(bool checkpoint)
        {
            Gradients.Clear(proj, router, unusedHead);
            x.grad = y0.grad = null;
            var y = y0.exp();
            var outputs = checkpoint ? Recompute.Apply(Block, [x, y, mask], parameters) : Block([x, y, mask]);
            var picked = outputs[1].gather(-1, outputs[3].unsqueeze(-1));
            (outputs[0] * w1).sum().Plus((outputs[1] * w2).sum()).Plus(picked.sum()).Plus((outputs[4] * w3).sum()).backward();
            var grads = Gradients.Of(("proj", proj), ("router", router), ("unusedHead", unusedHead));
            grads["x"] = x.grad?.clone();
            grads["y0"] = y0.grad?.clone();
            return (grads, outputs.Select(o => o.detach()).ToArray());
        }

        var plain = Run(checkpoint: false);
        calls = 0;
        var checkpointed = Run(checkpoint: true);
        string context = $"seed {seed}";
        Assert.AreEqual(2, calls, $"the forward and one recompute. {context}");
        for (int i = 0; i < plain.Outputs.Length; i++)
            Gradients.AssertBitwise(plain.Outputs[i], checkpointed.Outputs[i], $"output {i}", context);
        Assert.AreEqual(ScalarType.Int64, checkpointed.Outputs[3].dtype);
        Assert.IsNull(checkpointed.Grads["unusedHead.weight"], $"an output outside the loss gives no gradient. {context}");
        Gradients.AssertBitwise(plain.Grads, checkpointed.Grads, context);
        Assert.IsNull(mask.grad);
    }

    [TestMethod]
    public void ParameterSharedInsideAndOutside_SecondBackward_AndAccumulation_EqualPlainRun()
    {
        using var scope = NewDisposeScope();
        long seed = Gradients.FreshSeed();
        var embed = nn.Embedding(41, 23);
        var block = new EagerBlock(23, 57);
        Parameter[] parameters = [.. block.parameters(), embed.weight!];
        var batches = Enumerable.Range(0, 2).Select(_ => randint(0, 41, [2, 9])).ToArray();
        var (w1, w2) = (randn(2, 9, 41), randn(2, 9, 23));

        // The head is tied to the embedding: its weight is used outside the block (lookup) and inside (logits).
        Tensor[] Block(Tensor[] xs)
        {
            var h = block.forward(xs[0]);
            return [h, nn.functional.linear(h, embed.weight!)];
        }

        List<Dictionary<string, Tensor?>> Run(bool checkpoint)
        {
            Gradients.Clear(block, embed);
            var snapshots = new List<Dictionary<string, Tensor?>>();
            foreach (var ids in batches) // two micro-batches: .grad accumulates across them
            {
                var hidden = embed.forward(ids);
                var outputs = checkpoint ? Recompute.Apply(Block, [hidden], parameters) : Block([hidden]);
                (outputs[1] * w1).sum().backward(retain_graph: true);
                snapshots.Add(Gradients.Of(("block", block), ("embed", embed)));
                (outputs[0] * w2).sum().backward(); // a second backward, through the other output
                snapshots.Add(Gradients.Of(("block", block), ("embed", embed)));
            }
            // autograd.grad on a parameter: its gradient leaves the checkpoint node like any input's.
            var again = Block([embed.forward(batches[0])]);
            if (checkpoint)
                again = Recompute.Apply(Block, [embed.forward(batches[0])], parameters);
            var direct = autograd.grad([(again[1] * w1).sum()], [embed.weight!])[0];
            snapshots.Add(new() { ["grad(embed.weight)"] = direct });
            return snapshots;
        }

        var plain = Run(checkpoint: false);
        var checkpointed = Run(checkpoint: true);
        for (int i = 0; i < plain.Count; i++)
            Gradients.AssertBitwise(plain[i], checkpointed[i], $"snapshot {i}, seed {seed}");
    }

    [TestMethod]
    public void StackOfCheckpointedBlocks_GradientsEqualPlainRun_Bitwise()
    {
        using var scope = NewDisposeScope();
        long seed = Gradients.FreshSeed();
        const long hidden = 27;
        var eager = Enumerable.Range(0, 3).Select(_ => new EagerBlock(hidden, 53)).ToArray();
        var liger = Enumerable.Range(0, 2).Select(_ => new LigerBlock(hidden, heads: 2, headDim: 6, inner: 41)).ToArray();
        var norm = new LigerRMSNorm(hidden);
        var rotary = new LigerRotaryEmbedding(headDim: 6);
        var x0 = randn(3, 7, hidden, requires_grad: true);
        var (cos, sin) = rotary.forward(x0, Ranges.Int64(0, 7).unsqueeze(0).expand(3, -1).contiguous());
        var weights = randn(3, 7, hidden);
        nn.Module[] modules = [.. eager, .. liger, norm];

        (Tensor? XGrad, Dictionary<string, Tensor?> Params) Run(bool checkpoint)
        {
            Gradients.Clear(modules);
            x0.grad = null;
            var h = x0.Times(1.0);
            for (int i = 0; i < eager.Length; i++)
            {
                var e = eager[i];
                h = checkpoint ? Recompute.Apply(e, e.forward, h) : e.forward(h);
                if (i < liger.Length)
                {
                    var l = liger[i];
                    h = checkpoint ? Recompute.Apply(l, xs => [l.forward(xs[0], xs[1], xs[2])], h, cos, sin)[0] : l.forward(h, cos, sin);
                }
            }
            (norm.forward(h) * weights).sum().backward();
            return (x0.grad?.clone(), Gradients.Of(modules.Select((m, i) => ($"m{i}", m)).ToArray()));
        }

        var plain = Run(checkpoint: false);
        var checkpointed = Run(checkpoint: true);
        Gradients.AssertBitwise(plain.XGrad, checkpointed.XGrad, "x0.grad", $"seed {seed}");
        Gradients.AssertBitwise(plain.Params, checkpointed.Params, $"seed {seed}");
    }

    [TestMethod]
    public void CheckpointInsideACheckpointedBlock_GradientsEqualPlainRun_Bitwise()
    {
        using var scope = NewDisposeScope();
        long seed = Gradients.FreshSeed();
        var (inner1, inner2) = (new EagerBlock(21, 33), new EagerBlock(21, 35));
        var x0 = randn(4, 21, requires_grad: true);
        var weights = randn(4, 21);
        Parameter[] parameters = [.. inner1.parameters(), .. inner2.parameters()];

        (Tensor? XGrad, Dictionary<string, Tensor?> Params) Run(bool checkpoint)
        {
            Gradients.Clear(inner1, inner2);
            x0.grad = null;
            Tensor[] Outer(Tensor[] xs) => checkpoint
                ? [Recompute.Apply(inner2, inner2.forward, Recompute.Apply(inner1, inner1.forward, xs[0]))]
                : [inner2.forward(inner1.forward(xs[0]))];
            var x = x0.Times(2.0);
            var y = checkpoint ? Recompute.Apply(Outer, [x], parameters)[0] : Outer([x])[0];
            (y * weights).sum().backward();
            return (x0.grad?.clone(), Gradients.Of(("inner1", inner1), ("inner2", inner2)));
        }

        var plain = Run(checkpoint: false);
        var checkpointed = Run(checkpoint: true);
        Gradients.AssertBitwise(plain.XGrad, checkpointed.XGrad, "x0.grad", $"seed {seed}");
        Gradients.AssertBitwise(plain.Params, checkpointed.Params, $"seed {seed}");
    }

    [TestMethod]
    public void DropoutOnTheCpu_ReplaysTheGeneratorForTheRecompute_OnlyWhenAskedTo()
    {
        using var scope = NewDisposeScope();
        long seed = Gradients.FreshSeed();
        var (fc1, fc2) = (nn.Linear(31, 47), nn.Linear(47, 31));
        Parameter[] parameters = [.. fc1.parameters(), .. fc2.parameters()];
        var x = randn(6, 31); // only the parameters need gradients
        var weights = randn(6, 31);
        Tensor[] Block(Tensor[] xs) => [fc2.forward(nn.functional.dropout(fc1.forward(xs[0]), 0.4, training: true))];

        Dictionary<string, Tensor?> Run(bool checkpoint, bool preserveRngState)
        {
            Gradients.Clear(fc1, fc2);
            manual_seed(seed + 1); // the same dropout mask in every forward
            var y = checkpoint ? Recompute.Apply(Block, [x], parameters, preserveRngState)[0] : Block([x])[0];
            randn(3); // the generator moves on between the forward and the backward
            (y * weights).sum().backward();
            return Gradients.Of(("fc1", fc1), ("fc2", fc2));
        }

        var plain = Run(checkpoint: false, preserveRngState: true);
        Gradients.AssertBitwise(plain, Run(checkpoint: true, preserveRngState: true), $"seed {seed}");
        var notReplayed = Run(checkpoint: true, preserveRngState: false);
        Assert.IsFalse(plain["fc1.weight"]!.eq(notReplayed["fc1.weight"]!).all().item<bool>(),
            $"without the replay the recompute draws another mask, so the gradient must differ (the comparison above can fail). seed {seed}");
    }

    [TestMethod]
    [OSCondition(OperatingSystems.Linux)]
    public void CheckpointedForward_KeepsNoActivations_AndBackwardFreesTheRecompute()
    {
        using var scope = NewDisposeScope();
        long seed = Gradients.FreshSeed();
        const long batch = 5, time = 417, hidden = 47, inner = 1543;
        var blocks = Enumerable.Range(0, 4).Select(_ => new EagerBlock(hidden, inner)).ToArray();
        var x0 = randn(batch, time, hidden, requires_grad: true);
        var weights = randn(batch, time, hidden);
        long activation = batch * time * inner * sizeof(float); // one fc1 output (or gelu output)
        long stream = batch * time * hidden * sizeof(float);    // one block input or output

        // No dispose scope of its own, as a model's layer may have none: what it allocates lives until the step's scope ends.
        static Tensor Layer(EagerBlock b, Tensor x) => x.Plus(b.fc2.forward(nn.functional.gelu(b.fc1.forward(x))));

        (long AfterForward, long AfterBackward) Measure(bool checkpoint)
        {
            Gradients.Clear(blocks);
            x0.grad = null;
            NativeHeap.Settle();
            long before = NativeHeap.LiveBytes(), afterForward;
            using (var step = NewDisposeScope())
            {
                var h = x0.Times(1.0);
                foreach (var b in blocks)
                    h = checkpoint ? Recompute.Apply(b, x => Layer(b, x), h) : Layer(b, h);
                afterForward = NativeHeap.LiveBytes() - before; // the peak of a training step, where the loss is taken
                (h * weights).sum().backward();
                // Still inside the step's scope, which would hold the recompute's handles if the backward left them.
                return (afterForward, NativeHeap.LiveBytes() - before);
            }
        }

        Measure(checkpoint: false); // warm-up: libtorch's first-use allocations
        Measure(checkpoint: true);
        var plain = Measure(checkpoint: false);
        var checkpointed = Measure(checkpoint: true);
        string context = $"live native bytes after the forward: plain {plain.AfterForward:N0}, checkpointed {checkpointed.AfterForward:N0}; " +
            $"one activation {activation:N0}, one block output {stream:N0}. seed {seed}";
        // Plain: each block keeps fc1's output (for gelu) and gelu's output (for fc2), which the measure must see.
        Assert.IsGreaterThanOrEqualTo(blocks.Length * 2 * activation, plain.AfterForward, $"the measure misses the plain run's activations. {context}");
        // Checkpointed: the input copy and the block outputs (each the next block's saved input) only, with an
        // eighth of one activation for allocator noise.
        Assert.IsLessThanOrEqualTo((blocks.Length + 1) * stream + activation / 8, checkpointed.AfterForward,
            $"the checkpointed forward kept more than the blocks' inputs and outputs. {context}");
        // After the backward: parameter and input gradients (and the last backward's parked handles), no recomputed activation.
        Assert.IsLessThan(activation, checkpointed.AfterBackward,
            $"the recompute's activations outlived the backward: {checkpointed.AfterBackward:N0} bytes still live. {context}");
    }

    public enum Failure { Throws, OtherShape, InputModifiedInPlace, CapturedTensorDisposed, DoubleBackward }

    [TestMethod]
    [DataRow(Failure.Throws, typeof(InvalidDataException), "recompute broke")]
    [DataRow(Failure.OtherShape, typeof(InvalidOperationException), "deterministic")]
    [DataRow(Failure.InputModifiedInPlace, typeof(ExternalException), "modified by an inplace operation")]
    [DataRow(Failure.CapturedTensorDisposed, typeof(InvalidOperationException), "empty handle")]
    [DataRow(Failure.DoubleBackward, typeof(NotSupportedException), "create_graph")]
    public void FailureInTheRecompute_FailsTheBackward_AndIsRethrownOnTheCallersThread(Failure failure, Type expectedInner, string messagePart)
    {
        DrainFailures();
        using var scope = NewDisposeScope();
        long seed = Gradients.FreshSeed();
        var fc = nn.Linear(13, 13);
        Parameter[] parameters = [.. fc.parameters()];
        // Only the parameters require grad in the Throws case: the refused gradient then goes to a parameter.
        var x = failure == Failure.Throws ? randn(9, 13) : randn(9, 13, requires_grad: true);
        var captured = randn(9, 13);
        int calls = 0;
        Tensor[] Block(Tensor[] xs)
        {
            calls++;
            var y = fc.forward(xs[0]) * captured;
            return (failure, calls) switch
            {
                (Failure.Throws, 2) => throw new InvalidDataException($"recompute broke (seed {seed})"),
                (Failure.OtherShape, 2) => [y[..^1]],
                _ => [y],
            };
        }

        var input = x.Times(1.0);
        var output = Recompute.Apply(Block, [input], parameters)[0];
        if (failure == Failure.InputModifiedInPlace)
            input.PlusInPlace(1.0);
        if (failure == Failure.CapturedTensorDisposed)
            captured.Dispose();
        var loss = output.Squared().sum();

        var raised = Assert.ThrowsExactly<ExternalException>(() => loss.backward(create_graph: failure == Failure.DoubleBackward),
            $"the caller's backward must fail. seed {seed}");
        // The caller's own exception names the node and carries the cause (the shared guard of Liger backwards).
        StringAssert.Contains(raised.Message, "RecomputeBackward", $"seed {seed}");
        StringAssert.Contains(raised.Message, messagePart, $"seed {seed}");
        Assert.IsInstanceOfType(raised.InnerException, expectedInner, $"{raised}. seed {seed}");
        var surfaced = Assert.ThrowsExactly<InvalidOperationException>(Recompute.ThrowIfBackwardFailed,
            $"the recorded failure must be rethrown here (libtorch said: {raised.Message}). seed {seed}");
        Assert.IsInstanceOfType(surfaced.InnerException, expectedInner, $"{surfaced.InnerException}. seed {seed}");
        StringAssert.Contains(surfaced.InnerException!.Message, messagePart, $"seed {seed}");
        StringAssert.Contains(surfaced.Message, "zero them", $"seed {seed}");
        Recompute.ThrowIfBackwardFailed(); // taken: a second call finds nothing

        // The process and libtorch's engine carry on: a checkpointed backward still matches the plain one.
        Gradients.Clear(fc);
        var again = randn(9, 13, requires_grad: true);
        Tensor[] Plain(Tensor[] xs) => [fc.forward(xs[0]).tanh()];
        Plain([again])[0].sum().backward();
        var expected = Gradients.Of(("fc", fc));
        Gradients.Clear(fc);
        Recompute.Apply(Plain, [again], parameters)[0].sum().backward();
        Gradients.AssertBitwise(expected, Gradients.Of(("fc", fc)), $"after the failure, seed {seed}");
    }

    [TestMethod]
    public void FailureInANestedCheckpoint_FailsTheOuterBackward_AndTheFirstCauseIsRethrown_WithGradientsPutBack()
    {
        DrainFailures();
        using var scope = NewDisposeScope();
        long seed = Gradients.FreshSeed();
        var (outerFc, innerFc) = (nn.Linear(11, 11), nn.Linear(11, 11));
        var x = randn(7, 11, requires_grad: true);
        int innerCalls = 0;
        // Calls: the outer forward (under no_grad, a plain call), the outer recompute (the inner block's
        // checkpointed forward), then the inner recompute, inside the outer's nested backward: that one throws.
        Tensor[] Inner(Tensor[] xs) => ++innerCalls == 3 ? throw new ArithmeticException($"inner broke (seed {seed})") : [innerFc.forward(xs[0]).relu()];
        Tensor[] Outer(Tensor[] xs) => [outerFc.forward(Recompute.Apply(Inner, [xs[0]], [.. innerFc.parameters()])[0])];

        // Gradients from an earlier micro-batch, which the failed backward must leave as they were.
        (outerFc.forward(innerFc.forward(x)).sum().Times(3.0)).backward();
        var earlier = Gradients.Of(("outer", outerFc), ("inner", innerFc));
        var output = Recompute.Apply(Outer, [x], [.. outerFc.parameters(), .. innerFc.parameters()])[0];

        Assert.ThrowsExactly<ExternalException>(() => output.sum().backward(), $"seed {seed}");
        Assert.AreEqual(3, innerCalls, $"seed {seed}");
        var surfaced = Assert.ThrowsExactly<InvalidOperationException>(Recompute.ThrowIfBackwardFailed, $"seed {seed}");
        Assert.IsInstanceOfType<ArithmeticException>(surfaced.InnerException, $"the innermost cause comes first. seed {seed}");
        StringAssert.Contains(surfaced.Message, "1 more failure", $"the outer block's failure follows it. seed {seed}");
        // The set-aside .grad of every parameter the nested backwards touched is back in place.
        foreach (var (name, grad) in earlier)
            Gradients.AssertBitwise(grad, Gradients.Of(("outer", outerFc), ("inner", innerFc))[name], $"{name}.grad after the failed backward", $"seed {seed}");
    }

    [TestMethod]
    public void BadArguments_AreRefused_NamingWhatIsWrong()
    {
        using var scope = NewDisposeScope();
        var fc = nn.Linear(3, 3);
        Parameter[] parameters = [.. fc.parameters()];
        var x = randn(2, 3, requires_grad: true);

        var nullInput = Assert.ThrowsExactly<ArgumentException>(() => Recompute.Apply(xs => xs, [x, null!], parameters));
        Assert.AreEqual("inputs", nullInput.ParamName);
        StringAssert.Contains(nullInput.Message, "inputs[1]");

        var nullBlock = Assert.ThrowsExactly<ArgumentNullException>(() => Recompute.Apply(null!, [x], parameters));
        Assert.AreEqual("block", nullBlock.ParamName);

        var noOutputs = Assert.ThrowsExactly<InvalidOperationException>(() => Recompute.Apply(_ => [], [x], parameters));
        StringAssert.Contains(noOutputs.Message, "at least one tensor");

        var nullOutput = Assert.ThrowsExactly<InvalidOperationException>(() => Recompute.Apply(xs => [fc.forward(xs[0]), null!], [x], parameters));
        StringAssert.Contains(nullOutput.Message, "output 1");
    }

    private static void DrainFailures()
    {
        try
        {
            Recompute.ThrowIfBackwardFailed();
        }
        catch (InvalidOperationException)
        {
            // left by an earlier test; this test counts only its own
        }
    }
}
