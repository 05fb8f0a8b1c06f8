using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models;

/// <summary>
/// What one recomputed call keeps for its backward beside the saved tensors: the block, which inputs
/// require grad, the trainable parameters, the outputs' shapes (to catch a recompute that differs) and the
/// CPU generator's state. It holds no tensor of the block's inputs: libtorch saves those.
/// </summary>
internal sealed class RecomputeCall
{
    private (long[] Shape, ScalarType Dtype, Device Device)[]? outputSignatures;

    internal RecomputeCall(Func<Tensor[], Tensor[]> block, IReadOnlyList<Tensor> inputs, Parameter[] parameters, CpuRngState? rng)
    {
        Block = block;
        InputCount = inputs.Count;
        InputRequiresGrad = inputs.Select(t => t.requires_grad).ToArray();
        Parameters = parameters;
        Rng = rng;
    }

    internal Func<Tensor[], Tensor[]> Block { get; }

    internal int InputCount { get; }

    internal bool[] InputRequiresGrad { get; }

    /// <summary>The trainable parameters, each once; they follow the inputs among the node's inputs.</summary>
    internal Parameter[] Parameters { get; }

    internal CpuRngState? Rng { get; }

    /// <summary>Checks what a block returned: an array of at least one live tensor.</summary>
    internal static Tensor[] Validated(Tensor[]? outputs, string who)
    {
        if (outputs is null || outputs.Length == 0)
            throw new InvalidOperationException($"A recomputed block must return at least one tensor; {who} returned {(outputs is null ? "null" : "none")}.");
        for (int i = 0; i < outputs.Length; i++)
            if (outputs[i] is null || outputs[i].IsInvalid)
                throw new InvalidOperationException($"A recomputed block must return live tensors; {who} returned {(outputs[i] is null ? "null" : "a disposed tensor")} at output {i}.");
        return outputs;
    }

    internal void RecordOutputs(Tensor[] outputs) =>
        outputSignatures = outputs.Select(t => (t.shape, t.dtype, t.device)).ToArray();

    /// <summary>Throws unless the recompute returned outputs of the forward's count, shapes, dtypes and devices.</summary>
    internal void CheckSameOutputs(Tensor[] outputs)
    {
        var expected = outputSignatures!;
        if (outputs.Length != expected.Length)
            throw new InvalidOperationException(
                $"A recomputed block must be deterministic: it returned {expected.Length} output(s) in the forward and {outputs.Length} when run again in the backward.");
        for (int i = 0; i < outputs.Length; i++)
        {
            var (shape, dtype, device) = expected[i];
            if (!outputs[i].shape.SequenceEqual(shape) || outputs[i].dtype != dtype || outputs[i].device.ToString() != device.ToString())
                throw new InvalidOperationException(
                    $"A recomputed block must be deterministic: output {i} was {dtype} [{string.Join(", ", shape)}] on {device} in the forward " +
                    $"and {outputs[i].dtype} [{string.Join(", ", outputs[i].shape)}] on {outputs[i].device} when run again in the backward.");
        }
    }
}

/// <summary>The CPU generator's state at a recomputed call, replayed for its recompute.</summary>
internal sealed class CpuRngState
{
    private readonly byte[] state;

    private CpuRngState(byte[] state) => this.state = state;

    internal static CpuRngState Capture()
    {
        using var generator = Generator.Default;
        using var tensor = generator.get_state();
        return new CpuRngState(tensor.data<byte>().ToArray());
    }

    /// <summary>Sets the generator to this state; disposing the result puts back the state it had before.</summary>
    internal IDisposable Replay()
    {
        var current = Capture();
        Set(state);
        return new Restore(current);
    }

    private static void Set(byte[] state)
    {
        using var generator = Generator.Default;
        using var tensor = torch.tensor(state);
        generator.set_state(tensor);
    }

    private sealed class Restore(CpuRngState previous) : IDisposable
    {
        public void Dispose() => Set(previous.state);
    }
}
