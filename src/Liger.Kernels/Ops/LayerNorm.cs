using ILGPU;
using ILGPU.Runtime;
using Liger.Kernels.Kernels;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Ops;

/// <summary>
/// Liger LayerNorm as a differentiable function: y = (x - mean) / sqrt(var + eps) * weight + bias over the
/// last dimension, as torch's <c>nn.functional.layer_norm</c> (biased variance; fp32 statistics and one
/// rounding of y for 16-bit inputs). The forward saves x, weight and the fp32 mean and rstd per row; the
/// backward computes dx in one kernel and dW, dB from per-group partial sums.
/// </summary>
public static class LigerLayerNormFunction
{
    /// <summary>Applies LayerNorm. x: (..., H) contiguous float32/bfloat16/float16; weight and bias: (H) of x's dtype and device.</summary>
    /// <param name="x">Input, normalised over its last dimension.</param>
    /// <param name="weight">Scale, one per feature.</param>
    /// <param name="bias">Shift, one per feature; null for a LayerNorm without bias (torch's <c>bias=False</c>).</param>
    /// <param name="eps">Added to the variance; must be finite and non-negative.</param>
    public static Tensor Apply(Tensor x, Tensor weight, Tensor? bias, double eps = 1e-5)
    {
        LayerNormOp.Validate(x, weight, bias, eps);
        if (x.shape[^1] == 0)
            return EmptyRows.Normalized(x, weight, bias); // torch's empty result (rows of no feature cannot be viewed as (-1, 0))
        return AutogradOutputCache.Release(LayerNormAutograd.apply(x, weight, bias, eps))[0];
    }
}

/// <summary>The autograd node of <see cref="LigerLayerNormFunction"/>.</summary>
internal sealed class LayerNormAutograd : autograd.MultiTensorFunction<LayerNormAutograd>
{
    public override string Name => "LigerLayerNormBackward";

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradOutputCache.Track(ctx, Name, vars);
        var (x, weight, bias, eps) = ((Tensor)vars[0], (Tensor)vars[1], vars[2] as Tensor, (double)vars[3]);
        long cols = x.shape[^1];
        using var rows = x.view(-1, cols);
        var (y, mean, rstd) = LayerNormOp.Forward(rows, weight, bias, eps);
        ctx.save_for_backward([x, weight, mean, rstd]);
        ctx.save_data("hasBias", bias is not null);
        return [y.view(x.shape)];
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grads) =>
        BackwardLifetime.Run(ctx, grads, incoming => Backward(ctx, incoming));

    private static List<Tensor> Backward(autograd.AutogradContext ctx, List<Tensor> grads)
    {
        if (grads[0] is null || grads[0].IsInvalid)
            return [null!, null!, null!, null!]; // the output took no part in the loss
        var saved = ctx.get_saved_variables();
        var (x, weight, mean, rstd) = (saved[0], saved[1], saved[2], saved[3]);
        long cols = x.shape[^1];
        var dy = grads[0].contiguous().view(-1, cols);
        var (dx, dw, db) = LayerNormOp.Backward(dy, x.view(-1, cols), weight, mean, rstd, (bool)ctx.get_data("hasBias"));
        return [dx.view(x.shape), dw, db!, null!];
    }
}

/// <summary>Host side of LayerNorm: argument checks, kernel launches, and the CPU paths.</summary>
internal static class LayerNormOp
{

    internal static void Validate(Tensor x, Tensor weight, Tensor? bias, double eps)
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
        if (bias is not null)
        {
            if (bias.IsInvalid)
                throw new ArgumentException($"'{nameof(bias)}' must be a live tensor or null (no bias).", nameof(bias));
            TensorChecks.SameDtype(bias, nameof(bias), x, nameof(x));
            TensorChecks.SameDevice(bias, nameof(bias), x, nameof(x));
            TensorChecks.Shape(bias, nameof(bias), x.shape[^1]);
            TensorChecks.Contiguous(bias, nameof(bias));
        }
        TensorChecks.Finite(eps, nameof(eps), min: 0);
        LigerRuntime.KernelDeviceFor(x, nameof(x)); // rejects devices we cannot run on, with the argument's name
    }

    /// <summary>Forward over rows (R, H): returns y (R, H) and the fp32 mean (R) and rstd (R).</summary>
    public static (Tensor Y, Tensor Mean, Tensor Rstd) Forward(Tensor x, Tensor weight, Tensor? bias, double eps)
    {
        var device = LigerRuntime.KernelDeviceFor(x, nameof(x));
        if (device is null)
        {
            LigerRuntime.Report("layer_norm_forward", ExecutionPath.TorchCpu);
            return ForwardCpu(x, weight, bias, eps);
        }
        var y = Outputs.EmptyLike(x);
        var mean = Outputs.Empty([x.shape[0]], ScalarType.Float32, x.device);
        var rstd = Outputs.Empty([x.shape[0]], ScalarType.Float32, x.device);
        if (x.shape[0] > 0)
        {
            bool vectorized = bias is null
                ? RowLaunch.Vectorizable(device, x.shape[1], x, weight, y)
                : RowLaunch.Vectorizable(device, x.shape[1], x, weight, bias, y);
            switch (x.dtype)
            {
                case ScalarType.Float32 when vectorized: LaunchForwardVectorized<float, Float32Codec, Float8, Float32x8Codec>(device, x, weight, bias, y, mean, rstd, eps); break;
                case ScalarType.Float32: LaunchForward<float, Float32Codec>(device, x, weight, bias, y, mean, rstd, eps); break;
                case ScalarType.BFloat16 when vectorized: LaunchForwardVectorized<ushort, BFloat16Codec, BFloat16x8, BFloat16x8Codec>(device, x, weight, bias, y, mean, rstd, eps); break;
                case ScalarType.BFloat16: LaunchForward<ushort, BFloat16Codec>(device, x, weight, bias, y, mean, rstd, eps); break;
                default: LaunchForward<ushort, Float16Codec>(device, x, weight, bias, y, mean, rstd, eps); break;
            }
        }
        LigerRuntime.Report("layer_norm_forward", device.IsCuda ? ExecutionPath.CudaKernel : ExecutionPath.EmulatedKernel);
        return (y, mean, rstd);
    }

    /// <summary>
    /// Backward over rows: returns dx (R, H) in x's dtype, dW (H) and, when <paramref name="hasBias"/>,
    /// dB (H) in the weight's dtype (null otherwise).
    /// </summary>
    public static (Tensor Dx, Tensor Dw, Tensor? Db) Backward(Tensor dy, Tensor x, Tensor weight, Tensor mean, Tensor rstd, bool hasBias)
    {
        var device = LigerRuntime.KernelDeviceFor(x, nameof(x));
        if (device is null)
        {
            LigerRuntime.Report("layer_norm_backward", ExecutionPath.TorchCpu);
            return BackwardCpu(dy, x, weight, mean, rstd, hasBias);
        }
        int rows = (int)x.shape[0], cols = (int)x.shape[1];
        TensorChecks.SameShape(dy, nameof(dy), x, nameof(x));
        var dx = Outputs.EmptyLike(x);
        bool vectorized = RowLaunch.VectorizableUpTo(device, RowLaunch.MaxChunksOfHeavyKernels, cols, dy, x, weight, dx);
        // Partials in registers (vectorised) or shared memory (scalar, one or two fp32 rows per group);
        // rows too long for shared memory leave dW and dB to torch ops.
        bool accumulate = vectorized || RowLaunch.SharedAccumulatorsFit(device, cols, hasBias ? 2 : 1);
        (Tensor W, Tensor B)? partials = rows == 0 ? null : x.dtype switch
        {
            ScalarType.Float32 when vectorized => LaunchBackwardVectorized<float, Float32Codec, Float8, Float32x8Codec>(device, dy, x, weight, mean, rstd, dx, hasBias),
            ScalarType.Float32 => LaunchBackward<float, Float32Codec>(device, dy, x, weight, mean, rstd, dx, hasBias, accumulate),
            ScalarType.BFloat16 when vectorized => LaunchBackwardVectorized<ushort, BFloat16Codec, BFloat16x8, BFloat16x8Codec>(device, dy, x, weight, mean, rstd, dx, hasBias),
            ScalarType.BFloat16 => LaunchBackward<ushort, BFloat16Codec>(device, dy, x, weight, mean, rstd, dx, hasBias, accumulate),
            _ => LaunchBackward<ushort, Float16Codec>(device, dy, x, weight, mean, rstd, dx, hasBias, accumulate),
        };
        Tensor dw;
        Tensor? db;
        if (partials is null)
            (dw, db) = (zeros_like(weight), hasBias ? zeros_like(weight) : null);
        else if (accumulate)
            (dw, db) = (partials.Value.W.sum(dim: 0).to(weight.dtype), hasBias ? partials.Value.B.sum(dim: 0).to(weight.dtype) : null);
        else
            (dw, db) = ParameterGradsTorch(dy, x, mean, rstd, hasBias);
        LigerRuntime.Report("layer_norm_backward", device.IsCuda ? ExecutionPath.CudaKernel : ExecutionPath.EmulatedKernel);
        return (dx, dw, db);
    }

    private static void LaunchForwardVectorized<T, TCodec, TVec, TVecCodec>(KernelDevice device, Tensor x, Tensor weight,
        Tensor? bias, Tensor y, Tensor mean, Tensor rstd, double eps)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        int rows = (int)x.shape[0], chunks = (int)x.shape[1] / 8;
        var kernel = device.Kernel<
            Action<ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<float>, ArrayView<float>, int, int, int, float, SpecializedValue<int>>,
            Action<KernelConfig, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<float>, ArrayView<float>, int, int, int, float, SpecializedValue<int>>>(
            LayerNormKernels.ForwardVectorized<T, TCodec, TVec, TVecCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        int group = device.GroupSizeFor(chunks);
        var (groups, rowsPerGroup) = device.PersistentGrid(rows, group);
        using var views = new TensorViews(device);
        var weightView = views.OfVectors<TVec>(weight, nameof(weight));
        kernel(new KernelConfig(groups, group),
            views.OfVectors<TVec>(x, nameof(x)), weightView, bias is null ? weightView : views.OfVectors<TVec>(bias, nameof(bias)),
            views.OfVectors<TVec>(y, "y"), views.Of<float>(mean, "mean"), views.Of<float>(rstd, "rstd"),
            rows, chunks, rowsPerGroup, (float)eps, SpecializedValue.New(bias is null ? 0 : 1));
    }

    private static void LaunchForward<T, TCodec>(KernelDevice device, Tensor x, Tensor weight, Tensor? bias, Tensor y,
        Tensor mean, Tensor rstd, double eps)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        int cols = (int)x.shape[1];
        var kernel = device.Kernel<
            Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<float>, ArrayView<float>, int, float, int>,
            Action<KernelConfig, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<float>, ArrayView<float>, int, float, int>>(
            LayerNormKernels.Forward<T, TCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        using var views = new TensorViews(device);
        var weightView = views.Of<T>(weight, nameof(weight));
        kernel(new KernelConfig((int)x.shape[0], device.GroupSizeFor((cols + 3) / 4)),
            views.Of<T>(x, nameof(x)), weightView, bias is null ? weightView : views.Of<T>(bias, nameof(bias)), views.Of<T>(y, "y"),
            views.Of<float>(mean, "mean"), views.Of<float>(rstd, "rstd"), cols, (float)eps, bias is null ? 0 : 1);
    }

    /// <summary>Launches the vectorised backward; returns the fp32 dW and dB partials, one row per group (dB unused without bias).</summary>
    private static (Tensor W, Tensor B) LaunchBackwardVectorized<T, TCodec, TVec, TVecCodec>(KernelDevice device, Tensor dy,
        Tensor x, Tensor weight, Tensor mean, Tensor rstd, Tensor dx, bool hasBias)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        int rows = (int)x.shape[0], cols = (int)x.shape[1];
        var kernel = device.Kernel<
            Action<ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<float>, ArrayView<float>, ArrayView<TVec>, ArrayView<Float8>, ArrayView<Float8>, int, int, int, SpecializedValue<int>>,
            Action<KernelConfig, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<float>, ArrayView<float>, ArrayView<TVec>, ArrayView<Float8>, ArrayView<Float8>, int, int, int, SpecializedValue<int>>>(
            LayerNormKernels.BackwardVectorized<T, TCodec, TVec, TVecCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        int group = device.GroupSizeFor(cols / 8);
        var (groups, rowsPerGroup) = device.PersistentGrid(rows, group);
        var weightPartials = Outputs.Empty([groups, cols], ScalarType.Float32, x.device);
        var biasPartials = hasBias ? Outputs.Empty([groups, cols], ScalarType.Float32, x.device) : weightPartials;
        using var views = new TensorViews(device);
        var weightPartialsView = views.OfVectors<Float8>(weightPartials, "weightPartials");
        kernel(new KernelConfig(groups, group),
            views.OfVectors<TVec>(dy, nameof(dy)), views.OfVectors<TVec>(x, nameof(x)), views.OfVectors<TVec>(weight, nameof(weight)),
            views.Of<float>(mean, nameof(mean)), views.Of<float>(rstd, nameof(rstd)), views.OfVectors<TVec>(dx, nameof(dx)),
            weightPartialsView, hasBias ? views.OfVectors<Float8>(biasPartials, "biasPartials") : weightPartialsView,
            rows, cols / 8, rowsPerGroup, SpecializedValue.New(hasBias ? 1 : 0));
        return (weightPartials, biasPartials);
    }

    /// <summary>Launches the scalar backward; returns the fp32 partials (one row per group; unused when not accumulating).</summary>
    private static (Tensor W, Tensor B) LaunchBackward<T, TCodec>(KernelDevice device, Tensor dy, Tensor x, Tensor weight,
        Tensor mean, Tensor rstd, Tensor dx, bool hasBias, bool accumulate)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        int rows = (int)x.shape[0], cols = (int)x.shape[1];
        var kernel = device.Kernel<
            Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<float>, ArrayView<float>, ArrayView<T>, ArrayView<float>, ArrayView<float>, int, int, int, int, int>,
            Action<KernelConfig, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<float>, ArrayView<float>, ArrayView<T>, ArrayView<float>, ArrayView<float>, int, int, int, int, int>>(
            LayerNormKernels.Backward<T, TCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        int group = device.GroupSizeFor((cols + 3) / 4);
        int sharedFloats = accumulate ? (hasBias ? 2 : 1) * cols : 1;
        var (groups, rowsPerGroup) = device.PersistentGrid(rows, group);
        var weightPartials = Outputs.Empty(accumulate ? [groups, cols] : [1], ScalarType.Float32, x.device);
        var biasPartials = accumulate && hasBias ? Outputs.Empty([groups, cols], ScalarType.Float32, x.device) : weightPartials;
        using var views = new TensorViews(device);
        var weightPartialsView = views.Of<float>(weightPartials, "weightPartials");
        kernel(new KernelConfig(groups, group, SharedMemoryConfig.RequestDynamic<float>(sharedFloats)),
            views.Of<T>(dy, nameof(dy)), views.Of<T>(x, nameof(x)), views.Of<T>(weight, nameof(weight)),
            views.Of<float>(mean, nameof(mean)), views.Of<float>(rstd, nameof(rstd)), views.Of<T>(dx, nameof(dx)),
            weightPartialsView, ReferenceEquals(biasPartials, weightPartials) ? weightPartialsView : views.Of<float>(biasPartials, "biasPartials"),
            rows, cols, rowsPerGroup, hasBias ? 1 : 0, accumulate ? 1 : 0);
        return (weightPartials, biasPartials);
    }

    // ---- CPU paths: fused loops for float32 (LayerNormCpu), else torch ops; both save x, weight, mean, rstd. ----

    internal static (Tensor Y, Tensor Mean, Tensor Rstd) ForwardCpu(Tensor x, Tensor weight, Tensor? bias, double eps)
    {
        if (LayerNormCpu.Applies(bias is null ? [x, weight] : [x, weight, bias]))
        {
            var y = empty_like(x);
            var mean = empty(x.shape[0], ScalarType.Float32);
            var rstd = empty(x.shape[0], ScalarType.Float32);
            LayerNormCpu.Forward(x, weight, bias, y, mean, rstd, (float)eps);
            return (y, mean, rstd);
        }
        return ForwardTorch(x, weight, bias, eps);
    }

    internal static (Tensor Dx, Tensor Dw, Tensor? Db) BackwardCpu(Tensor dy, Tensor x, Tensor weight, Tensor mean, Tensor rstd, bool hasBias)
    {
        if (LayerNormCpu.Applies(dy, x, weight))
        {
            TensorChecks.SameShape(dy, nameof(dy), x, nameof(x));
            var dx = empty_like(x);
            var dw = empty_like(weight);
            var db = hasBias ? empty_like(weight) : null;
            LayerNormCpu.Backward(dy, x, weight, mean, rstd, dx, dw, db);
            return (dx, dw, db);
        }
        return BackwardTorch(dy, x, weight, mean, rstd, hasBias);
    }

    /// <summary>The forward in torch ops: fp32 statistics (the variance around the mean), y rounded once.</summary>
    internal static (Tensor Y, Tensor Mean, Tensor Rstd) ForwardTorch(Tensor x, Tensor weight, Tensor? bias, double eps)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var mean = xf.mean([-1L]);
        var centered = xf - mean.unsqueeze(-1);
        var rstd = rsqrt(centered.Squared().mean([-1L]).Plus(eps));
        var yf = centered * rstd.unsqueeze(-1) * weight.to(ScalarType.Float32);
        if (bias is not null)
            yf = yf.Plus(bias.to(ScalarType.Float32));
        return (yf.to(x.dtype).MoveToOuterDisposeScope(), mean.MoveToOuterDisposeScope(), rstd.MoveToOuterDisposeScope());
    }

    /// <summary>The backward in torch ops, all in fp32, each result rounded once.</summary>
    internal static (Tensor Dx, Tensor Dw, Tensor? Db) BackwardTorch(Tensor dy, Tensor x, Tensor weight, Tensor mean, Tensor rstd, bool hasBias)
    {
        using var scope = NewDisposeScope();
        var r = rstd.unsqueeze(-1);
        var xhat = (x.to(ScalarType.Float32) - mean.unsqueeze(-1)) * r;
        var wdy = dy.to(ScalarType.Float32) * weight.to(ScalarType.Float32);
        var c1 = (wdy * xhat).mean([-1L], keepdim: true);
        var c2 = wdy.mean([-1L], keepdim: true);
        var dx = ((wdy - (xhat * c1).Plus(c2)) * r).to(x.dtype);
        var (dw, db) = ParameterGradsTorch(dy, x, mean, rstd, hasBias);
        return (dx.MoveToOuterDisposeScope(), dw.MoveToOuterDisposeScope(), db?.MoveToOuterDisposeScope());
    }

    /// <summary>dW = Σ dy·xhat and dB = Σ dy over rows, in fp32, rounded to the weight's dtype.</summary>
    private static (Tensor Dw, Tensor? Db) ParameterGradsTorch(Tensor dy, Tensor x, Tensor mean, Tensor rstd, bool hasBias)
    {
        using var scope = NewDisposeScope();
        var dyf = dy.to(ScalarType.Float32);
        var xhat = (x.to(ScalarType.Float32) - mean.unsqueeze(-1)) * rstd.unsqueeze(-1);
        var dw = (dyf * xhat).sum(dim: 0).to(x.dtype);
        var db = hasBias ? dyf.sum(dim: 0).to(x.dtype) : null;
        return (dw.MoveToOuterDisposeScope(), db?.MoveToOuterDisposeScope());
    }
}
