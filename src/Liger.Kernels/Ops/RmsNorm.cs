using ILGPU;
using ILGPU.Runtime;
using Liger.Kernels.Kernels;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Ops;

/// <summary>How RMSNorm rounds between steps, as Liger-Kernel defines the modes.</summary>
public enum RmsNormCastingMode
{
    /// <summary>fp32 statistics; x * rstd is rounded to the input dtype before the weight multiply (Llama, HF's LlamaRMSNorm).</summary>
    Llama = RmsNormKernels.Llama,

    /// <summary>Everything in fp32 (weight too), one rounding at the end (Gemma).</summary>
    Gemma = RmsNormKernels.Gemma,

    /// <summary>rstd (fp32-accumulated) and every product rounded to the input dtype.</summary>
    None = RmsNormKernels.None,
}

/// <summary>
/// Liger RMSNorm as a differentiable function: y = x / sqrt(mean(x²) + eps) * (offset + weight) over the
/// last dimension. The forward saves x, weight and the fp32 rstd per row (not the normalised x); the
/// backward computes dx in one kernel and dW from per-group partial sums.
/// </summary>
public static class LigerRMSNormFunction
{
    /// <summary>Applies RMSNorm. x: (..., H) contiguous float32/bfloat16/float16; weight: (H) of x's dtype and device.</summary>
    /// <param name="x">Input, normalised over its last dimension.</param>
    /// <param name="weight">Scale, one per feature.</param>
    /// <param name="eps">Added to the mean square; must be finite and non-negative.</param>
    /// <param name="offset">Added to the weight (Gemma stores weight - 1 and uses offset 1).</param>
    /// <param name="castingMode">Where intermediate results are rounded to x's dtype.</param>
    /// <param name="inPlaceBackward">Write dx into the incoming gradient's buffer (saves memory; only safe when
    /// nothing else reads that gradient, which is not true on a residual stream).</param>
    public static Tensor Apply(Tensor x, Tensor weight, double eps = 1e-6, double offset = 0.0,
        RmsNormCastingMode castingMode = RmsNormCastingMode.Llama, bool inPlaceBackward = false)
    {
        RmsNormOp.Validate(x, weight, eps, offset);
        if (x.shape[^1] == 0)
            return EmptyRows.Normalized(x, weight); // torch's empty result (rows of no feature cannot be viewed as (-1, 0))
        return AutogradOutputCache.Release(RmsNormAutograd.apply(x, weight, eps, offset, castingMode, inPlaceBackward))[0];
    }
}

/// <summary>The autograd node of <see cref="LigerRMSNormFunction"/>.</summary>
internal sealed class RmsNormAutograd : autograd.MultiTensorFunction<RmsNormAutograd>
{
    public override string Name => "LigerRMSNormBackward";

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradOutputCache.Track(ctx, Name, vars);
        var (x, weight) = ((Tensor)vars[0], (Tensor)vars[1]);
        var (eps, offset, mode, inPlace) = ((double)vars[2], (double)vars[3], (RmsNormCastingMode)vars[4], (bool)vars[5]);
        long cols = x.shape[^1];
        using var rows = x.view(-1, cols);
        var (y, rstd) = RmsNormOp.Forward(rows, weight, eps, offset, mode);
        ctx.save_for_backward([x, weight, rstd]);
        ctx.save_data("offset", offset);
        ctx.save_data("mode", mode);
        ctx.save_data("inPlace", inPlace);
        return [y.view(x.shape)];
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grads) =>
        BackwardLifetime.Run(ctx, grads, incoming => Backward(ctx, incoming));

    private static List<Tensor> Backward(autograd.AutogradContext ctx, List<Tensor> grads)
    {
        var saved = ctx.get_saved_variables();
        var (x, weight, rstd) = (saved[0], saved[1], saved[2]);
        if (grads[0] is null || grads[0].IsInvalid)
            return [null!, null!, null!, null!, null!, null!]; // the output took no part in the loss
        long cols = x.shape[^1];
        var dy = grads[0].contiguous().view(-1, cols);
        var (dx, dw) = RmsNormOp.Backward(dy, x.view(-1, cols), weight, rstd,
            (double)ctx.get_data("offset"), (RmsNormCastingMode)ctx.get_data("mode"), (bool)ctx.get_data("inPlace"));
        return [dx.view(x.shape), dw, null!, null!, null!, null!];
    }
}

/// <summary>Host side of RMSNorm: argument checks, kernel launches, and the TorchSharp CPU path.</summary>
internal static class RmsNormOp
{
    internal static void Validate(Tensor x, Tensor weight, double eps, double offset)
    {
        TensorChecks.NotNull(x, nameof(x));
        TensorChecks.NotNull(weight, nameof(weight));
        TensorChecks.AtLeastOneDim(x, nameof(x));
        TensorChecks.FloatingPoint(x, nameof(x));
        TensorChecks.Contiguous(x, nameof(x));
        TensorChecks.SameDtype(weight, nameof(weight), x, nameof(x));
        TensorChecks.SameDevice(weight, nameof(weight), x, nameof(x));
        TensorChecks.Shape(weight, nameof(weight), x.shape[^1]);
        TensorChecks.Contiguous(weight, nameof(weight));
        TensorChecks.Finite(eps, nameof(eps), min: 0);
        TensorChecks.Finite(offset, nameof(offset));
        LigerRuntime.KernelDeviceFor(x, nameof(x)); // rejects devices we cannot run on, with the argument's name
    }

    /// <summary>Forward over rows (R, H): returns y (R, H) and rstd (R) in fp32.</summary>
    public static (Tensor Y, Tensor Rstd) Forward(Tensor x, Tensor weight, double eps, double offset, RmsNormCastingMode mode)
    {
        var device = LigerRuntime.KernelDeviceFor(x, nameof(x));
        if (device is null)
        {
            LigerRuntime.Report("rms_norm_forward", ExecutionPath.TorchCpu);
            return ForwardTorch(x, weight, eps, offset, mode);
        }
        var y = Outputs.EmptyLike(x);
        var rstd = Outputs.Empty([x.shape[0]], ScalarType.Float32, x.device);
        if (x.shape[0] > 0)
        {
            bool vectorized = RowLaunch.Vectorizable(device, x.shape[1], x, weight);
            switch (x.dtype)
            {
                case ScalarType.Float32 when vectorized: LaunchForwardVectorized<float, Float32Codec, Float8, Float32x8Codec>(device, x, weight, y, rstd, eps, offset, mode); break;
                case ScalarType.Float32: LaunchForward<float, Float32Codec>(device, x, weight, y, rstd, eps, offset, mode); break;
                case ScalarType.BFloat16 when vectorized: LaunchForwardVectorized<ushort, BFloat16Codec, BFloat16x8, BFloat16x8Codec>(device, x, weight, y, rstd, eps, offset, mode); break;
                case ScalarType.BFloat16: LaunchForward<ushort, BFloat16Codec>(device, x, weight, y, rstd, eps, offset, mode); break;
                default: LaunchForward<ushort, Float16Codec>(device, x, weight, y, rstd, eps, offset, mode); break;
            }
        }
        LigerRuntime.Report("rms_norm_forward", device.IsCuda ? ExecutionPath.CudaKernel : ExecutionPath.EmulatedKernel);
        return (y, rstd);
    }

    /// <summary>Backward over rows: returns dx (R, H) in x's dtype and dW (H) in the weight's dtype.</summary>
    public static (Tensor Dx, Tensor Dw) Backward(Tensor dy, Tensor x, Tensor weight, Tensor rstd, double offset,
        RmsNormCastingMode mode, bool inPlace)
    {
        var device = LigerRuntime.KernelDeviceFor(x, nameof(x));
        if (device is null)
        {
            LigerRuntime.Report("rms_norm_backward", ExecutionPath.TorchCpu);
            return BackwardTorch(dy, x, weight, rstd, offset, mode, inPlace);
        }
        int rows = (int)x.shape[0], cols = (int)x.shape[1];
        var dx = inPlace ? dy : Outputs.EmptyLike(x);
        bool vectorized = RowLaunch.Vectorizable(device, cols, dy, x, weight, dx);
        // dW partials: in registers (vectorised) or shared memory (scalar, cols fp32 per group); a row
        // too long for shared memory leaves dW to torch ops.
        bool accumulate = vectorized || RowLaunch.SharedAccumulatorsFit(device, cols, 1);
        // Without partials, dW comes from torch ops over dy, which must run before dx overwrites dy.
        Tensor? dwFromTorch = accumulate || rows == 0 ? null : WeightGradTorch(dy, x, rstd, mode);
        Tensor? partials = rows == 0 ? null : x.dtype switch
        {
            ScalarType.Float32 when vectorized => LaunchBackwardVectorized<float, Float32Codec, Float8, Float32x8Codec>(device, dy, x, weight, rstd, dx, offset, mode),
            ScalarType.Float32 => LaunchBackward<float, Float32Codec>(device, dy, x, weight, rstd, dx, offset, mode, accumulate),
            ScalarType.BFloat16 when vectorized => LaunchBackwardVectorized<ushort, BFloat16Codec, BFloat16x8, BFloat16x8Codec>(device, dy, x, weight, rstd, dx, offset, mode),
            ScalarType.BFloat16 => LaunchBackward<ushort, BFloat16Codec>(device, dy, x, weight, rstd, dx, offset, mode, accumulate),
            _ => LaunchBackward<ushort, Float16Codec>(device, dy, x, weight, rstd, dx, offset, mode, accumulate),
        };
        Tensor dw = dwFromTorch ?? (partials is null ? zeros_like(weight) : partials.sum(dim: 0).to(weight.dtype));
        LigerRuntime.Report("rms_norm_backward", device.IsCuda ? ExecutionPath.CudaKernel : ExecutionPath.EmulatedKernel);
        return (dx, dw);
    }

    private static void LaunchForwardVectorized<T, TCodec, TVec, TVecCodec>(KernelDevice device, Tensor x, Tensor weight,
        Tensor y, Tensor rstd, double eps, double offset, RmsNormCastingMode mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        int rows = (int)x.shape[0], chunks = (int)x.shape[1] / 8;
        var kernel = device.Kernel<
            Action<ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<float>, int, int, int, float, float, SpecializedValue<int>>,
            Action<KernelConfig, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<float>, int, int, int, float, float, SpecializedValue<int>>>(
            RmsNormKernels.ForwardVectorized<T, TCodec, TVec, TVecCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        int group = device.GroupSizeFor(chunks);
        var (groups, rowsPerGroup) = device.PersistentGrid(rows, group);
        using var views = new TensorViews(device);
        kernel(new KernelConfig(groups, group),
            views.OfVectors<TVec>(x, nameof(x)), views.OfVectors<TVec>(weight, nameof(weight)), views.OfVectors<TVec>(y, "y"),
            views.Of<float>(rstd, "rstd"), rows, chunks, rowsPerGroup, (float)eps, (float)offset, SpecializedValue.New((int)mode));
    }

    private static void LaunchForward<T, TCodec>(KernelDevice device, Tensor x, Tensor weight, Tensor y, Tensor rstd,
        double eps, double offset, RmsNormCastingMode mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        int cols = (int)x.shape[1];
        var kernel = device.Kernel<
            Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<float>, int, float, float, int>,
            Action<KernelConfig, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<float>, int, float, float, int>>(
            RmsNormKernels.Forward<T, TCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        using var views = new TensorViews(device);
        kernel(new KernelConfig((int)x.shape[0], device.GroupSizeFor((cols + 3) / 4)),
            views.Of<T>(x, nameof(x)), views.Of<T>(weight, nameof(weight)), views.Of<T>(y, "y"),
            views.Of<float>(rstd, "rstd"), cols, (float)eps, (float)offset, (int)mode);
    }

    /// <summary>Launches the vectorised backward; returns the fp32 dW partials, one row per group.</summary>
    private static Tensor LaunchBackwardVectorized<T, TCodec, TVec, TVecCodec>(KernelDevice device, Tensor dy, Tensor x,
        Tensor weight, Tensor rstd, Tensor dx, double offset, RmsNormCastingMode mode)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        int rows = (int)x.shape[0], cols = (int)x.shape[1];
        var kernel = device.Kernel<
            Action<ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<float>, ArrayView<TVec>, ArrayView<Float8>, int, int, int, float, SpecializedValue<int>>,
            Action<KernelConfig, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<float>, ArrayView<TVec>, ArrayView<Float8>, int, int, int, float, SpecializedValue<int>>>(
            RmsNormKernels.BackwardVectorized<T, TCodec, TVec, TVecCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        int group = device.GroupSizeFor(cols / 8);
        var (groups, rowsPerGroup) = device.PersistentGrid(rows, group);
        var partials = Outputs.Empty([groups, cols], ScalarType.Float32, x.device);
        using var views = new TensorViews(device);
        kernel(new KernelConfig(groups, group),
            views.OfVectors<TVec>(dy, nameof(dy)), views.OfVectors<TVec>(x, nameof(x)), views.OfVectors<TVec>(weight, nameof(weight)),
            views.Of<float>(rstd, nameof(rstd)), views.OfVectors<TVec>(dx, nameof(dx)), views.OfVectors<Float8>(partials, "partials"),
            rows, cols / 8, rowsPerGroup, (float)offset, SpecializedValue.New((int)mode));
        return partials;
    }

    /// <summary>Launches the scalar backward; returns the fp32 dW partials (one row per group, or unused when not accumulating).</summary>
    private static Tensor LaunchBackward<T, TCodec>(KernelDevice device, Tensor dy, Tensor x, Tensor weight, Tensor rstd,
        Tensor dx, double offset, RmsNormCastingMode mode, bool accumulate)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        int rows = (int)x.shape[0], cols = (int)x.shape[1];
        var kernel = device.Kernel<
            Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<float>, ArrayView<T>, ArrayView<float>, int, int, int, float, int, int>,
            Action<KernelConfig, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<float>, ArrayView<T>, ArrayView<float>, int, int, int, float, int, int>>(
            RmsNormKernels.Backward<T, TCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        int group = device.GroupSizeFor((cols + 3) / 4);
        int sharedBytes = accumulate ? cols * sizeof(float) : sizeof(float);
        var (groups, rowsPerGroup) = device.PersistentGrid(rows, group);
        var partials = Outputs.Empty(accumulate ? [groups, cols] : [1], ScalarType.Float32, x.device);
        using var views = new TensorViews(device);
        kernel(new KernelConfig(groups, group, SharedMemoryConfig.RequestDynamic<float>(sharedBytes / sizeof(float))),
            views.Of<T>(dy, nameof(dy)), views.Of<T>(x, nameof(x)), views.Of<T>(weight, nameof(weight)),
            views.Of<float>(rstd, nameof(rstd)), views.Of<T>(dx, nameof(dx)), views.Of<float>(partials, "partials"),
            rows, cols, rowsPerGroup, (float)offset, (int)mode, accumulate ? 1 : 0);
        return partials;
    }

    // ---- TorchSharp path: the same math with torch ops, saving the same tensors (x, weight, rstd). ----

    internal static (Tensor Y, Tensor Rstd) ForwardTorch(Tensor x, Tensor weight, double eps, double offset, RmsNormCastingMode mode)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var rstd = rsqrt(xf.Squared().mean([-1L]).Plus(eps));
        var r = rstd.unsqueeze(-1);
        Tensor y = mode switch
        {
            RmsNormCastingMode.Gemma => (xf * r * weight.to(ScalarType.Float32).Plus(offset)).to(x.dtype),
            RmsNormCastingMode.Llama => (xf * r).to(x.dtype) * weight.Plus(offset),
            _ => x * r.to(x.dtype) * weight.Plus(offset),
        };
        return (y.MoveToOuterDisposeScope(), rstd.MoveToOuterDisposeScope());
    }

    internal static (Tensor Dx, Tensor Dw) BackwardTorch(Tensor dy, Tensor x, Tensor weight, Tensor rstd, double offset,
        RmsNormCastingMode mode, bool inPlace)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var r = rstd.unsqueeze(-1);
        var m = mode == RmsNormCastingMode.Gemma
            ? dy.to(ScalarType.Float32) * weight.to(ScalarType.Float32).Plus(offset)
            : (dy * weight.Plus(offset)).to(ScalarType.Float32);
        var dot = (m * xf).sum([-1L], keepdim: true);
        var dx = (r * (m - (r * r * dot).DividedBy(x.shape[1]) * xf)).to(x.dtype);
        var dw = WeightGradTorch(dy, x, rstd, mode); // before dy may be overwritten below
        if (inPlace)
            dx = dy.copy_(dx);
        return (dx.MoveToOuterDisposeScope(), dw.MoveToOuterDisposeScope());
    }

    internal static Tensor WeightGradTorch(Tensor dy, Tensor x, Tensor rstd, RmsNormCastingMode mode)
    {
        using var scope = NewDisposeScope();
        var r = rstd.unsqueeze(-1);
        var xf = x.to(ScalarType.Float32);
        Tensor contribution = mode switch
        {
            RmsNormCastingMode.Gemma => dy.to(ScalarType.Float32) * (xf * r),
            RmsNormCastingMode.Llama => (dy * (xf * r).to(x.dtype)).to(ScalarType.Float32),
            _ => (dy * (x * r.to(x.dtype))).to(ScalarType.Float32),
        };
        return contribution.sum(dim: 0).to(x.dtype).MoveToOuterDisposeScope();
    }
}
