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
        return RmsNormAutograd.apply(x, weight, eps, offset, castingMode, inPlaceBackward)[0];
    }
}

/// <summary>The autograd node of <see cref="LigerRMSNormFunction"/>.</summary>
internal sealed class RmsNormAutograd : autograd.MultiTensorFunction<RmsNormAutograd>
{
    public override string Name => "LigerRMSNormBackward";

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
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

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grads)
    {
        var saved = ctx.get_saved_variables();
        var (x, weight, rstd) = (saved[0], saved[1], saved[2]);
        long cols = x.shape[^1];
        var dy = grads[0].contiguous().view(-1, cols);
        var (dx, dw) = RmsNormOp.Backward(dy, x.view(-1, cols), weight, rstd,
            (double)ctx.get_data("offset"), (RmsNormCastingMode)ctx.get_data("mode"), (bool)ctx.get_data("inPlace"));
        return [dx.view(x.shape), dw, null!, null!, null!, null!];
    }
}

/// <summary>Host side of RMSNorm: argument checks, kernel launches, and the TorchSharp CPU path.</summary>
public static class RmsNormOp
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
            switch (x.dtype)
            {
                case ScalarType.Float32: LaunchForward<float, Float32Codec>(device, x, weight, y, rstd, eps, offset, mode); break;
                case ScalarType.BFloat16: LaunchForward<ushort, BFloat16Codec>(device, x, weight, y, rstd, eps, offset, mode); break;
                default: LaunchForward<ILGPU.Half, Float16Codec>(device, x, weight, y, rstd, eps, offset, mode); break;
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
        int group = device.GroupSizeFor((cols + 3) / 4);
        int maxGroups = device.IsCuda ? device.Multiprocessors * Math.Max(1, 2048 / group) : 4;
        int rowsPerGroup = Math.Max(1, (rows + maxGroups - 1) / maxGroups);
        int groups = Math.Max(1, (rows + rowsPerGroup - 1) / rowsPerGroup);
        // dW partials live in shared memory (cols fp32 per group); beyond that, dW comes from torch ops.
        bool accumulate = (long)cols * sizeof(float) + 256 <= device.MaxSharedMemoryPerGroup;
        var partials = Outputs.Empty(accumulate ? [groups, cols] : [1], ScalarType.Float32, x.device);
        if (rows > 0)
        {
            var shape = new BackwardShape(rows, cols, rowsPerGroup, groups, group, accumulate);
            switch (x.dtype)
            {
                case ScalarType.Float32: LaunchBackward<float, Float32Codec>(device, dy, x, weight, rstd, dx, partials, offset, mode, shape); break;
                case ScalarType.BFloat16: LaunchBackward<ushort, BFloat16Codec>(device, dy, x, weight, rstd, dx, partials, offset, mode, shape); break;
                default: LaunchBackward<ILGPU.Half, Float16Codec>(device, dy, x, weight, rstd, dx, partials, offset, mode, shape); break;
            }
        }
        Tensor dw = rows == 0 ? zeros_like(weight)
            : accumulate ? partials.sum(dim: 0).to(weight.dtype)
            : WeightGradTorch(dy, x, rstd, mode);
        LigerRuntime.Report("rms_norm_backward", device.IsCuda ? ExecutionPath.CudaKernel : ExecutionPath.EmulatedKernel);
        return (dx, dw);
    }

    private readonly record struct BackwardShape(int Rows, int Cols, int RowsPerGroup, int Groups, int GroupSize, bool Accumulate);

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
        var config = new KernelConfig((int)x.shape[0], device.GroupSizeFor((cols + 3) / 4));
        kernel(config, views.Of<T>(x, nameof(x)), views.Of<T>(weight, nameof(weight)), views.Of<T>(y, "y"),
            views.Of<float>(rstd, "rstd"), cols, (float)eps, (float)offset, (int)mode);
    }

    private static void LaunchBackward<T, TCodec>(KernelDevice device, Tensor dy, Tensor x, Tensor weight, Tensor rstd,
        Tensor dx, Tensor partials, double offset, RmsNormCastingMode mode, BackwardShape s)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        var kernel = device.Kernel<
            Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<float>, ArrayView<T>, ArrayView<float>, int, int, int, float, int, int>,
            Action<KernelConfig, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<float>, ArrayView<T>, ArrayView<float>, int, int, int, float, int, int>>(
            RmsNormKernels.Backward<T, TCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        using var views = new TensorViews(device);
        var config = new KernelConfig(s.Groups, s.GroupSize, SharedMemoryConfig.RequestDynamic<float>(s.Accumulate ? s.Cols : 1));
        kernel(config, views.Of<T>(dy, nameof(dy)), views.Of<T>(x, nameof(x)), views.Of<T>(weight, nameof(weight)),
            views.Of<float>(rstd, nameof(rstd)), views.Of<T>(dx, nameof(dx)), views.Of<float>(partials, "partials"),
            s.Rows, s.Cols, s.RowsPerGroup, (float)offset, (int)mode, s.Accumulate ? 1 : 0);
    }

    // ---- TorchSharp path: the same math with torch ops, saving the same tensors (x, weight, rstd). ----

    internal static (Tensor Y, Tensor Rstd) ForwardTorch(Tensor x, Tensor weight, double eps, double offset, RmsNormCastingMode mode)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var rstd = rsqrt(xf.square().mean([-1L]) + eps);
        var r = rstd.unsqueeze(-1);
        Tensor y = mode switch
        {
            RmsNormCastingMode.Gemma => (xf * r * (weight.to(ScalarType.Float32) + offset)).to(x.dtype),
            RmsNormCastingMode.Llama => (xf * r).to(x.dtype) * (weight + offset),
            _ => x * r.to(x.dtype) * (weight + offset),
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
            ? dy.to(ScalarType.Float32) * (weight.to(ScalarType.Float32) + offset)
            : (dy * (weight + offset)).to(ScalarType.Float32);
        var dot = (m * xf).sum([-1L], keepdim: true);
        var dx = (r * (m - r * r * dot / x.shape[1] * xf)).to(x.dtype);
        if (inPlace)
            dx = dy.copy_(dx);
        var dw = WeightGradTorch(dy, x, rstd, mode);
        return (dx.MoveToOuterDisposeScope(), dw.MoveToOuterDisposeScope());
    }

    private static Tensor WeightGradTorch(Tensor dy, Tensor x, Tensor rstd, RmsNormCastingMode mode)
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
