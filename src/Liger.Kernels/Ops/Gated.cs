using ILGPU;
using ILGPU.Runtime;
using Liger.Kernels.Kernels;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Ops;

/// <summary>
/// The host half of a gated activation f in c = f(a) * b: what the CPU path needs. Its device half is an
/// <see cref="IGateActivation"/>; <see cref="GatedOp{TCpu, TActivation}"/> pairs the two.
/// </summary>
internal interface IGatedCpuActivation
{
    /// <summary>The op's name in <see cref="LigerRuntime.OpExecuted"/> reports, before "_forward" / "_backward".</summary>
    static abstract string Op { get; }

    /// <summary>f as torch's own op: the CPU path for tensors the fused loops do not take (16-bit dtypes).</summary>
    static abstract Tensor Torch(Tensor a);

    /// <summary>f(a) over one fp32 block, in torch's order of operations. <paramref name="value"/> and
    /// <paramref name="scratch"/> have a's length and may be overwritten freely.</summary>
    static abstract void Value(ReadOnlySpan<float> a, Span<float> value, Span<float> scratch);

    /// <summary>f(a) and f'(a) over one fp32 block, f' as torch's backward of f computes it.</summary>
    static abstract void ValueAndDerivative(ReadOnlySpan<float> a, Span<float> value, Span<float> derivative, Span<float> scratch);
}

/// <summary>
/// The host side every gated op shares (SwiGLU, GeGLU): argument checks, kernel launches, the fused fp32
/// CPU path (<see cref="GatedCpu"/>) and the torch-op CPU path. Only a and b are saved for the backward,
/// which recomputes f(a).
/// </summary>
/// <typeparam name="TCpu">The activation's host half.</typeparam>
/// <typeparam name="TActivation">The activation's device half.</typeparam>
internal static class GatedOp<TCpu, TActivation>
    where TCpu : IGatedCpuActivation where TActivation : struct, IGateActivation
{
    private static readonly string ForwardName = TCpu.Op + "_forward", BackwardName = TCpu.Op + "_backward";

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

    /// <summary>c = f(a) * b.</summary>
    internal static Tensor Forward(Tensor a, Tensor b)
    {
        var device = LigerRuntime.KernelDeviceFor(a, nameof(a));
        if (device is null)
        {
            LigerRuntime.Report(ForwardName, ExecutionPath.TorchCpu);
            if (!GatedCpu.Applies(a, b))
                return TCpu.Torch(a) * b;
            var fused = empty_like(a);
            GatedCpu.Forward<TCpu>(a, b, fused);
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
        LigerRuntime.Report(ForwardName, device.IsCuda ? ExecutionPath.CudaKernel : ExecutionPath.EmulatedKernel);
        return c;
    }

    /// <summary>da, db from dc; written into a and b when <paramref name="inPlace"/>.</summary>
    internal static (Tensor Da, Tensor Db) Backward(Tensor dc, Tensor a, Tensor b, bool inPlace)
    {
        var device = LigerRuntime.KernelDeviceFor(a, nameof(a));
        if (device is null)
        {
            LigerRuntime.Report(BackwardName, ExecutionPath.TorchCpu);
            return BackwardTorch(dc, a, b, inPlace);
        }
        var (da, db) = LaunchBackward(device, dc, a, b, inPlace, recompute: false);
        LigerRuntime.Report(BackwardName, device.IsCuda ? ExecutionPath.CudaKernel : ExecutionPath.EmulatedKernel);
        return (da, db);
    }

    /// <summary>
    /// da, db from dc, and c = f(a) * b recomputed as the forward computed it: for a linear layer after the gate that
    /// did not keep c. On a device the kernel writes c over <paramref name="dc"/> (returned as C) in the same pass;
    /// on the CPU C is a new tensor computed before the backward.
    /// </summary>
    internal static (Tensor Da, Tensor Db, Tensor C) BackwardRecomputing(Tensor dc, Tensor a, Tensor b, bool inPlace)
    {
        var device = LigerRuntime.KernelDeviceFor(a, nameof(a));
        if (device is null)
        {
            var c = Forward(a, b);   // before the backward, which may overwrite a and b
            LigerRuntime.Report(BackwardName, ExecutionPath.TorchCpu);
            var (cpuDa, cpuDb) = BackwardTorch(dc, a, b, inPlace);
            return (cpuDa, cpuDb, c);
        }
        var (da, db) = LaunchBackward(device, dc, a, b, inPlace, recompute: true);
        LigerRuntime.Report(BackwardName, device.IsCuda ? ExecutionPath.CudaKernel : ExecutionPath.EmulatedKernel);
        return (da, db, dc);
    }

    private static (Tensor Da, Tensor Db) LaunchBackward(KernelDevice device, Tensor dc, Tensor a, Tensor b, bool inPlace, bool recompute)
    {
        var da = inPlace ? a : Outputs.EmptyLike(a);
        var db = inPlace ? b : Outputs.EmptyLike(b);
        if (a.numel() == 0)
            return (da, db);
        TensorChecks.SameShape(dc, nameof(dc), a, nameof(a));
        bool vectorized = Vectorizable(dc, a, b, da, db);
        switch (a.dtype)
        {
            case ScalarType.Float32 when vectorized: LaunchBackwardVectorized<float, Float32Codec, Float8, Float32x8Codec>(device, dc, a, b, da, db, recompute); break;
            case ScalarType.BFloat16 when vectorized: LaunchBackwardVectorized<ushort, BFloat16Codec, BFloat16x8, BFloat16x8Codec>(device, dc, a, b, da, db, recompute); break;
            case ScalarType.Float32: LaunchBackwardScalar<float, Float32Codec>(device, dc, a, b, da, db, recompute); break;
            case ScalarType.BFloat16: LaunchBackwardScalar<ushort, BFloat16Codec>(device, dc, a, b, da, db, recompute); break;
            default: LaunchBackwardScalar<ushort, Float16Codec>(device, dc, a, b, da, db, recompute); break;
        }
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
            GatedKernels.ForwardVectorized<T, TCodec, TVec, TVecCodec, TActivation>, static (acc, k) => acc.LoadStreamKernel(k));
        using var views = new TensorViews(device);
        long chunks = a.numel() / 8;
        kernel(ElementwiseConfig(device, chunks), views.OfVectors<TVec>(a, nameof(a)), views.OfVectors<TVec>(b, nameof(b)),
            views.OfVectors<TVec>(c, nameof(c)), chunks);
    }

    private static void LaunchBackwardVectorized<T, TCodec, TVec, TVecCodec>(KernelDevice device, Tensor dc, Tensor a, Tensor b, Tensor da, Tensor db,
        bool recompute)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        Action<ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, long> body = recompute
            ? GatedKernels.BackwardVectorized<T, TCodec, TVec, TVecCodec, TActivation, ProductOverDc>
            : GatedKernels.BackwardVectorized<T, TCodec, TVec, TVecCodec, TActivation, KeepDc>;
        var kernel = device.Kernel<Action<ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, long>,
            Action<KernelConfig, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, long>>(
            body, static (acc, k) => acc.LoadStreamKernel(k));
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
            GatedKernels.Forward<T, TCodec, TActivation>, static (acc, k) => acc.LoadStreamKernel(k));
        using var views = new TensorViews(device);
        kernel(ElementwiseConfig(device, a.numel()), views.Of<T>(a, nameof(a)), views.Of<T>(b, nameof(b)),
            views.Of<T>(c, nameof(c)), a.numel());
    }

    private static void LaunchBackwardScalar<T, TCodec>(KernelDevice device, Tensor dc, Tensor a, Tensor b, Tensor da, Tensor db, bool recompute)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, long> body = recompute
            ? GatedKernels.Backward<T, TCodec, TActivation, ProductOverDc>
            : GatedKernels.Backward<T, TCodec, TActivation, KeepDc>;
        var kernel = device.Kernel<Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, long>,
            Action<KernelConfig, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, long>>(
            body, static (acc, k) => acc.LoadStreamKernel(k));
        using var views = new TensorViews(device);
        kernel(ElementwiseConfig(device, a.numel()), views.Of<T>(dc, nameof(dc)), views.Of<T>(a, nameof(a)),
            views.Of<T>(b, nameof(b)), views.Of<T>(da, nameof(da)), views.Of<T>(db, nameof(db)), a.numel());
    }

    /// <summary>
    /// The CPU backward: fused loops for float32 (<see cref="GatedCpu"/>); otherwise torch ops, rounding
    /// where the eager graph rounds: db = dc * f(a), and da from torch's own backward of f, reached by
    /// differentiating the recomputed f(a) with dc * b (four tensor passes against eager's three, which
    /// kept f(a) alive instead).
    /// </summary>
    private static (Tensor Da, Tensor Db) BackwardTorch(Tensor dc, Tensor a, Tensor b, bool inPlace)
    {
        if (GatedCpu.Applies(dc, a, b))
        {
            var (fusedDa, fusedDb) = inPlace ? (a, b) : (empty_like(a), empty_like(b));
            GatedCpu.Backward<TCpu>(dc, a, b, fusedDa, fusedDb);
            return (fusedDa, fusedDb);
        }
        using var scope = NewDisposeScope();
        Tensor activation, da;
        using (enable_grad())
        {
            var leaf = a.detach().requires_grad_(true);
            activation = TCpu.Torch(leaf);
            da = autograd.grad([activation], [leaf], [dc * b])[0];
        }
        var db = dc * activation.detach();
        if (inPlace)
        {
            da = a.copy_(da);
            db = b.copy_(db);
        }
        return (da.MoveToOuterDisposeScope(), db.MoveToOuterDisposeScope());
    }
}

/// <summary>
/// The autograd node every gated op shares: saves a and b (no activation), and runs the backward in
/// place when asked. <typeparamref name="TSelf"/> is the concrete node (TorchSharp keys its function
/// objects on it).
/// </summary>
internal abstract class GatedAutograd<TSelf, TCpu, TActivation> : autograd.MultiTensorFunction<TSelf>
    where TSelf : GatedAutograd<TSelf, TCpu, TActivation>, new()
    where TCpu : IGatedCpuActivation where TActivation : struct, IGateActivation
{
    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradOutputCache.Track(ctx, Name, vars);
        var (a, b) = ((Tensor)vars[0], (Tensor)vars[1]);
        ctx.save_for_backward([a, b]);
        ctx.save_data("inPlace", (bool)vars[2]);
        return [GatedOp<TCpu, TActivation>.Forward(a, b)];
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grads) =>
        BackwardLifetime.Run(ctx, grads, incoming => Backward(ctx, incoming));

    private static List<Tensor> Backward(autograd.AutogradContext ctx, List<Tensor> grads)
    {
        var saved = ctx.get_saved_variables();
        if (grads[0] is null || grads[0].IsInvalid)
            return [null!, null!, null!]; // the output took no part in the loss
        var (da, db) = GatedOp<TCpu, TActivation>.Backward(grads[0].contiguous(), saved[0], saved[1], (bool)ctx.get_data("inPlace"));
        return [da, db, null!];
    }
}
