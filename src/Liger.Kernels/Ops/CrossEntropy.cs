using ILGPU;
using ILGPU.Runtime;
using Liger.Kernels.Kernels;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Ops;

/// <summary>How per-token losses are combined.</summary>
public enum CrossEntropyReduction
{
    /// <summary>Σ loss / (number of non-ignored targets, or Σ weight[target] with class weights). A batch with
    /// every target ignored gives 0 and zero gradients (as Liger-Kernel; torch would give NaN).</summary>
    Mean,
    /// <summary>Σ loss.</summary>
    Sum,
    /// <summary>One loss per token (ignored tokens: 0); the backward folds in a per-token incoming gradient.</summary>
    None,
}

/// <summary>Options of <see cref="LigerCrossEntropyFunction"/> (the arguments of torch's cross_entropy, plus Liger's).</summary>
public sealed record CrossEntropyOptions
{
    /// <summary>Targets equal to this take no part (torch's default, -100).</summary>
    public long IgnoreIndex { get; init; } = -100;

    /// <summary>Optional class weights, shape (V), floating point, on the logits' device.</summary>
    public Tensor? Weight { get; init; }

    /// <summary>Label smoothing in [0, 1]: the target distribution is (1 - s)·onehot + s/V.</summary>
    public double LabelSmoothing { get; init; }

    /// <summary>z-loss scale (PaLM): adds scale · lse² per token, for logit-norm stability. 0 turns it off.</summary>
    public double LseSquareScale { get; init; }

    /// <summary>Logit soft cap c (Gemma 2): logits become c · tanh(logits / c) before the softmax. Null: none.</summary>
    public double? Softcap { get; init; }

    /// <summary>How per-token losses are combined.</summary>
    public CrossEntropyReduction Reduction { get; init; } = CrossEntropyReduction.Mean;

    /// <summary>Also return the z-loss part of the loss (for logging; it gets no gradient of its own).</summary>
    public bool ReturnZLoss { get; init; }

    /// <summary>Also return token accuracy (argmax == target; mean over counted tokens, or per token for None).</summary>
    public bool ReturnTokenAccuracy { get; init; }

    /// <summary>Also return each token's argmax class (-1 for ignored tokens), without materialising anything V-sized.</summary>
    public bool ReturnPredictedTokens { get; init; }

    /// <summary>
    /// Write the gradient over the logits in the forward (Liger-Kernel's memory trick: no second V-sized
    /// tensor). The logits are destroyed, so only for logits nothing else reads, such as lm_head's output.
    /// False allocates a gradient buffer and leaves the logits as they were.
    /// </summary>
    public bool InPlaceGradient { get; init; } = true;

    /// <summary>
    /// On CUDA, check targets against [0, V) on the host and throw on a bad one: costs a synchronisation.
    /// Without it a bad target makes its row's loss and gradient NaN (never an out-of-bounds read).
    /// CPU tensors are always checked (it is free there).
    /// </summary>
    public bool ValidateTargets { get; init; }
}

/// <summary>The loss and what was asked for besides it (detached: only the loss has a gradient).</summary>
/// <param name="Loss">float32: a scalar for Mean/Sum, the targets' shape for None.</param>
/// <param name="ZLoss">The z-loss part of <paramref name="Loss"/>, reduced the same way.</param>
/// <param name="TokenAccuracy">float32 accuracy: mean over counted tokens, or per token (ignored: 0) for None.</param>
/// <param name="PredictedTokens">int64 argmax per token (ignored: -1), the targets' shape.</param>
public sealed record CrossEntropyResult(Tensor Loss, Tensor? ZLoss, Tensor? TokenAccuracy, Tensor? PredictedTokens);

/// <summary>
/// Liger cross-entropy: the loss and its gradient in one kernel, the gradient computed in the forward
/// (over the logits by default) so that the backward only scales it. Logits (..., V) in
/// float32/bfloat16/float16 with fp32 math; targets (...) int64.
/// </summary>
public static class LigerCrossEntropyFunction
{
    /// <summary>The loss (float32). See <see cref="CrossEntropyOptions"/>.</summary>
    public static Tensor Apply(Tensor logits, Tensor target, CrossEntropyOptions? options = null) =>
        ApplyWithExtras(logits, target, options).Loss;

    /// <summary>The loss and the extras the options ask for.</summary>
    public static CrossEntropyResult ApplyWithExtras(Tensor logits, Tensor target, CrossEntropyOptions? options = null)
    {
        options ??= new CrossEntropyOptions();
        CrossEntropyOp.Validate(logits, target, options);
        var extras = new CrossEntropyExtras();
        bool gradients = logits.requires_grad && is_grad_enabled();
        var loss = gradients
            ? AutogradOutputCache.Release(CrossEntropyAutograd.apply(logits, target, options, extras))[0]
            : CrossEntropyOp.ForwardRows(logits, target, options, gradients: false, extras).Loss;
        return new CrossEntropyResult(loss, extras.ZLoss, extras.TokenAccuracy, extras.PredictedTokens);
    }
}

/// <summary>Outputs besides the loss, filled by the forward.</summary>
internal sealed class CrossEntropyExtras
{
    internal Tensor? ZLoss, TokenAccuracy, PredictedTokens;
}

/// <summary>The autograd node of <see cref="LigerCrossEntropyFunction"/>: saves only the gradient buffer.</summary>
internal sealed class CrossEntropyAutograd : autograd.MultiTensorFunction<CrossEntropyAutograd>
{
    public override string Name => "LigerCrossEntropyBackward";

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradOutputCache.Track(ctx, Name, vars);
        var (logits, target) = ((Tensor)vars[0], (Tensor)vars[1]);
        var (options, extras) = ((CrossEntropyOptions)vars[2], (CrossEntropyExtras)vars[3]);
        var (loss, grad) = CrossEntropyOp.ForwardRows(logits, target, options, gradients: true, extras);
        bool perRow = options.Reduction == CrossEntropyReduction.None;
        // The gradient buffer may be the logits' own storage, rewritten by the kernel. Next to it, the
        // factor it has been scaled by so far (1 now), one per row for reduction None. Both are saved as
        // aliases with version counters of their own, and the backward writes through further aliases:
        // the buffer is rescaled in place on purpose, which autograd's saved-tensor check would reject
        // at a second backward (retain_graph) or when the caller reuses the logits tensor in place.
        // The counted rows, so that the backward leaves the ignored ones as the forward wrote them.
        using var applied = ones(perRow ? target.numel() : 1, dtype: ScalarType.Float32, device: logits.device);
        using var flatTarget = target.reshape(-1);
        ctx.save_for_backward([BackwardLifetime.SavedInForward(SharedStorage(grad!)), BackwardLifetime.SavedInForward(SharedStorage(applied)),
            BackwardLifetime.SavedInForward(flatTarget.NotEqualTo(options.IgnoreIndex))]);
        ctx.save_data("shape", logits.shape);
        return [loss];
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grads) =>
        BackwardLifetime.Run(ctx, grads, incoming => Backward(ctx, incoming));

    private static List<Tensor> Backward(autograd.AutogradContext ctx, List<Tensor> grads)
    {
        if (grads[0] is null || grads[0].IsInvalid)
            return [null!, null!, null!, null!];
        var saved = ctx.get_saved_variables();
        // Scaling is relative to what was applied before, so a second backward (retain_graph) gives the
        // right gradient instead of scaling twice.
        using (var grad = SharedStorage(saved[0]))
        using (var applied = SharedStorage(saved[1]))
            CrossEntropyOp.ScaleGradient(grad, grads[0], applied, saved[2]);
        return [saved[0].view((long[])ctx.get_data("shape")), null!, null!, null!];
    }

    /// <summary>A tensor over <paramref name="source"/>'s memory (same sizes and strides) that does not share its autograd version counter.</summary>
    private static Tensor SharedStorage(Tensor source) =>
        empty(0, dtype: source.dtype, device: source.device).set_(source);   // set_ returns the same tensor
}

/// <summary>Host side of cross-entropy: checks, totals, kernel launches, the CPU path.</summary>
internal static class CrossEntropyOp
{
    /// <summary>Largest vocabulary: 2^28 classes (row indices and per-thread scratch stay in 32-bit sizes).</summary>
    public const long MaxClasses = 1L << 28;

    internal static void Validate(Tensor logits, Tensor target, CrossEntropyOptions options)
    {
        TensorChecks.NotNull(logits, nameof(logits));
        TensorChecks.AtLeastOneDim(logits, nameof(logits));
        TensorChecks.FloatingPoint(logits, nameof(logits));
        TensorChecks.Contiguous(logits, nameof(logits));
        if (logits.shape[^1] < 1 || logits.shape[^1] > MaxClasses)
            throw new ArgumentException($"'{nameof(logits)}' must have between 1 and {MaxClasses} classes; got {logits.shape[^1]}.", nameof(logits));
        ValidateTargetsAndOptions(target, logits.shape[..^1], logits.shape[^1], logits, nameof(logits), options);
    }

    /// <summary>
    /// Checks shared with FusedLinearCrossEntropy: int64 targets of <paramref name="tokenShape"/> on the
    /// device of <paramref name="anchor"/>, options in range, and target values (see <see cref="CrossEntropyOptions.ValidateTargets"/>).
    /// </summary>
    internal static void ValidateTargetsAndOptions(Tensor target, long[] tokenShape, long vocab, Tensor anchor, string anchorName,
        CrossEntropyOptions options)
    {
        TensorChecks.NotNull(target, nameof(target));
        if (target.dtype != ScalarType.Int64)
            throw new ArgumentException($"'{nameof(target)}' must be int64 class indices; got {target.dtype}.", nameof(target));
        TensorChecks.SameDevice(target, nameof(target), anchor, anchorName);
        if (!target.shape.SequenceEqual(tokenShape))
            throw new ArgumentException($"'{nameof(target)}' must have one class index per token, shape " +
                $"[{string.Join(", ", tokenShape)}]; got [{string.Join(", ", target.shape)}].", nameof(target));
        if (target.numel() > int.MaxValue)
            throw new ArgumentException($"'{nameof(target)}' has {target.numel()} tokens; at most {int.MaxValue} per call.", nameof(target));
        if (options.Weight is { } weight)
        {
            TensorChecks.NotNull(weight, "options.Weight");
            TensorChecks.FloatingPoint(weight, "options.Weight");
            TensorChecks.SameDevice(weight, "options.Weight", anchor, anchorName);
            TensorChecks.Shape(weight, "options.Weight", vocab);
        }
        if (!(options.LabelSmoothing >= 0 && options.LabelSmoothing <= 1))
            throw new ArgumentOutOfRangeException("options.LabelSmoothing", options.LabelSmoothing, "LabelSmoothing must be in [0, 1].");
        TensorChecks.Finite(options.LseSquareScale, "options.LseSquareScale", min: 0);
        if (options.Softcap is { } cap && !(double.IsFinite(cap) && cap > 0))
            throw new ArgumentOutOfRangeException("options.Softcap", cap, "Softcap must be finite and positive (or null for none).");
        var device = LigerRuntime.KernelDeviceFor(anchor, anchorName);
        if (device is null || !device.IsCuda || options.ValidateTargets)
            ValidateTargetRange(target, options.IgnoreIndex, vocab);
    }

    /// <summary>Throws naming the first target outside [0, V) that is not the ignore index (reads targets on the host).</summary>
    private static void ValidateTargetRange(Tensor target, long ignoreIndex, long vocab)
    {
        using var scope = NewDisposeScope();
        var flat = target.reshape(-1);
        var bad = (flat.NotEqualTo(ignoreIndex) & (flat.LessThan(0) | flat.LessThan(vocab).logical_not())).nonzero();
        if (bad.shape[0] > 0)
        {
            long at = bad[0, 0].item<long>();
            throw new ArgumentException($"'{nameof(target)}' holds {flat[at].item<long>()} at flat index {at}: targets must be in " +
                $"[0, {vocab}) or the ignore index {ignoreIndex}.", nameof(target));
        }
    }

    internal static int Flags(CrossEntropyOptions o, bool gradients, bool argmax) =>
        (o.Weight is null ? 0 : CrossEntropyKernels.HasWeight)
        | (o.Softcap is null ? 0 : CrossEntropyKernels.HasSoftcap)
        | (gradients ? CrossEntropyKernels.HasGradients : 0)
        | (o.Reduction == CrossEntropyReduction.Mean ? CrossEntropyKernels.ReductionMean : 0)
        | (argmax ? CrossEntropyKernels.WantArgmax : 0)
        | (o.LabelSmoothing > 0 ? CrossEntropyKernels.HasSmoothing : 0);

    /// <summary>
    /// Forward over all rows: the reduced loss, and the gradient buffer (the logits themselves when
    /// <see cref="CrossEntropyOptions.InPlaceGradient"/>) when <paramref name="gradients"/>.
    /// </summary>
    internal static (Tensor Loss, Tensor? Grad) ForwardRows(Tensor logits, Tensor target, CrossEntropyOptions options,
        bool gradients, CrossEntropyExtras extras)
    {
        long vocab = logits.shape[^1];
        using var rows = logits.view(-1, vocab);
        using var targets = target.reshape(-1);
        var weight = options.Weight?.to(ScalarType.Float32).contiguous();
        var grad = !gradients ? null : options.InPlaceGradient ? rows.detach() : Outputs.EmptyLike(rows);
        bool argmax = options.ReturnTokenAccuracy || options.ReturnPredictedTokens;
        var totals = Totals(targets, weight, options.IgnoreIndex, vocab);
        var perRow = RowLosses(rows, grad, targets, weight, totals, options, Flags(options, gradients, argmax));
        return (Finish(perRow, targets, totals, options, target.shape, extras), grad);
    }

    /// <summary>
    /// The loss from per-token results (R), reduced as the options say, and the extras they ask for:
    /// z-loss, predicted tokens, accuracy (over counted tokens, from the device-side totals).
    /// </summary>
    internal static Tensor Finish(RowResults perRow, Tensor targets, Tensor totals, CrossEntropyOptions options,
        long[] tokenShape, CrossEntropyExtras extras)
    {
        var loss = Reduce(perRow.Loss, options.Reduction, tokenShape);
        if (options.ReturnZLoss)
            extras.ZLoss = Reduce(perRow.ZLoss, options.Reduction, tokenShape);
        if (perRow.Predicted is { } predicted)
        {
            if (options.ReturnPredictedTokens)
                extras.PredictedTokens = predicted.view(tokenShape);
            if (options.ReturnTokenAccuracy)
            {
                var correct = predicted.eq(targets).to(ScalarType.Float32);
                extras.TokenAccuracy = options.Reduction == CrossEntropyReduction.None
                    ? correct.view(tokenShape)
                    : correct.sum() / totals[CrossEntropyKernels.TotalCount].AtLeast(1.0);
            }
        }
        return loss;
    }

    private static Tensor Reduce(Tensor perRow, CrossEntropyReduction reduction, long[] shape) =>
        reduction == CrossEntropyReduction.None ? perRow.view(shape) : perRow.sum();

    /// <summary>
    /// Device-side totals the losses are normalised by (see <see cref="CrossEntropyKernels.CountTargets"/>):
    /// float32 [count, Σ weight[target], Σ weight, invalid], computed where the targets live, no host sync.
    /// </summary>
    internal static Tensor Totals(Tensor targets, Tensor? weight, long ignoreIndex, long vocab)
    {
        var device = LigerRuntime.KernelDeviceFor(targets, nameof(targets));
        if (device is null)
            return CrossEntropyCpu.Totals(targets, weight, ignoreIndex, vocab);
        var totals = Outputs.Empty([CrossEntropyKernels.TotalSlots], ScalarType.Float32, targets.device);
        var kernel = device.Kernel<
            Action<ArrayView<long>, ArrayView<float>, ArrayView<float>, CrossEntropySettings, SpecializedValue<int>>,
            Action<KernelConfig, ArrayView<long>, ArrayView<float>, ArrayView<float>, CrossEntropySettings, SpecializedValue<int>>>(
            CrossEntropyKernels.CountTargets, static (acc, k) => acc.LoadStreamKernel(k));
        using var dummy = weight is null ? empty(1, dtype: ScalarType.Float32, device: targets.device) : null;
        using var views = new TensorViews(device);
        var settings = new CrossEntropySettings { Vocab = (int)vocab, Rows = (int)targets.numel(), IgnoreIndex = ignoreIndex };
        kernel(new KernelConfig(1, device.GroupSizeFor(1024)), views.Of<long>(targets, nameof(targets)),
            views.Of<float>(weight ?? dummy!, nameof(weight)), views.Of<float>(totals, nameof(totals)), settings,
            SpecializedValue.New(weight is null ? 0 : CrossEntropyKernels.HasWeight));
        return totals;
    }

    /// <summary>Per-row results of one launch over rows (R, V).</summary>
    internal readonly record struct RowResults(Tensor Loss, Tensor ZLoss, Tensor? Predicted);

    /// <summary>
    /// Losses of rows (R, V) and, when <paramref name="grad"/> is given, their gradients (which may be the
    /// rows' own storage), normalised by <paramref name="totals"/>. The building block FusedLinearCrossEntropy
    /// calls per chunk of rows.
    /// </summary>
    internal static RowResults RowLosses(Tensor rows, Tensor? grad, Tensor targets, Tensor? weight, Tensor totals,
        CrossEntropyOptions options, int flags)
    {
        long count = rows.shape[0], vocab = rows.shape[1];
        var loss = Outputs.Empty([count], ScalarType.Float32, rows.device);
        var zLoss = Outputs.Empty([count], ScalarType.Float32, rows.device);
        bool argmax = (flags & CrossEntropyKernels.WantArgmax) != 0;
        var predicted = argmax ? empty(count, dtype: ScalarType.Int64, device: rows.device) : null;
        var device = LigerRuntime.KernelDeviceFor(rows, nameof(rows));
        if (device is null)
        {
            LigerRuntime.Report("cross_entropy_forward", ExecutionPath.TorchCpu);
            CrossEntropyCpu.Rows(rows, grad, targets, weight, totals, loss, zLoss, predicted, options, flags);
            return new RowResults(loss, zLoss, predicted);
        }
        if (count > 0)
        {
            var settings = new CrossEntropySettings
            {
                Vocab = (int)vocab, Rows = (int)count, IgnoreIndex = options.IgnoreIndex,
                LseSquareScale = (float)options.LseSquareScale, LabelSmoothing = (float)options.LabelSmoothing,
                Softcap = (float)(options.Softcap ?? 1.0),
            };
            using var dummyWeight = weight is null ? zeros(8, dtype: ScalarType.Float32, device: rows.device) : null;
            using var dummyPredicted = predicted is null ? empty(1, dtype: ScalarType.Int64, device: rows.device) : null;
            var w = weight ?? dummyWeight!;
            var p = predicted ?? dummyPredicted!;
            var g = grad ?? rows; // never written without HasGradients
            bool vectorized = rows.dtype != ScalarType.Float16 && vocab % 8 == 0 && w.numel() % 8 == 0
                              && TensorViews.VectorFriendly(rows, g, w);
            switch (rows.dtype)
            {
                case ScalarType.Float32 when vectorized: LaunchVectorized<float, Float32Codec, Float8, Float32x8Codec>(device, rows, g, targets, w, totals, loss, zLoss, p, settings, flags); break;
                case ScalarType.BFloat16 when vectorized: LaunchVectorized<ushort, BFloat16Codec, BFloat16x8, BFloat16x8Codec>(device, rows, g, targets, w, totals, loss, zLoss, p, settings, flags); break;
                case ScalarType.Float32: Launch<float, Float32Codec>(device, rows, g, targets, w, totals, loss, zLoss, p, settings, flags); break;
                case ScalarType.BFloat16: Launch<ushort, BFloat16Codec>(device, rows, g, targets, w, totals, loss, zLoss, p, settings, flags); break;
                default: Launch<ushort, Float16Codec>(device, rows, g, targets, w, totals, loss, zLoss, p, settings, flags); break;
            }
        }
        LigerRuntime.Report("cross_entropy_forward", device.IsCuda ? ExecutionPath.CudaKernel : ExecutionPath.EmulatedKernel);
        return new RowResults(loss, zLoss, predicted);
    }

    /// <summary>
    /// grad ·= gradOutput in place, on counted rows only: a scalar for Mean/Sum, one factor per row for None.
    /// On the GPU the factor is read by the kernel, which skips a row whose factor is exactly 1 (no host
    /// synchronisation).
    /// </summary>
    /// <param name="grad">The gradient buffer (R, V) the forward wrote.</param>
    /// <param name="gradOutput">The incoming gradient: a scalar, or one per row.</param>
    /// <param name="applied">The factor <paramref name="grad"/> already carries (see <see cref="NextFactor"/>).</param>
    /// <param name="counted">bool (R): the rows whose target is not ignored.</param>
    internal static void ScaleGradient(Tensor grad, Tensor gradOutput, Tensor applied, Tensor counted)
    {
        using var factor = NextFactor(gradOutput, applied);
        using var rowFactor = SkippingIgnored(factor, counted);
        ScaleRows(grad, rowFactor, perRow: true);
    }

    /// <summary>
    /// One factor per row, 1 on ignored rows. torch's nll_loss backward fills an ignored row with 0 without
    /// reading the incoming gradient, so a NaN or ±inf arriving from above leaves the row's gradient as the
    /// forward wrote it (0, or NaN where the row's own logits make torch's NaN); 0 · inf would make it NaN.
    /// </summary>
    /// <param name="factor">One float32 factor, or one per row.</param>
    /// <param name="counted">bool (R): the rows whose target is not ignored.</param>
    internal static Tensor SkippingIgnored(Tensor factor, Tensor counted)
    {
        using var perRow = factor.to(ScalarType.Float32).reshape(-1);
        using var one = ones(1, dtype: ScalarType.Float32, device: perRow.device);
        return where(counted, perRow, one);
    }

    /// <summary>
    /// The factor that turns a gradient scaled by <paramref name="applied"/> into one scaled by
    /// <paramref name="gradOutput"/>, and <paramref name="applied"/> updated to it: so a second backward
    /// (retain_graph) over a gradient computed in the forward gives the right result instead of scaling
    /// twice. Float32, computed where the tensors live (no host synchronisation).
    /// </summary>
    internal static Tensor NextFactor(Tensor gradOutput, Tensor applied)
    {
        using var incoming = gradOutput.to(ScalarType.Float32).reshape(-1);
        // A repeated backward with the same incoming gradient is a no-op, zeros included (0 / 0 would be NaN).
        // A row once scaled by 0 stays 0: a later, different incoming gradient cannot restore it.
        using var ratio = incoming / applied;
        using var same = incoming.eq(applied);
        var factor = ratio.FilledWhere(same, 1.0);
        applied.copy_(incoming);
        return factor;
    }

    /// <summary>rows (R, C) ·= factor in place: one float32 factor, or one per row when <paramref name="perRow"/>.</summary>
    internal static void ScaleRows(Tensor grad, Tensor factor, bool perRow)
    {
        long vocab = grad.shape[^1];
        using var rows = grad.view(-1, vocab);

        var device = LigerRuntime.KernelDeviceFor(grad, nameof(grad));
        if (device is null)
        {
            LigerRuntime.Report("cross_entropy_backward", ExecutionPath.TorchCpu);
            CrossEntropyCpu.Scale(rows, factor, perRow);
            return;
        }
        if (rows.numel() > 0)
        {
            int count = (int)rows.shape[0];
            int groups = (int)Math.Min(count, device.IsCuda ? device.Multiprocessors * 4L : 4L);
            using var views = new TensorViews(device);
            if (rows.dtype != ScalarType.Float16 && vocab % 8 == 0 && TensorViews.VectorFriendly(rows))
            {
                int chunks = (int)(vocab / 8);
                var config = new KernelConfig(groups, device.GroupSizeFor(chunks, 512));
                if (rows.dtype == ScalarType.Float32)
                    ScaleKernel<Float8, Float32x8Codec>(device)(config, views.OfVectors<Float8>(rows, nameof(grad)), views.Of<float>(factor, nameof(factor)), count, chunks, perRow ? 1 : 0);
                else
                    ScaleKernel<BFloat16x8, BFloat16x8Codec>(device)(config, views.OfVectors<BFloat16x8>(rows, nameof(grad)), views.Of<float>(factor, nameof(factor)), count, chunks, perRow ? 1 : 0);
            }
            else
            {
                var config = new KernelConfig(groups, device.GroupSizeFor(vocab, 512));
                switch (rows.dtype)
                {
                    case ScalarType.Float32: ScaleScalarKernel<float, Float32Codec>(device)(config, views.Of<float>(rows, nameof(grad)), views.Of<float>(factor, nameof(factor)), count, (int)vocab, perRow ? 1 : 0); break;
                    case ScalarType.BFloat16: ScaleScalarKernel<ushort, BFloat16Codec>(device)(config, views.Of<ushort>(rows, nameof(grad)), views.Of<float>(factor, nameof(factor)), count, (int)vocab, perRow ? 1 : 0); break;
                    default: ScaleScalarKernel<ushort, Float16Codec>(device)(config, views.Of<ushort>(rows, nameof(grad)), views.Of<float>(factor, nameof(factor)), count, (int)vocab, perRow ? 1 : 0); break;
                }
            }
        }
        LigerRuntime.Report("cross_entropy_backward", device.IsCuda ? ExecutionPath.CudaKernel : ExecutionPath.EmulatedKernel);
    }

    private static Action<KernelConfig, ArrayView<TVec>, ArrayView<float>, int, int, int> ScaleKernel<TVec, TVecCodec>(KernelDevice device)
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec> =>
        device.Kernel<Action<ArrayView<TVec>, ArrayView<float>, int, int, int>, Action<KernelConfig, ArrayView<TVec>, ArrayView<float>, int, int, int>>(
            CrossEntropyKernels.ScaleRows<TVec, TVecCodec>, static (acc, k) => acc.LoadStreamKernel(k));

    private static Action<KernelConfig, ArrayView<T>, ArrayView<float>, int, int, int> ScaleScalarKernel<T, TCodec>(KernelDevice device)
        where T : unmanaged where TCodec : struct, IElementCodec<T> =>
        device.Kernel<Action<ArrayView<T>, ArrayView<float>, int, int, int>, Action<KernelConfig, ArrayView<T>, ArrayView<float>, int, int, int>>(
            CrossEntropyKernels.ScaleRowsScalar<T, TCodec>, static (acc, k) => acc.LoadStreamKernel(k));

    /// <summary>
    /// Persistent groups over contiguous runs of rows: one group per multiprocessor, so the rows in flight
    /// (one per multiprocessor, 250 KiB each at V = 128256 in bf16) stay in L2 between the two passes.
    /// </summary>
    private static (int Groups, int RowsPerGroup) RowGrid(KernelDevice device, long rows)
    {
        int resident = device.IsCuda ? device.Multiprocessors * RowGroupsPerMultiprocessor : 4;
        int rowsPerGroup = (int)Math.Max(1, (rows + resident - 1) / resident);
        return ((int)Math.Max(1, (rows + rowsPerGroup - 1) / rowsPerGroup), rowsPerGroup);
    }

    /// <summary>Groups per multiprocessor for the row kernels (LIGER_CE_GROUPS_PER_SM overrides it, for tuning).</summary>
    internal static int RowGroupsPerMultiprocessor { get; set; } =
        int.TryParse(Environment.GetEnvironmentVariable("LIGER_CE_GROUPS_PER_SM"), out int g) && g > 0 ? g : 1;

    private static void LaunchVectorized<T, TCodec, TVec, TVecCodec>(KernelDevice device, Tensor rows, Tensor grad, Tensor targets,
        Tensor weight, Tensor totals, Tensor loss, Tensor zLoss, Tensor predicted, CrossEntropySettings settings, int flags)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        var kernel = device.Kernel<
            Action<ArrayView<TVec>, ArrayView<T>, ArrayView<TVec>, ArrayView<long>, ArrayView<Float8>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<long>, CrossEntropySettings, SpecializedValue<int>>,
            Action<KernelConfig, ArrayView<TVec>, ArrayView<T>, ArrayView<TVec>, ArrayView<long>, ArrayView<Float8>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<long>, CrossEntropySettings, SpecializedValue<int>>>(
            CrossEntropyKernels.RowsVectorized<T, TCodec, TVec, TVecCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        int group = device.GroupSizeFor(settings.Vocab / 8);
        (int groups, settings.RowsPerGroup) = RowGrid(device, settings.Rows);
        using var views = new TensorViews(device);
        kernel(new KernelConfig(groups, group), views.OfVectors<TVec>(rows, "logits"), views.Of<T>(rows, "logits"),
            views.OfVectors<TVec>(grad, "grad"), views.Of<long>(targets, "target"), views.OfVectors<Float8>(weight, "weight"),
            views.Of<float>(weight, "weight"), views.Of<float>(totals, "totals"), views.Of<float>(loss, "loss"),
            views.Of<float>(zLoss, "zLoss"), views.Of<long>(predicted, "predicted"), settings, SpecializedValue.New(flags));
    }

    private static void Launch<T, TCodec>(KernelDevice device, Tensor rows, Tensor grad, Tensor targets, Tensor weight,
        Tensor totals, Tensor loss, Tensor zLoss, Tensor predicted, CrossEntropySettings settings, int flags)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        var kernel = device.Kernel<
            Action<ArrayView<T>, ArrayView<T>, ArrayView<long>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<long>, CrossEntropySettings, SpecializedValue<int>>,
            Action<KernelConfig, ArrayView<T>, ArrayView<T>, ArrayView<long>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<long>, CrossEntropySettings, SpecializedValue<int>>>(
            CrossEntropyKernels.Rows<T, TCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        int group = device.GroupSizeFor(settings.Vocab);
        (int groups, settings.RowsPerGroup) = RowGrid(device, settings.Rows);
        using var views = new TensorViews(device);
        kernel(new KernelConfig(groups, group), views.Of<T>(rows, "logits"), views.Of<T>(grad, "grad"),
            views.Of<long>(targets, "target"), views.Of<float>(weight, "weight"), views.Of<float>(totals, "totals"),
            views.Of<float>(loss, "loss"), views.Of<float>(zLoss, "zLoss"), views.Of<long>(predicted, "predicted"),
            settings, SpecializedValue.New(flags));
    }
}
