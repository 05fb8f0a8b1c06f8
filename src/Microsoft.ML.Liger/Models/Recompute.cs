using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models;

/// <summary>
/// Activation recomputation (transformers' gradient checkpointing) for TorchSharp, which has none: a block (a decoder layer) runs in the
/// forward without keeping its activations, and the backward runs it again, with grad enabled, to get them.
/// Memory for activations drops from every layer's to one layer's plus each layer's inputs, for one more
/// forward of the block in the backward.
/// </summary>
/// <remarks>
/// <para>The outputs are the outputs of one autograd node whose inputs are the block's tensor inputs and
/// its trainable parameters, so libtorch routes and accumulates their gradients as for any other op: a
/// parameter shared with the rest of the graph (tied embeddings), a second backward through another
/// branch, <c>.grad</c> accumulation across micro-batches and <c>torch.autograd.grad</c> on a parameter all
/// behave as without recomputation. On the CPU in float32 the gradients equal the plain run's bit for bit
/// (the recompute runs the same ops in the same order); where a tensor receives three or more gradient
/// contributions from inside and outside the block, their sum may be added in another order, as libtorch
/// itself does not fix that order.</para>
/// <para>What the block must respect:</para>
/// <list type="bullet">
/// <item>Pass every tensor it reads as an input, including those that need no gradient (cos and sin, masks,
/// position ids): inputs are saved with libtorch's version checks and handed back to the recompute. A
/// tensor the block captures instead is read again in the backward, so it must still be alive then (a
/// dispose scope that ends before the backward breaks the recompute) and must not require grad (it is
/// treated as a constant: no gradient flows to it).</item>
/// <item>List every trainable parameter it uses (or pass its module): a parameter missing from the list
/// gets no gradient from the block.</item>
/// <item>Be deterministic: the recompute must produce what the forward produced. The CPU generator's state
/// is replayed for the recompute (<c>preserveRngState</c>); TorchSharp 0.107 does not expose the CUDA
/// generator's state, so random ops on a GPU would not replay. The Liger models use no dropout.</item>
/// <item>Not modify its inputs in place, nor have them modified before the backward (libtorch's version
/// check then fails the backward).</item>
/// <item>Double backward (<c>create_graph: true</c>) through a recomputed block is not supported.</item>
/// </list>
/// <para>An exception in the recompute (the block throws, or produces outputs of other shapes) cannot leave a
/// TorchSharp backward: it would end the process. It is recorded, and the backward is made to fail inside
/// libtorch, so the caller's <c>backward()</c> throws an <c>ExternalException</c> that names the node
/// (RecomputeBackward) and carries the cause as its inner exception, as for every Liger op; the
/// failures are also kept for <see cref="ThrowIfBackwardFailed"/>, which rethrows the first (innermost).</para>
/// </remarks>
public static class Recompute
{
    private static readonly object FailuresGate = new();
    private static readonly List<Exception> Failures = [];

    /// <summary>
    /// Runs <paramref name="block"/> on <paramref name="inputs"/> without keeping its activations, and returns
    /// its outputs connected to the autograd graph of the inputs and parameters.
    /// </summary>
    /// <param name="block">The computation: receives the inputs (in order, the same tensors in the forward;
    /// in the backward, tensors holding the same values) and returns its outputs (at least one, none null).
    /// Called twice when a backward runs: keep it free of side effects.</param>
    /// <param name="inputs">The tensors the block reads, those that need no gradient included; none null.</param>
    /// <param name="parameters">The parameters the block uses; those that do not require grad are treated as
    /// constants. Duplicates are ignored.</param>
    /// <param name="preserveRngState">Replay the CPU random generator's state for the recompute (a 5 KB copy per
    /// call), so CPU random ops draw the same numbers as in the forward.</param>
    /// <returns>The block's outputs. When grad mode is off, or neither an input nor a parameter requires
    /// grad, the block just runs: there is no graph to keep.</returns>
    public static Tensor[] Apply(Func<Tensor[], Tensor[]> block, IReadOnlyList<Tensor> inputs,
        IReadOnlyList<Parameter> parameters, bool preserveRngState = true)
    {
        ArgumentNullException.ThrowIfNull(block);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(parameters);
        for (int i = 0; i < inputs.Count; i++)
            if (inputs[i] is null || inputs[i].IsInvalid)
                throw new ArgumentException($"'{nameof(inputs)}[{i}]' is null or disposed; pass only live tensors (capture an optional one in the block instead).", nameof(inputs));
        for (int i = 0; i < parameters.Count; i++)
            if (parameters[i] is null || parameters[i].IsInvalid)
                throw new ArgumentException($"'{nameof(parameters)}[{i}]' is null or disposed.", nameof(parameters));

        var trainable = parameters.Where(p => p.requires_grad).Distinct(ReferenceEqualityComparer.Instance).Cast<Parameter>().ToArray();
        if (!is_grad_enabled() || (trainable.Length == 0 && !inputs.Any(t => t.requires_grad)))
            return RecomputeCall.Validated(block([.. inputs]), "the block");

        var call = new RecomputeCall(block, inputs, trainable, preserveRngState ? CpuRngState.Capture() : null);
        // The scope frees what the block allocates beside its outputs (under no_grad nothing else holds it):
        // left to the caller's scope, every layer's activations would live until the step ends.
        using var scope = NewDisposeScope();
        var outputs = RecomputeAutograd.Run(call, inputs);
        scope.MoveToOuter(outputs);
        return [.. outputs];
    }

    /// <summary>
    /// Runs <paramref name="block"/> recomputed, with the parameters of <paramref name="module"/> (all of them,
    /// submodules included) as the block's parameters. See <see cref="Apply(Func{Tensor[], Tensor[]}, IReadOnlyList{Tensor}, IReadOnlyList{Parameter}, bool)"/>.
    /// </summary>
    /// <param name="module">The module the block runs (a decoder layer); its parameters receive gradients.</param>
    /// <param name="block">The computation (usually a call of <paramref name="module"/>'s forward).</param>
    /// <param name="inputs">The tensors the block reads; none null.</param>
    public static Tensor[] Apply(nn.Module module, Func<Tensor[], Tensor[]> block, params Tensor[] inputs)
    {
        ArgumentNullException.ThrowIfNull(module);
        return Apply(block, inputs, module.parameters().ToArray());
    }

    /// <summary>Runs a one-input, one-output <paramref name="block"/> of <paramref name="module"/> recomputed.</summary>
    /// <param name="module">The module the block runs; its parameters receive gradients.</param>
    /// <param name="block">The computation.</param>
    /// <param name="input">The block's input.</param>
    public static Tensor Apply(nn.Module module, Func<Tensor, Tensor> block, Tensor input)
    {
        ArgumentNullException.ThrowIfNull(block);
        return Apply(module, xs => [block(xs[0])], input)[0];
    }

    /// <summary>
    /// Throws if the recompute of a recomputed block failed in a backward since the last call; does nothing
    /// otherwise. Call it where the caller's <c>backward()</c> threw (or after it returned): the backward
    /// runs on libtorch's thread, where the exception could not be thrown.
    /// </summary>
    /// <exception cref="InvalidOperationException">The recompute failed; the first recorded exception is the
    /// inner exception. The gradients of that backward are incomplete: zero them before the next step.</exception>
    public static void ThrowIfBackwardFailed()
    {
        Exception[] failures;
        lock (FailuresGate)
        {
            failures = [.. Failures];
            Failures.Clear();
        }
        if (failures.Length == 0)
            return;
        string more = failures.Length > 1 ? $" ({failures.Length - 1} more failure(s) followed, in enclosing recomputed blocks or later backwards)" : "";
        throw new InvalidOperationException(
            $"The backward of a recomputed block failed while recomputing the block: {failures[0].Message}{more}. " +
            "The gradients of that backward are incomplete; zero them before the next step.", failures[0]);
    }

    internal static void RecordFailure(Exception exception)
    {
        lock (FailuresGate)
            Failures.Add(exception);
    }
}
