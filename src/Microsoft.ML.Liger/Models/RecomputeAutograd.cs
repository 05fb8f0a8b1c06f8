using Liger.Kernels.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models;

/// <summary>
/// The autograd node of <see cref="Recompute"/>. Its inputs are the block's tensor inputs and its
/// trainable parameters, so the parameters' gradients leave through the node like any input's, and libtorch
/// accumulates them (with whatever else reaches those parameters) as in a run without recomputation.
/// </summary>
/// <remarks>
/// The backward runs the block again with grad enabled and differentiates it with a nested
/// <c>torch.autograd.backward</c> on libtorch's autograd thread, which libtorch runs reentrantly on that
/// thread. Unlike PyTorch's reentrant checkpoint, the parameters' gradients are not accumulated by that
/// nested call but returned by this node, so that libtorch's own accumulation (and <c>autograd.grad</c> on
/// a parameter) sees them as in a plain run. The nested call is <c>backward</c> and not <c>grad</c>:
/// TorchSharp 0.107 catches libtorch errors in the former only, and an error escaping the latter aborts
/// the process. <c>backward</c> accumulates into <c>.grad</c>, so: the gradient of each input is taken where
/// it enters the block by an identity node (<see cref="GradientCaptureAutograd"/>), as libtorch summed it
/// over the block's uses, before any accumulation; each parameter's <c>.grad</c> is set aside during the
/// nested call, read, and put back, and the value read is returned. The node's inputs include every
/// trainable parameter, so the outer graph accumulates into none of them before this node has returned;
/// other work the nested call runs on the same thread meanwhile (libtorch shares the thread's ready queue,
/// so another recompute node may run inside this one) nests, and every set-aside is undone in reverse order.
/// </remarks>
internal sealed class RecomputeAutograd : autograd.MultiTensorFunction<RecomputeAutograd>
{
    private const string CallKey = "call";

    public override string Name => "RecomputeBackward";

    /// <summary>Runs the block through the node; returns its outputs, connected to the graph.</summary>
    internal static List<Tensor> Run(RecomputeCall call, IReadOnlyList<Tensor> inputs)
    {
        object[] vars = [call, .. inputs, .. call.Parameters];
        return AutogradOutputCache.Release(apply(vars));
    }

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var call = (RecomputeCall)vars[0];
        var inputs = vars.Skip(1).Take(call.InputCount).Cast<Tensor>().ToArray();
        // apply runs this under no_grad: the block builds no graph and keeps no activations.
        var outputs = RecomputeCall.Validated(call.Block(inputs), "the block");
        call.RecordOutputs(outputs);
        ctx.save_for_backward([.. inputs, .. call.Parameters]); // libtorch's version checks guard them until the backward
        ctx.save_data(CallKey, call);
        // Last, after the block's own Liger ops have tracked and released their contexts.
        AutogradOutputCache.Track(ctx, Name, vars);
        return [.. outputs];
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grads) =>
        // An exception must not leave a TorchSharp backward (the process would end): the shared guard records it
        // and refuses the gradients, so the caller's backward() throws; it is also kept for ThrowIfBackwardFailed.
        BackwardLifetime.Run(ctx, grads, incoming =>
        {
            try
            {
                return RecomputeAndBackward(ctx, (RecomputeCall)ctx.get_data(CallKey), incoming);
            }
            catch (Exception exception)
            {
                Recompute.RecordFailure(exception);
                throw;
            }
        });

    private static List<Tensor> RecomputeAndBackward(autograd.AutogradContext ctx, RecomputeCall call, List<Tensor> grads)
    {
        if (is_grad_enabled())
            throw new NotSupportedException(
                "A recomputed block cannot be differentiated twice (backward with create_graph: true); run it without recomputation.");
        var saved = ctx.get_saved_variables(); // throws if an input or parameter was modified in place since the forward
        int n = call.InputCount;
        var sink = new GradientSink(n);
        var blockInputs = new Tensor[n];
        var leaves = new List<Tensor>();
        Tensor[] outputs;
        using (enable_grad()) // libtorch runs a backward with grad mode off
        {
            for (int i = 0; i < n; i++)
            {
                if (!call.InputRequiresGrad[i])
                {
                    blockInputs[i] = saved[i];
                    continue;
                }
                var leaf = saved[i].detach().requires_grad_(true);
                leaves.Add(leaf);
                blockInputs[i] = GradientCaptureAutograd.Attach(leaf, sink, i);
            }
            using (call.Rng?.Replay())
                outputs = RecomputeCall.Validated(call.Block(blockInputs), "the block, run again in the backward,");
        }
        call.CheckSameOutputs(outputs);

        var roots = new List<Tensor>();
        var rootGrads = new List<Tensor>();
        for (int i = 0; i < outputs.Length; i++)
        {
            // An output with no gradient took no part in the loss; one that does not require grad in the
            // recompute depends on nothing differentiable (the forward, under no_grad, could not tell).
            if (i < grads.Count && grads[i] is { IsInvalid: false } grad && outputs[i].requires_grad)
            {
                roots.Add(outputs[i]);
                rootGrads.Add(grad);
            }
        }

        var parameterGrads = new Tensor?[call.Parameters.Length];
        if (roots.Count > 0)
            parameterGrads = Differentiate(roots, rootGrads, leaves, call.Parameters);

        var result = new List<Tensor>(1 + n + parameterGrads.Length) { null! };
        for (int i = 0; i < n; i++)
            result.Add(sink[i]!);
        result.AddRange(parameterGrads!);
        return result;
    }

    /// <summary>Runs the nested backward; returns each parameter's gradient from the block alone (null where unused).</summary>
    private static Tensor?[] Differentiate(List<Tensor> roots, List<Tensor> rootGrads, List<Tensor> leaves, Parameter[] parameters)
    {
        var setAside = new Tensor?[parameters.Length];
        var fromBlock = new Tensor?[parameters.Length];
        for (int j = 0; j < parameters.Length; j++)
        {
            setAside[j] = parameters[j].grad;
            parameters[j].grad = null;
        }
        try
        {
            autograd.backward(roots, rootGrads, retain_graph: false, inputs: [.. leaves, .. parameters]);
            for (int j = 0; j < parameters.Length; j++)
                fromBlock[j] = parameters[j].grad;
        }
        finally
        {
            for (int j = 0; j < parameters.Length; j++)
                parameters[j].grad = setAside[j];
        }
        return fromBlock;
    }
}

/// <summary>
/// Identity on a recomputed block's input whose backward keeps the gradient that reaches it and passes
/// none on: the gradient as libtorch summed it over the block's uses, with its own strides, as the plain
/// graph would hand it on (an accumulation into <c>.grad</c> could copy it to the input's strides).
/// </summary>
internal sealed class GradientCaptureAutograd : autograd.MultiTensorFunction<GradientCaptureAutograd>
{
    public override string Name => "RecomputeInput";

    internal static Tensor Attach(Tensor leaf, GradientSink sink, int index) =>
        AutogradOutputCache.Release(apply(leaf, sink, index))[0];

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        ctx.save_data("sink", vars[1]);
        ctx.save_data("index", vars[2]);
        AutogradOutputCache.Track(ctx, Name, vars); // undefined gradients arrive as such; the output-sized cache is freed
        return [(Tensor)vars[0]]; // libtorch returns a view of the input, with this node as its history
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grads) =>
        // The handle is not parked for release: the recompute node returns it (and parks it) after this.
        AutogradFailures.Guard(ctx, () =>
        {
            if (grads.Count > 0 && grads[0] is { IsInvalid: false } grad)
                ((GradientSink)ctx.get_data("sink")).Store((int)ctx.get_data("index"), grad);
            return [null!, null!, null!];
        });
}

/// <summary>The gradients the capture nodes of one recompute keep, by input index.</summary>
internal sealed class GradientSink(int count)
{
    private readonly Tensor?[] gradients = new Tensor?[count];

    internal Tensor? this[int index] => gradients[index];

    // A capture node runs once per backward (libtorch sums the gradients of all uses before calling it).
    internal void Store(int index, Tensor gradient) => gradients[index] = gradient;
}
