using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>How far Liger's value is from eager's: the largest absolute difference, and that over eager's largest magnitude.</summary>
internal sealed record Difference(double MaxAbs, double Relative)
{
    internal static Difference Of(Tensor expected, Tensor actual)
    {
        // float32 holds bf16 and float32 values exactly; at the benchmark shape a float64 copy of the weight's gradient is 4 GiB.
        using var scope = NewDisposeScope();
        var e = expected.detach().to(ScalarType.Float32);
        double maxAbs = (e - actual.detach().to(ScalarType.Float32)).abs_().max().item<float>();
        double scale = e.abs().max().item<float>();
        return new Difference(maxAbs, scale > 0 ? maxAbs / scale : maxAbs);
    }

    public override string ToString() => $"{MaxAbs:E1} / {Relative:E1}";
}

/// <summary>The largest relative difference allowed for the loss, the sequence log-probs and the gradients.</summary>
internal sealed record CheckTolerance(double Loss, double LogProbs, double Gradients)
{
    /// <summary>float32: both sides compute the same sums in a different order (chunks, fused kernel against log_softmax).</summary>
    internal static CheckTolerance Float32 { get; } = new(1e-4, 1e-4, 1e-4);

    /// <summary>
    /// bfloat16. Both sides round the logits to bf16, so the log-probs agree closely (1e-4 seen); a summed log-prob is a few
    /// hundred, so DPO's and CPO's losses, β times a difference of such sums, move by a few 1e-3. The gradient of the logits
    /// is rounded to bf16 once in eager (float32 to bf16 before the matmuls) and twice in Liger (softmax − onehot in bf16,
    /// then scaled in place): a few units of bf16's 2⁻⁸ step per element, 4e-3 to 7e-3 of the largest gradient seen.
    /// </summary>
    internal static CheckTolerance BFloat16 { get; } = new(1e-2, 1e-3, 2e-2);

    public override string ToString() => $"{Loss:0.#E0} / {LogProbs:0.#E0} / {Gradients:0.#E0}";
}

/// <summary>One loss compared with its eager composite on the same inputs; null differences when a side failed.</summary>
internal sealed record PreferenceCheckResult(string Loss, string DType, string Shape, CheckTolerance Tolerance, double? EagerLoss, double? LigerLoss,
    Difference? LossDifference, Difference? LogProbs, Difference? GradHidden, Difference? GradWeight, Difference? GradBias, string Paths, string? Error)
{
    internal bool Passed => Error is null && Within(LossDifference, Tolerance.Loss) && Within(LogProbs, Tolerance.LogProbs) &&
        Within(GradHidden, Tolerance.Gradients) && Within(GradWeight, Tolerance.Gradients) && Within(GradBias, Tolerance.Gradients);

    private static bool Within(Difference? difference, double tolerance) => difference is not null && difference.Relative <= tolerance;
}

/// <summary>
/// Liger against the eager composite at a small shape, every loss and variant, with a bias (so its gradient is checked
/// too), in float32 and bfloat16 on the benchmark's device: the loss, each sequence's log-prob and the gradients of
/// hidden, weight and bias. Relative differences are over eager's largest magnitude of that tensor.
/// </summary>
internal static class PreferenceCheck
{
    internal static PreferenceCheckResult Run(PreferenceLossCase lossCase, PreferenceShape shape, ScalarType dtype, Device device, Random random)
    {
        var tolerance = dtype == ScalarType.Float32 ? CheckTolerance.Float32 : CheckTolerance.BFloat16;
        string dtypeName = PreferenceBenchmark.DTypeName(dtype);
        var paths = new SortedSet<string>();
        void Record(string op, ExecutionPath path) => paths.Add($"{op}:{path}");
        using var scope = NewDisposeScope();
        using var inputs = lossCase.Inputs(shape, dtype, device, bias: true, random);
        try
        {
            var (eager, eagerGrads) = Evaluate(lossCase.Eager, inputs);
            LigerRuntime.OpExecuted += Record;
            PreferenceOutput liger;
            Tensor[] ligerGrads;
            try
            {
                (liger, ligerGrads) = Evaluate(lossCase.Liger, inputs);
            }
            finally
            {
                LigerRuntime.OpExecuted -= Record;
            }
            // On a GPU the point is the kernels: a row that fell back to another path checks nothing of them.
            string? error = device.type == DeviceType.CUDA && !paths.Any(p => p.EndsWith($":{ExecutionPath.CudaKernel}", StringComparison.Ordinal))
                ? "no CUDA kernel ran" : null;
            return new PreferenceCheckResult(lossCase.Name, dtypeName, shape.ToString(), tolerance,
                eager.Loss.item<float>(), liger.Loss.item<float>(), Difference.Of(eager.Loss, liger.Loss), Difference.Of(eager.LogProbs, liger.LogProbs),
                Difference.Of(eagerGrads[0], ligerGrads[0]), Difference.Of(eagerGrads[1], ligerGrads[1]), Difference.Of(eagerGrads[2], ligerGrads[2]),
                string.Join(" ", paths), error);
        }
        catch (Exception e)
        {
            return new PreferenceCheckResult(lossCase.Name, dtypeName, shape.ToString(), tolerance, null, null, null, null, null, null, null,
                string.Join(" ", paths), PreferenceBenchmark.Describe(e));
        }
    }

    /// <summary>The loss, the log-probs and the gradients of the trainable inputs.</summary>
    internal static (PreferenceOutput Output, Tensor[] Grads) Evaluate(Func<PreferenceInputs, PreferenceOutput> loss, PreferenceInputs inputs)
    {
        var output = loss(inputs);
        var grads = autograd.grad([output.Loss], inputs.Trainable).ToArray();
        return (output, grads);
    }
}
