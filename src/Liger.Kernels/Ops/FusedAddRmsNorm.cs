using ILGPU;
using ILGPU.Runtime;
using Liger.Kernels.Kernels;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Ops;

/// <summary>
/// The residual add and RMSNorm of a decoder layer as one differentiable function:
/// h = residual + x (rounded to x's dtype, as eager's add), y = RMSNorm(h) exactly as
/// <see cref="LigerRMSNormFunction"/> computes it. One pass over memory each way: the forward reads x and
/// residual and writes y and h; it saves h, the weight and the fp32 rstd per row. The backward writes one
/// tensor, the gradient of h (RMSNorm's, plus whatever reached the returned h), which is the gradient of
/// both x and residual.
/// </summary>
public static class LigerFusedAddRMSNormFunction
{
    /// <summary>
    /// Returns (RMSNorm(residual + x), residual + x). x and residual: (..., H) contiguous, same shape,
    /// float32/bfloat16/float16; weight: (H) of x's dtype and device.
    /// </summary>
    /// <param name="x">The sub-layer output added to the residual stream (Hugging Face's hidden_states).</param>
    /// <param name="residual">The residual stream.</param>
    /// <param name="weight">RMSNorm's scale, one per feature.</param>
    /// <param name="eps">Added to the mean square; must be finite and non-negative.</param>
    /// <param name="offset">Added to the weight (Gemma stores weight - 1 and uses offset 1).</param>
    /// <param name="castingMode">Where RMSNorm's intermediate results are rounded to x's dtype.</param>
    public static (Tensor Output, Tensor Residual) Apply(Tensor x, Tensor residual, Tensor weight, double eps = 1e-6,
        double offset = 0.0, RmsNormCastingMode castingMode = RmsNormCastingMode.Llama)
    {
        FusedAddRmsNormOp.Validate(x, residual, weight, eps, offset, castingMode);
        if (x.shape[^1] == 0)
        {
            var sum = x.Plus(residual); // torch's empty results (rows of no feature cannot be viewed as (-1, 0))
            return (EmptyRows.Normalized(sum, weight), sum);
        }
        var outputs = AutogradOutputCache.Release(FusedAddRmsNormAutograd.apply(x, residual, weight, eps, offset, castingMode));
        return (outputs[0], outputs[1]);
    }
}

/// <summary>The autograd node of <see cref="LigerFusedAddRMSNormFunction"/>.</summary>
internal sealed class FusedAddRmsNormAutograd : autograd.MultiTensorFunction<FusedAddRmsNormAutograd>
{
    public override string Name => "LigerFusedAddRMSNormBackward";

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradOutputCache.Track(ctx, Name, vars);
        var (x, residual, weight) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2]);
        var (eps, offset, mode) = ((double)vars[3], (double)vars[4], (RmsNormCastingMode)vars[5]);
        long cols = x.shape[^1];
        using var xRows = x.view(-1, cols);
        using var residualRows = residual.view(-1, cols);
        var (y, h, rstd) = FusedAddRmsNormOp.Forward(xRows, residualRows, weight, eps, offset, mode);
        // The rows tensor is saved, not the returned view of it: the view carries this node as its
        // grad_fn, the rows tensor does not, so saving it makes no reference cycle.
        ctx.save_for_backward([h, weight, rstd]);
        ctx.save_data("offset", offset);
        ctx.save_data("mode", mode);
        ctx.save_data("shape", x.shape);
        return [y.view(x.shape), h.view(x.shape)];
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grads) =>
        BackwardLifetime.Run(ctx, grads, incoming => Backward(ctx, incoming));

    private static List<Tensor> Backward(autograd.AutogradContext ctx, List<Tensor> grads)
    {
        Tensor? dy = grads[0] is { IsInvalid: false } g0 ? g0 : null;
        Tensor? dResidualOut = grads[1] is { IsInvalid: false } g1 ? g1 : null;
        if (dy is null)
            // Only the returned h took part in the loss: its gradient passes to x and residual as through
            // the add (null when neither output did); the weight gets none.
            return [dResidualOut!, dResidualOut!, null!, null!, null!, null!];
        var saved = ctx.get_saved_variables();
        var (h, weight, rstd) = (saved[0], saved[1], saved[2]);
        var shape = (long[])ctx.get_data("shape");
        long cols = h.shape[1];
        var (dh, dw) = FusedAddRmsNormOp.Backward(dy.contiguous().view(-1, cols), dResidualOut?.contiguous().view(-1, cols),
            h, weight, rstd, (double)ctx.get_data("offset"), (RmsNormCastingMode)ctx.get_data("mode"));
        // One tensor for both inputs, as the add's backward passes one gradient to both; autograd's
        // use-count checks keep it from being accumulated into in place while the other still holds it.
        return [dh.view(shape), dh.view(shape), dw, null!, null!, null!];
    }
}

/// <summary>Host side of fused add + RMSNorm: argument checks, kernel launches, and the TorchSharp CPU path.</summary>
internal static class FusedAddRmsNormOp
{

    internal static void Validate(Tensor x, Tensor residual, Tensor weight, double eps, double offset, RmsNormCastingMode mode)
    {
        TensorChecks.NotNull(x, nameof(x));
        TensorChecks.NotNull(residual, nameof(residual));
        TensorChecks.NotNull(weight, nameof(weight));
        TensorChecks.AtLeastOneDim(x, nameof(x));
        TensorChecks.FloatingPoint(x, nameof(x));
        TensorChecks.Contiguous(x, nameof(x));
        TensorChecks.SameDtype(residual, nameof(residual), x, nameof(x));
        TensorChecks.SameDevice(residual, nameof(residual), x, nameof(x));
        TensorChecks.SameShape(residual, nameof(residual), x, nameof(x));
        TensorChecks.Contiguous(residual, nameof(residual));
        TensorChecks.SameDtype(weight, nameof(weight), x, nameof(x));
        TensorChecks.SameDevice(weight, nameof(weight), x, nameof(x));
        TensorChecks.Shape(weight, nameof(weight), x.shape[^1]);
        TensorChecks.Contiguous(weight, nameof(weight));
        TensorChecks.Finite(eps, nameof(eps), min: 0);
        TensorChecks.Finite(offset, nameof(offset));
        if (!Enum.IsDefined(mode))
            throw new ArgumentOutOfRangeException("castingMode", mode, "'castingMode' must be Llama, Gemma or None.");
        LigerRuntime.KernelDeviceFor(x, nameof(x)); // rejects devices we cannot run on, with the argument's name
    }

    /// <summary>Forward over rows (R, H): returns y (R, H), h = residual + x (R, H) and rstd (R) in fp32.</summary>
    public static (Tensor Y, Tensor H, Tensor Rstd) Forward(Tensor x, Tensor residual, Tensor weight, double eps, double offset,
        RmsNormCastingMode mode)
    {
        var device = LigerRuntime.KernelDeviceFor(x, nameof(x));
        if (device is null)
        {
            LigerRuntime.Report("fused_add_rms_norm_forward", ExecutionPath.TorchCpu);
            return ForwardTorch(x, residual, weight, eps, offset, mode);
        }
        var y = Outputs.EmptyLike(x);
        var h = Outputs.EmptyLike(x);
        var rstd = Outputs.Empty([x.shape[0]], ScalarType.Float32, x.device);
        if (x.shape[0] > 0)
        {
            bool vectorized = RowLaunch.Vectorizable(device, x.shape[1], x, residual, weight);
            switch (x.dtype)
            {
                case ScalarType.Float32 when vectorized: LaunchForwardVectorized<float, Float32Codec, Float8, Float32x8Codec>(device, x, residual, weight, y, h, rstd, eps, offset, mode); break;
                case ScalarType.Float32: LaunchForward<float, Float32Codec>(device, x, residual, weight, y, h, rstd, eps, offset, mode); break;
                case ScalarType.BFloat16 when vectorized: LaunchForwardVectorized<ushort, BFloat16Codec, BFloat16x8, BFloat16x8Codec>(device, x, residual, weight, y, h, rstd, eps, offset, mode); break;
                case ScalarType.BFloat16: LaunchForward<ushort, BFloat16Codec>(device, x, residual, weight, y, h, rstd, eps, offset, mode); break;
                default: LaunchForward<ushort, Float16Codec>(device, x, residual, weight, y, h, rstd, eps, offset, mode); break;
            }
        }
        LigerRuntime.Report("fused_add_rms_norm_forward", device.IsCuda ? ExecutionPath.CudaKernel : ExecutionPath.EmulatedKernel);
        return (y, h, rstd);
    }

    /// <summary>
    /// Backward over rows: returns dh (R, H) in h's dtype, RMSNorm's gradient of h rounded and then added to
    /// <paramref name="dResidualOut"/> (the gradient of the returned h; null when it received none), and dW (H).
    /// </summary>
    public static (Tensor Dh, Tensor Dw) Backward(Tensor dy, Tensor? dResidualOut, Tensor h, Tensor weight, Tensor rstd,
        double offset, RmsNormCastingMode mode)
    {
        var device = LigerRuntime.KernelDeviceFor(h, nameof(h));
        if (device is null)
        {
            LigerRuntime.Report("fused_add_rms_norm_backward", ExecutionPath.TorchCpu);
            return BackwardTorch(dy, dResidualOut, h, weight, rstd, offset, mode);
        }
        int rows = (int)h.shape[0], cols = (int)h.shape[1];
        TensorChecks.SameShape(dy, nameof(dy), h, nameof(h));
        if (dResidualOut is not null)
            TensorChecks.SameShape(dResidualOut, nameof(dResidualOut), h, nameof(h));
        var dh = Outputs.EmptyLike(h);
        const int most = RowLaunch.MaxChunksOfHeavyKernels;
        bool vectorized = dResidualOut is null
            ? RowLaunch.VectorizableUpTo(device, most, cols, dy, h, weight, dh)
            : RowLaunch.VectorizableUpTo(device, most, cols, dy, dResidualOut, h, weight, dh);
        // dW partials: in registers (vectorised) or shared memory (scalar); rows too long for shared
        // memory leave dW to torch ops.
        bool accumulate = vectorized || RowLaunch.SharedAccumulatorsFit(device, cols, 1);
        Tensor? partials = rows == 0 ? null : h.dtype switch
        {
            ScalarType.Float32 when vectorized => LaunchBackwardVectorized<float, Float32Codec, Float8, Float32x8Codec>(device, dy, dResidualOut, h, weight, rstd, dh, offset, mode),
            ScalarType.Float32 => LaunchBackward<float, Float32Codec>(device, dy, dResidualOut, h, weight, rstd, dh, offset, mode, accumulate),
            ScalarType.BFloat16 when vectorized => LaunchBackwardVectorized<ushort, BFloat16Codec, BFloat16x8, BFloat16x8Codec>(device, dy, dResidualOut, h, weight, rstd, dh, offset, mode),
            ScalarType.BFloat16 => LaunchBackward<ushort, BFloat16Codec>(device, dy, dResidualOut, h, weight, rstd, dh, offset, mode, accumulate),
            _ => LaunchBackward<ushort, Float16Codec>(device, dy, dResidualOut, h, weight, rstd, dh, offset, mode, accumulate),
        };
        Tensor dw = partials is null ? zeros_like(weight)
            : accumulate ? partials.sum(dim: 0).to(weight.dtype)
            : RmsNormOp.WeightGradTorch(dy, h, rstd, mode);
        LigerRuntime.Report("fused_add_rms_norm_backward", device.IsCuda ? ExecutionPath.CudaKernel : ExecutionPath.EmulatedKernel);
        return (dh, dw);
    }

    private static void LaunchForwardVectorized<T, TCodec, TVec, TVecCodec>(KernelDevice device, Tensor x, Tensor residual,
        Tensor weight, Tensor y, Tensor h, Tensor rstd, double eps, double offset, RmsNormCastingMode mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        int rows = (int)x.shape[0], chunks = (int)x.shape[1] / 8;
        var kernel = device.Kernel<
            Action<ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<float>, int, int, int, float, float, SpecializedValue<int>>,
            Action<KernelConfig, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<float>, int, int, int, float, float, SpecializedValue<int>>>(
            FusedAddRmsNormKernels.ForwardVectorized<T, TCodec, TVec, TVecCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        int group = device.GroupSizeFor(chunks);
        var (groups, rowsPerGroup) = device.PersistentGrid(rows, group);
        using var views = new TensorViews(device);
        kernel(new KernelConfig(groups, group),
            views.OfVectors<TVec>(x, nameof(x)), views.OfVectors<TVec>(residual, nameof(residual)), views.OfVectors<TVec>(weight, nameof(weight)),
            views.OfVectors<TVec>(y, "y"), views.OfVectors<TVec>(h, "h"), views.Of<float>(rstd, "rstd"),
            rows, chunks, rowsPerGroup, (float)eps, (float)offset, SpecializedValue.New((int)mode));
    }

    private static void LaunchForward<T, TCodec>(KernelDevice device, Tensor x, Tensor residual, Tensor weight, Tensor y,
        Tensor h, Tensor rstd, double eps, double offset, RmsNormCastingMode mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        int cols = (int)x.shape[1];
        var kernel = device.Kernel<
            Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<float>, int, float, float, int>,
            Action<KernelConfig, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<float>, int, float, float, int>>(
            FusedAddRmsNormKernels.Forward<T, TCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        using var views = new TensorViews(device);
        kernel(new KernelConfig((int)x.shape[0], device.GroupSizeFor((cols + 3) / 4)),
            views.Of<T>(x, nameof(x)), views.Of<T>(residual, nameof(residual)), views.Of<T>(weight, nameof(weight)),
            views.Of<T>(y, "y"), views.Of<T>(h, "h"), views.Of<float>(rstd, "rstd"), cols, (float)eps, (float)offset, (int)mode);
    }

    /// <summary>Launches the vectorised backward; returns the fp32 dW partials, one row per group.</summary>
    private static Tensor LaunchBackwardVectorized<T, TCodec, TVec, TVecCodec>(KernelDevice device, Tensor dy, Tensor? dResidualOut,
        Tensor h, Tensor weight, Tensor rstd, Tensor dh, double offset, RmsNormCastingMode mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        int rows = (int)h.shape[0], cols = (int)h.shape[1];
        var kernel = device.Kernel<
            Action<ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<float>, ArrayView<TVec>, ArrayView<Float8>, int, int, int, float, SpecializedValue<int>, SpecializedValue<int>>,
            Action<KernelConfig, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<float>, ArrayView<TVec>, ArrayView<Float8>, int, int, int, float, SpecializedValue<int>, SpecializedValue<int>>>(
            FusedAddRmsNormKernels.BackwardVectorized<T, TCodec, TVec, TVecCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        int group = device.GroupSizeFor(cols / 8);
        var (groups, rowsPerGroup) = device.PersistentGrid(rows, group);
        var partials = Outputs.Empty([groups, cols], ScalarType.Float32, h.device);
        using var views = new TensorViews(device);
        var dyView = views.OfVectors<TVec>(dy, nameof(dy));
        kernel(new KernelConfig(groups, group),
            dyView, dResidualOut is null ? dyView : views.OfVectors<TVec>(dResidualOut, nameof(dResidualOut)),
            views.OfVectors<TVec>(h, nameof(h)), views.OfVectors<TVec>(weight, nameof(weight)), views.Of<float>(rstd, nameof(rstd)),
            views.OfVectors<TVec>(dh, nameof(dh)), views.OfVectors<Float8>(partials, "partials"),
            rows, cols / 8, rowsPerGroup, (float)offset, SpecializedValue.New((int)mode), SpecializedValue.New(dResidualOut is null ? 0 : 1));
        return partials;
    }

    /// <summary>Launches the scalar backward; returns the fp32 dW partials (one row per group, or unused when not accumulating).</summary>
    private static Tensor LaunchBackward<T, TCodec>(KernelDevice device, Tensor dy, Tensor? dResidualOut, Tensor h, Tensor weight,
        Tensor rstd, Tensor dh, double offset, RmsNormCastingMode mode, bool accumulate)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        int rows = (int)h.shape[0], cols = (int)h.shape[1];
        var kernel = device.Kernel<
            Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<float>, ArrayView<T>, ArrayView<float>, int, int, int, float, int, int, int>,
            Action<KernelConfig, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<float>, ArrayView<T>, ArrayView<float>, int, int, int, float, int, int, int>>(
            FusedAddRmsNormKernels.Backward<T, TCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        int group = device.GroupSizeFor((cols + 3) / 4);
        var (groups, rowsPerGroup) = device.PersistentGrid(rows, group);
        var partials = Outputs.Empty(accumulate ? [groups, cols] : [1], ScalarType.Float32, h.device);
        using var views = new TensorViews(device);
        var dyView = views.Of<T>(dy, nameof(dy));
        kernel(new KernelConfig(groups, group, SharedMemoryConfig.RequestDynamic<float>(accumulate ? cols : 1)),
            dyView, dResidualOut is null ? dyView : views.Of<T>(dResidualOut, nameof(dResidualOut)),
            views.Of<T>(h, nameof(h)), views.Of<T>(weight, nameof(weight)), views.Of<float>(rstd, nameof(rstd)),
            views.Of<T>(dh, nameof(dh)), views.Of<float>(partials, "partials"),
            rows, cols, rowsPerGroup, (float)offset, (int)mode, accumulate ? 1 : 0, dResidualOut is null ? 0 : 1);
        return partials;
    }

    // ---- TorchSharp path: the eager graph (add, then RMSNorm's torch path), saving the same tensors. ----

    internal static (Tensor Y, Tensor H, Tensor Rstd) ForwardTorch(Tensor x, Tensor residual, Tensor weight, double eps,
        double offset, RmsNormCastingMode mode)
    {
        var h = residual.Plus(x);
        var (y, rstd) = RmsNormOp.ForwardTorch(h, weight, eps, offset, mode);
        return (y, h, rstd);
    }

    internal static (Tensor Dh, Tensor Dw) BackwardTorch(Tensor dy, Tensor? dResidualOut, Tensor h, Tensor weight, Tensor rstd,
        double offset, RmsNormCastingMode mode)
    {
        var (dh, dw) = RmsNormOp.BackwardTorch(dy, h, weight, rstd, offset, mode, inPlace: false);
        if (dResidualOut is not null)
            dh.PlusInPlace(dResidualOut); // dh is RMSNorm's fresh result: adding in place rounds as eager's sum of h's two gradients
        return (dh, dw);
    }
}
