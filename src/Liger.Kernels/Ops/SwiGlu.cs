using ILGPU;
using ILGPU.Runtime;
using Liger.Kernels.Kernels;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Ops;

/// <summary>
/// silu(a) * b as a differentiable function (the gate of SwiGLU MLPs). The forward saves only a and b;
/// the backward recomputes silu(a) in the kernel.
/// </summary>
public static class LigerSiLUMulFunction
{
    /// <summary>Applies silu(a) * b elementwise. a and b: same shape, dtype and device, contiguous.</summary>
    /// <param name="a">The gate input (gate_proj's output).</param>
    /// <param name="b">The value input (up_proj's output).</param>
    /// <param name="inPlaceBackward">Write da and db into a's and b's buffers, as Liger-Kernel does: no extra
    /// memory in the backward, but a and b are destroyed, so only for intermediates nothing else reads
    /// (as inside <see cref="Modules.LigerSwiGLUMLP"/>).</param>
    public static Tensor Apply(Tensor a, Tensor b, bool inPlaceBackward = false)
    {
        SwiGluOp.Validate(a, b);
        return AutogradOutputCache.Release(SwiGluAutograd.apply(a, b, inPlaceBackward))[0];
    }
}

/// <summary>The autograd node of <see cref="LigerSiLUMulFunction"/>.</summary>
internal sealed class SwiGluAutograd : autograd.MultiTensorFunction<SwiGluAutograd>
{
    public override string Name => "LigerSiLUMulBackward";

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradOutputCache.Track(ctx);
        var (a, b) = ((Tensor)vars[0], (Tensor)vars[1]);
        ctx.save_for_backward([a, b]);
        ctx.save_data("inPlace", (bool)vars[2]);
        return [SwiGluOp.Forward(a, b)];
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grads)
    {
        var saved = ctx.get_saved_variables();
        if (grads[0] is null || grads[0].IsInvalid)
            return [null!, null!, null!]; // the output took no part in the loss
        var (da, db) = SwiGluOp.Backward(grads[0].contiguous(), saved[0], saved[1], (bool)ctx.get_data("inPlace"));
        return [da, db, null!];
    }
}

/// <summary>Host side of SwiGLU: argument checks, kernel launches, and the TorchSharp CPU path.</summary>
public static class SwiGluOp
{
    internal static void Validate(Tensor a, Tensor b)
    {
        TensorChecks.NotNull(a, nameof(a));
        TensorChecks.NotNull(b, nameof(b));
        TensorChecks.FloatingPoint(a, nameof(a));
        TensorChecks.Contiguous(a, nameof(a));
        TensorChecks.Contiguous(b, nameof(b));
        TensorChecks.SameDtype(b, nameof(b), a, nameof(a));
        TensorChecks.SameDevice(b, nameof(b), a, nameof(a));
        TensorChecks.SameShape(b, nameof(b), a, nameof(a));
        LigerRuntime.KernelDeviceFor(a, nameof(a));
    }

    /// <summary>c = silu(a) * b.</summary>
    public static Tensor Forward(Tensor a, Tensor b)
    {
        var device = LigerRuntime.KernelDeviceFor(a, nameof(a));
        if (device is null)
        {
            LigerRuntime.Report("silu_mul_forward", ExecutionPath.TorchCpu);
            if (!SwiGluCpu.Applies(a, b))
                return nn.functional.silu(a) * b;
            var fused = empty_like(a);
            SwiGluCpu.Forward(a, b, fused);
            return fused;
        }
        var c = Outputs.EmptyLike(a);
        if (a.numel() > 0)
        {
            bool vectorized = Vectorizable(a, b, c);
            switch (a.dtype)
            {
                case ScalarType.Float32 when vectorized: LaunchForwardVectorized<float, Float32Codec, Float8, Float32x8Codec>(device, a, b, c); break;
                case ScalarType.BFloat16 when vectorized: LaunchForwardVectorized<ushort, BFloat16Codec, BFloat16x8, BFloat16x8Codec>(device, a, b, c); break;
                case ScalarType.Float32: LaunchForward<float, Float32Codec>(device, a, b, c); break;
                case ScalarType.BFloat16: LaunchForward<ushort, BFloat16Codec>(device, a, b, c); break;
                default: LaunchForward<ushort, Float16Codec>(device, a, b, c); break;
            }
        }
        LigerRuntime.Report("silu_mul_forward", device.IsCuda ? ExecutionPath.CudaKernel : ExecutionPath.EmulatedKernel);
        return c;
    }

    /// <summary>da, db from dc; written into a and b when <paramref name="inPlace"/>.</summary>
    public static (Tensor Da, Tensor Db) Backward(Tensor dc, Tensor a, Tensor b, bool inPlace)
    {
        var device = LigerRuntime.KernelDeviceFor(a, nameof(a));
        if (device is null)
        {
            LigerRuntime.Report("silu_mul_backward", ExecutionPath.TorchCpu);
            return BackwardTorch(dc, a, b, inPlace);
        }
        var da = inPlace ? a : Outputs.EmptyLike(a);
        var db = inPlace ? b : Outputs.EmptyLike(b);
        if (a.numel() > 0)
        {
            TensorChecks.SameShape(dc, nameof(dc), a, nameof(a));
            bool vectorized = Vectorizable(dc, a, b, da, db);
            switch (a.dtype)
            {
                case ScalarType.Float32 when vectorized: LaunchBackwardVectorized<float, Float32Codec, Float8, Float32x8Codec>(device, dc, a, b, da, db); break;
                case ScalarType.BFloat16 when vectorized: LaunchBackwardVectorized<ushort, BFloat16Codec, BFloat16x8, BFloat16x8Codec>(device, dc, a, b, da, db); break;
                case ScalarType.Float32: LaunchBackward<float, Float32Codec>(device, dc, a, b, da, db); break;
                case ScalarType.BFloat16: LaunchBackward<ushort, BFloat16Codec>(device, dc, a, b, da, db); break;
                default: LaunchBackward<ushort, Float16Codec>(device, dc, a, b, da, db); break;
            }
        }
        LigerRuntime.Report("silu_mul_backward", device.IsCuda ? ExecutionPath.CudaKernel : ExecutionPath.EmulatedKernel);
        return (da, db);
    }

    /// <summary>A grid-stride launch shape for n elements: enough groups to fill the device, no more.</summary>
    private static KernelConfig ElementwiseConfig(KernelDevice device, long n)
    {
        int group = device.GroupSizeFor(n, preferredMax: 256);
        long wanted = (n + group - 1) / group;
        long cap = device.IsCuda ? device.Multiprocessors * 8L : 8L;
        return new KernelConfig((int)Math.Clamp(wanted, 1, cap), group);
    }

    /// <summary>Vector kernels need whole 8-element chunks and 16-byte aligned data; float16 stays scalar.</summary>
    private static bool Vectorizable(params Tensor[] tensors) =>
        tensors[0].dtype != ScalarType.Float16 && tensors[0].numel() % 8 == 0 && TensorViews.VectorFriendly(tensors);

    private static void LaunchForwardVectorized<T, TCodec, TVec, TVecCodec>(KernelDevice device, Tensor a, Tensor b, Tensor c)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        var kernel = device.Kernel<Action<ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, long>,
            Action<KernelConfig, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, long>>(
            SwiGluKernels.ForwardVectorized<T, TCodec, TVec, TVecCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        using var views = new TensorViews(device);
        long chunks = a.numel() / 8;
        kernel(ElementwiseConfig(device, chunks), views.OfVectors<TVec>(a, nameof(a)), views.OfVectors<TVec>(b, nameof(b)),
            views.OfVectors<TVec>(c, nameof(c)), chunks);
    }

    private static void LaunchBackwardVectorized<T, TCodec, TVec, TVecCodec>(KernelDevice device, Tensor dc, Tensor a, Tensor b, Tensor da, Tensor db)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        var kernel = device.Kernel<Action<ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, long>,
            Action<KernelConfig, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, long>>(
            SwiGluKernels.BackwardVectorized<T, TCodec, TVec, TVecCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        using var views = new TensorViews(device);
        long chunks = a.numel() / 8;
        kernel(ElementwiseConfig(device, chunks), views.OfVectors<TVec>(dc, nameof(dc)), views.OfVectors<TVec>(a, nameof(a)),
            views.OfVectors<TVec>(b, nameof(b)), views.OfVectors<TVec>(da, nameof(da)), views.OfVectors<TVec>(db, nameof(db)), chunks);
    }

    private static void LaunchForward<T, TCodec>(KernelDevice device, Tensor a, Tensor b, Tensor c)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        var kernel = device.Kernel<Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, long>,
            Action<KernelConfig, ArrayView<T>, ArrayView<T>, ArrayView<T>, long>>(
            SwiGluKernels.Forward<T, TCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        using var views = new TensorViews(device);
        kernel(ElementwiseConfig(device, a.numel()), views.Of<T>(a, nameof(a)), views.Of<T>(b, nameof(b)),
            views.Of<T>(c, nameof(c)), a.numel());
    }

    private static void LaunchBackward<T, TCodec>(KernelDevice device, Tensor dc, Tensor a, Tensor b, Tensor da, Tensor db)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        var kernel = device.Kernel<Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, long>,
            Action<KernelConfig, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, long>>(
            SwiGluKernels.Backward<T, TCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        using var views = new TensorViews(device);
        kernel(ElementwiseConfig(device, a.numel()), views.Of<T>(dc, nameof(dc)), views.Of<T>(a, nameof(a)),
            views.Of<T>(b, nameof(b)), views.Of<T>(da, nameof(da)), views.Of<T>(db, nameof(db)), a.numel());
    }

    // ---- CPU path: fused loops for float32 (SwiGluCpu), else torch ops rounding where the eager graph rounds. ----

    /// <summary>
    /// db = dc * silu(a); da = silu'(a) * (dc * b). silu is recomputed (only a and b were saved) and da
    /// comes from torch's own fused silu backward, reached by differentiating the recomputed silu: four
    /// tensor passes against eager's three (eager kept silu(a) alive instead).
    /// </summary>
    internal static (Tensor Da, Tensor Db) BackwardTorch(Tensor dc, Tensor a, Tensor b, bool inPlace)
    {
        if (SwiGluCpu.Applies(dc, a, b))
        {
            var (fusedDa, fusedDb) = inPlace ? (a, b) : (empty_like(a), empty_like(b));
            SwiGluCpu.Backward(dc, a, b, fusedDa, fusedDb);
            return (fusedDa, fusedDb);
        }
        using var scope = NewDisposeScope();
        Tensor silu, da;
        using (enable_grad())
        {
            var leaf = a.detach().requires_grad_(true);
            silu = nn.functional.silu(leaf);
            da = autograd.grad([silu], [leaf], [dc * b])[0];
        }
        var db = dc * silu.detach();
        if (inPlace)
        {
            da = a.copy_(da);
            db = b.copy_(db);
        }
        return (da.MoveToOuterDisposeScope(), db.MoveToOuterDisposeScope());
    }
}
