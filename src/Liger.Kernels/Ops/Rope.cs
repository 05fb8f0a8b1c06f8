using ILGPU;
using ILGPU.Runtime;
using Liger.Kernels.Kernels;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Ops;

/// <summary>
/// Rotary position embedding as a differentiable function, exactly Hugging Face's
/// <c>apply_rotary_pos_emb</c>: q_embed = q·cos + rotate_half(q)·sin, rotate_half(x) = cat(−x2, x1), the same
/// for k. Only cos and sin are saved; the backward is the transposed rotation (by −θ).
/// </summary>
/// <remarks>
/// <para>Rounding: as eager torch, q·cos and rotate_half(q)·sin are each rounded to the tensor dtype and
/// their sum is rounded again (out = round(round(q·cos) + round(rotate_half(q)·sin))); the gradient likewise
/// rounds dy·cos and dy·sin before their sum. In float32 the CPU paths equal eager torch bit for bit.</para>
/// <para>Layouts: q (B, Hq, T, D) and k (B, Hkv, T, D) at any strides over (batch, head, position), so the
/// usual q_proj(x).view(B, T, H, D).transpose(1, 2) is read where it lies, with no copy. cos and sin are
/// (T, R), (1, T, R) or (B, T, R), full width as Hugging Face builds them (both halves are used as given).
/// R &lt; D is partial rotary (Phi, GPT-NeoX): the first R dims of each head rotate, the rest pass through.</para>
/// </remarks>
public static class LigerRotaryPosEmb
{
    /// <summary>Applies RoPE to q and k; returns (q_embed, k_embed).</summary>
    /// <param name="q">Queries (B, Hq, T, D), float32/bfloat16/float16, head_dim contiguous (any other strides).</param>
    /// <param name="k">Keys (B, Hkv, T, D) of q's dtype and device; Hkv may differ from Hq (grouped-query attention).</param>
    /// <param name="cos">cos of the angles, (T, R), (1, T, R) or (B, T, R) of q's dtype and device; R even, R ≤ D.
    /// A constant: it must not require grad while grad mode is on (Hugging Face builds it under no_grad); one
    /// that does is refused with an ArgumentException, since RoPE saves only cos and sin and gives them no gradient.</param>
    /// <param name="sin">sin of the angles, cos's shape.</param>
    /// <param name="inPlace">Write q_embed and k_embed into q's and k's memory, as Liger-Kernel does: no new
    /// q- or k-sized tensors. Only for private intermediates that nothing else reads afterwards (q_proj and
    /// k_proj outputs inside an attention layer): q and k then hold the rotated values, and the returned
    /// tensors share their memory. Autograd's mark_dirty cannot express this for the transposed views
    /// attention passes (libtorch refuses an in-place function on a view with more than one output), so
    /// instead the version counters of q and k are bumped: any graph node that saved q or k for its
    /// backward then fails with torch's "modified by an inplace operation" error rather than silently using
    /// rotated values. Leaves that require grad are refused.</param>
    /// <param name="inPlaceBackward">Write dq and dk into the incoming gradients' buffers (no new buffers in
    /// the backward). Only when nothing else reads those gradients, as when q_embed and k_embed feed only
    /// the attention product; never when a gradient is a tensor the caller passed to backward.</param>
    public static (Tensor QEmbed, Tensor KEmbed) Apply(Tensor q, Tensor k, Tensor cos, Tensor sin,
        bool inPlace = false, bool inPlaceBackward = false)
    {
        RopeOp.Validate(q, k, cos, sin, inPlace);
        var outputs = AutogradOutputCache.Release(RopeAutograd.apply(q, k, cos, sin, inPlace, inPlaceBackward));
        return (outputs[0], outputs[1]);
    }
}

/// <summary>The autograd node of <see cref="LigerRotaryPosEmb"/>.</summary>
internal sealed class RopeAutograd : autograd.MultiTensorFunction<RopeAutograd>
{
    public override string Name => "LigerRopeBackward";

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradOutputCache.Track(ctx, Name, vars);
        var (q, k) = ((Tensor)vars[0], (Tensor)vars[1]);
        var (cos, sin) = (RopeOp.CosRows((Tensor)vars[2]), RopeOp.CosRows((Tensor)vars[3]));
        var (qEmbed, kEmbed) = RopeOp.Forward(q, k, cos, sin, (bool)vars[4]);
        ctx.save_for_backward([cos, sin]);
        ctx.save_data("inPlaceBackward", (bool)vars[5]);
        return [qEmbed, kEmbed];
    }

    // Any layout: RopeOp.Backward reads strided gradients (head_dim contiguous) and copies others itself, and
    // with inPlaceBackward writes dq and dk into attention's transposed gradient views, which a copy would defeat.
    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grads) =>
        BackwardLifetime.Run(ctx, grads, incoming => Backward(ctx, incoming), anyLayout: true);

    private static List<Tensor> Backward(autograd.AutogradContext ctx, List<Tensor> grads)
    {
        var saved = ctx.get_saved_variables();
        Tensor? dq = Defined(grads[0]), dk = Defined(grads[1]);
        if (dq is null && dk is null)
            return [null!, null!, null!, null!, null!, null!]; // neither output took part in the loss
        var (gradQ, gradK) = RopeOp.Backward(dq, dk, saved[0], saved[1], (bool)ctx.get_data("inPlaceBackward"));
        // cos and sin get no gradient: Validate refuses them when they require it.
        return [gradQ!, gradK!, null!, null!, null!, null!];
    }

    private static Tensor? Defined(Tensor? grad) => grad is null || grad.IsInvalid ? null : grad;
}

/// <summary>Host side of RoPE: argument checks, kernel launches, and the CPU paths.</summary>
internal static class RopeOp
{
    internal static void Validate(Tensor q, Tensor k, Tensor cos, Tensor sin, bool inPlace)
    {
        TensorChecks.NotNull(q, nameof(q));
        TensorChecks.NotNull(k, nameof(k));
        TensorChecks.NotNull(cos, nameof(cos));
        TensorChecks.NotNull(sin, nameof(sin));
        FourDims(q, nameof(q), "Hq");
        FourDims(k, nameof(k), "Hkv");
        TensorChecks.FloatingPoint(q, nameof(q));
        TensorChecks.SameDtype(k, nameof(k), q, nameof(q));
        TensorChecks.SameDevice(k, nameof(k), q, nameof(q));
        long batch = q.shape[0], seq = q.shape[2], headDim = q.shape[3];
        if (k.shape[0] != batch || k.shape[2] != seq || k.shape[3] != headDim)
            throw new ArgumentException(
                $"'k' must be (B, Hkv, T, D) with q's B = {batch}, T = {seq} and D = {headDim}; got [{string.Join(", ", k.shape)}].", nameof(k));

        if (cos.dim() is not (2 or 3))
            throw new ArgumentException($"'cos' must be (T, R), (1, T, R) or (B, T, R); got [{string.Join(", ", cos.shape)}].", nameof(cos));
        TensorChecks.SameDtype(cos, nameof(cos), q, nameof(q));
        TensorChecks.SameDevice(cos, nameof(cos), q, nameof(q));
        TensorChecks.SameShape(sin, nameof(sin), cos, nameof(cos));
        TensorChecks.SameDtype(sin, nameof(sin), q, nameof(q));
        TensorChecks.SameDevice(sin, nameof(sin), q, nameof(q));
        NoGradient(cos, nameof(cos));
        NoGradient(sin, nameof(sin));
        if (cos.shape[^2] != seq)
            throw new ArgumentException($"'cos' must have q's sequence length T = {seq} in dimension -2; got [{string.Join(", ", cos.shape)}].", nameof(cos));
        if (cos.dim() == 3 && cos.shape[0] != 1 && cos.shape[0] != batch)
            throw new ArgumentException($"'cos' must have batch 1 or q's batch {batch}; got [{string.Join(", ", cos.shape)}].", nameof(cos));
        long rotary = cos.shape[^1];
        if (rotary < 2 || rotary % 2 != 0 || rotary > headDim)
            throw new ArgumentException(
                $"'cos' must have an even last dimension R (the rotated dims) with 2 <= R <= head_dim = {headDim}; got {rotary}.", nameof(cos));

        if (inPlace)
        {
            Writable(q, nameof(q));
            Writable(k, nameof(k));
            if (q.numel() > 0 && TorchInterop.DataPointer(q) == TorchInterop.DataPointer(k))
                throw new ArgumentException("'k' shares its memory with 'q'; in place, q and k must be separate tensors.", nameof(k));
        }
        LigerRuntime.KernelDeviceFor(q, nameof(q)); // rejects devices we cannot run on, with the argument's name
    }

    /// <summary>q_embed, k_embed from q, k and cos, sin ((T, R) or (1|B, T, R)); written into q and k when <paramref name="inPlace"/>.</summary>
    public static (Tensor QEmbed, Tensor KEmbed) Forward(Tensor q, Tensor k, Tensor cos, Tensor sin, bool inPlace)
    {
        using var rows = new CosSinRows(cos, sin);
        if (inPlace)
        {
            Rotate(q, q, k, k, rows.Cos, rows.Sin, backward: false, "rope_forward");
            using (no_grad())
            {
                // The writes above are invisible to autograd; an empty in-place op bumps the version
                // counters (shared by every view of the memory), so a node that saved q or k notices.
                using var qNone = q.narrow(-1, 0, 0);
                using var kNone = k.narrow(-1, 0, 0);
                qNone.zero_();
                kNone.zero_();
            }
            // New tensor objects over the same memory: autograd gives them this function's node, while
            // q and k keep theirs (the node's edges to them are already set).
            return (q.detach(), k.detach());
        }
        var (qIn, kIn) = (Readable(q), Readable(k));
        var (qOut, kOut) = (Outputs.EmptyLike(q), Outputs.EmptyLike(k));
        Rotate(qIn, qOut, kIn, kOut, rows.Cos, rows.Sin, backward: false, "rope_forward");
        DisposeCopy(qIn, q);
        DisposeCopy(kIn, k);
        return (qOut, kOut);
    }

    /// <summary>
    /// dq, dk from the gradients of q_embed and k_embed (either may be null: that output took no part in the
    /// loss, and its input gets no gradient). Written into the gradients' buffers when <paramref name="inPlace"/>
    /// and the buffer can be written (non-overlapping, head_dim contiguous).
    /// </summary>
    public static (Tensor? Dq, Tensor? Dk) Backward(Tensor? dq, Tensor? dk, Tensor cos, Tensor sin, bool inPlace)
    {
        using var rows = new CosSinRows(cos, sin);
        Tensor? qIn = dq is null ? null : Readable(dq), kIn = dk is null ? null : Readable(dk);
        bool sameBuffer = qIn is not null && kIn is not null && qIn.numel() > 0
            && TorchInterop.DataPointer(qIn) == TorchInterop.DataPointer(kIn);
        Tensor? qOut = qIn is null ? null : inPlace && IsWritable(qIn) ? qIn : Outputs.EmptyLike(qIn);
        Tensor? kOut = kIn is null ? null : inPlace && !sameBuffer && IsWritable(kIn) ? kIn : Outputs.EmptyLike(kIn);
        Rotate(qIn, qOut, kIn, kOut, rows.Cos, rows.Sin, backward: true, "rope_backward");
        if (!ReferenceEquals(qIn, qOut))
            DisposeCopy(qIn, dq);
        if (!ReferenceEquals(kIn, kOut))
            DisposeCopy(kIn, dk);
        return (qOut, kOut);
    }

    /// <summary>cos or sin as contiguous (1|B, T, R) rows.</summary>
    internal static Tensor CosRows(Tensor cos) => cos.dim() == 2 ? cos.unsqueeze(0).contiguous() : cos.contiguous();

    /// <summary>Runs the rotation (forward or transposed) on whichever of q and k are present.</summary>
    private static void Rotate(Tensor? qIn, Tensor? qOut, Tensor? kIn, Tensor? kOut, Tensor cos, Tensor sin,
        bool backward, string op)
    {
        var any = (qIn ?? kIn)!;
        var device = LigerRuntime.KernelDeviceFor(any, "q");
        if (device is null && RopeCpu.Applies(qIn, qOut, kIn, kOut, cos, sin))
        {
            RopeCpu.Rotate(qIn, qOut, kIn, kOut, cos, sin, backward); // copies the pass-through dims itself
            LigerRuntime.Report(op, ExecutionPath.TorchCpu);
            return;
        }
        if (qIn is not null)
            PassThrough(qIn, qOut!, cos.shape[2]);
        if (kIn is not null)
            PassThrough(kIn, kOut!, cos.shape[2]);
        if (device is null)
        {
            if (qIn is not null)
                RotateTorch(qIn, qOut!, cos, sin, backward);
            if (kIn is not null)
                RotateTorch(kIn, kOut!, cos, sin, backward);
            LigerRuntime.Report(op, ExecutionPath.TorchCpu);
            return;
        }
        if ((qIn?.numel() ?? 0) + (kIn?.numel() ?? 0) > 0)
        {
            var layout = Layout(qIn, qOut, kIn, kOut, cos, unit: 1);
            bool vectorized = Vectorizable(layout, cos, sin, qIn, qOut, kIn, kOut);
            switch (any.dtype)
            {
                case ScalarType.Float32 when vectorized: LaunchVectorized<float, Float32Codec, Float8, Float32x8Codec>(device, qIn, qOut, kIn, kOut, cos, sin, backward); break;
                case ScalarType.BFloat16 when vectorized: LaunchVectorized<ushort, BFloat16Codec, BFloat16x8, BFloat16x8Codec>(device, qIn, qOut, kIn, kOut, cos, sin, backward); break;
                case ScalarType.Float32: Launch<float, Float32Codec>(device, qIn, qOut, kIn, kOut, cos, sin, backward); break;
                case ScalarType.BFloat16: Launch<ushort, BFloat16Codec>(device, qIn, qOut, kIn, kOut, cos, sin, backward); break;
                default: Launch<ushort, Float16Codec>(device, qIn, qOut, kIn, kOut, cos, sin, backward); break;
            }
        }
        LigerRuntime.Report(op, device.IsCuda ? ExecutionPath.CudaKernel : ExecutionPath.EmulatedKernel);
    }

    // ---- layouts ----

    /// <summary>Shapes and strides of a launch, strides in units of <paramref name="unit"/> elements.</summary>
    private static RopeLayout Layout(Tensor? qIn, Tensor? qOut, Tensor? kIn, Tensor? kOut, Tensor cos, int unit)
    {
        var any = (qIn ?? kIn)!;
        var (qi, qo, ki, ko) = (Strides(qIn, unit), Strides(qOut, unit), Strides(kIn, unit), Strides(kOut, unit));
        return new RopeLayout
        {
            Rows = any.shape[0] * any.shape[2],
            Seq = checked((int)any.shape[2]),
            CosBatch = checked((int)cos.shape[0]),
            QHeads = checked((int)(qIn?.shape[1] ?? 0)),
            KHeads = checked((int)(kIn?.shape[1] ?? 0)),
            Half = checked((int)(cos.shape[2] / 2 / unit)),
            QInB = qi.B, QInH = qi.H, QInT = qi.T, QOutB = qo.B, QOutH = qo.H, QOutT = qo.T,
            KInB = ki.B, KInH = ki.H, KInT = ki.T, KOutB = ko.B, KOutH = ko.H, KOutT = ko.T,
        };
    }

    /// <summary>(batch, head, position) strides in units; 0 for a dimension of size 1, whose stride torch leaves arbitrary.</summary>
    private static (long B, long H, long T) Strides(Tensor? t, int unit)
    {
        if (t is null)
            return (0, 0, 0);
        long Of(int dim) => t.shape[dim] == 1 ? 0 : t.stride(dim) / unit;
        return (Of(0), Of(1), Of(2));
    }

    /// <summary>
    /// The vectorised kernel moves 8 elements of each half at a time: the half must be whole chunks, every
    /// (batch, head, position) stride a multiple of 8 elements and the data 16-byte aligned; float16 has no
    /// vector codec and takes the scalar kernel.
    /// </summary>
    private static bool Vectorizable(RopeLayout elements, Tensor cos, Tensor sin, params Tensor?[] tensors)
    {
        if (cos.dtype == ScalarType.Float16 || elements.Half % 8 != 0)
            return false;
        long[] strides = [elements.QInB, elements.QInH, elements.QInT, elements.QOutB, elements.QOutH, elements.QOutT,
            elements.KInB, elements.KInH, elements.KInT, elements.KOutB, elements.KOutH, elements.KOutT];
        var present = tensors.Where(t => t is not null && t.numel() > 0).Select(t => t!).Append(cos).Append(sin).ToArray();
        return strides.All(s => s % 8 == 0) && present.All(t => t.shape[^1] % 8 == 0) && TensorViews.VectorFriendly(present);
    }

    /// <summary>
    /// One group per (b, t) row at a time, grid-strided over rows. The group covers the row's (head, slice)
    /// items; where they do not fit, its size is a multiple of the half so each thread keeps one slice.
    /// </summary>
    private static KernelConfig Config(KernelDevice device, RopeLayout layout)
    {
        long items = (long)(layout.QHeads + layout.KHeads) * layout.Half;
        int max = Math.Min(1024, device.MaxGroupSize);
        int group = items <= max
            ? device.GroupSizeFor(items, max)
            : layout.Half <= max ? max / layout.Half * layout.Half : max;
        long resident = device.IsCuda ? (long)device.Multiprocessors * Math.Max(1, 2048 / group) : 4;
        return new KernelConfig((int)Math.Clamp(layout.Rows, 1, resident), group);
    }

    /// <summary>A 1-D view from the tensor's first element to its last (for strided kernel indexing).</summary>
    private static Tensor Span(Tensor t)
    {
        long span = 1;
        for (int d = 0; d < t.dim(); d++)
            span += (t.shape[d] - 1) * t.stride(d);
        return t.as_strided([span], [1], t.storage_offset());
    }

    private static void LaunchVectorized<T, TCodec, TVec, TVecCodec>(KernelDevice device, Tensor? qIn, Tensor? qOut,
        Tensor? kIn, Tensor? kOut, Tensor cos, Tensor sin, bool backward)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
        where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
    {
        var kernel = device.Kernel<
            Action<ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, RopeLayout, int>,
            Action<KernelConfig, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, ArrayView<TVec>, RopeLayout, int>>(
            RopeKernels.RotateVectorized<T, TCodec, TVec, TVecCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        var layout = Layout(qIn, qOut, kIn, kOut, cos, unit: 8);
        using var scope = NewDisposeScope();
        using var views = new TensorViews(device);
        // An absent q or k (no gradient) has 0 heads; the other's views stand in and are never touched.
        var (qi, qo) = qIn is null || qIn.numel() == 0 ? (kIn!, kOut!) : (qIn, qOut!);
        var (ki, ko) = kIn is null || kIn.numel() == 0 ? (qi, qo) : (kIn, kOut!);
        kernel(Config(device, layout),
            views.OfVectors<TVec>(Span(qi), "q"), views.OfVectors<TVec>(Span(qo), "q_embed"),
            views.OfVectors<TVec>(Span(ki), "k"), views.OfVectors<TVec>(Span(ko), "k_embed"),
            views.OfVectors<TVec>(cos, nameof(cos)), views.OfVectors<TVec>(sin, nameof(sin)), layout, backward ? 1 : 0);
    }

    private static void Launch<T, TCodec>(KernelDevice device, Tensor? qIn, Tensor? qOut, Tensor? kIn, Tensor? kOut,
        Tensor cos, Tensor sin, bool backward)
        where T : unmanaged where TCodec : struct, IElementCodec<T>
    {
        var kernel = device.Kernel<
            Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, RopeLayout, int>,
            Action<KernelConfig, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, RopeLayout, int>>(
            RopeKernels.Rotate<T, TCodec>, static (acc, k) => acc.LoadStreamKernel(k));
        var layout = Layout(qIn, qOut, kIn, kOut, cos, unit: 1);
        using var scope = NewDisposeScope();
        using var views = new TensorViews(device);
        var (qi, qo) = qIn is null || qIn.numel() == 0 ? (kIn!, kOut!) : (qIn, qOut!);
        var (ki, ko) = kIn is null || kIn.numel() == 0 ? (qi, qo) : (kIn, kOut!);
        kernel(Config(device, layout),
            views.Of<T>(Span(qi), "q"), views.Of<T>(Span(qo), "q_embed"),
            views.Of<T>(Span(ki), "k"), views.Of<T>(Span(ko), "k_embed"),
            views.Of<T>(cos, nameof(cos)), views.Of<T>(sin, nameof(sin)), layout, backward ? 1 : 0);
    }

    // ---- tensors the kernels can read and write ----

    /// <summary>
    /// cos and sin are constants of the position (Hugging Face builds them under no_grad); RoPE saves only
    /// them, not q and k, so it cannot give them a gradient. Refused rather than silently left without one.
    /// </summary>
    private static void NoGradient(Tensor table, string name)
    {
        if (table.requires_grad && is_grad_enabled())
            throw new ArgumentException(
                $"'{name}' requires grad, but RoPE gives cos and sin no gradient (they are constants of the position and " +
                $"only they are saved, not q and k); pass {name}.detach() or build it under no_grad.", name);
    }

    private static void FourDims(Tensor t, string name, string heads)
    {
        if (t.dim() != 4)
            throw new ArgumentException($"'{name}' must be 4-D (B, {heads}, T, D); got [{string.Join(", ", t.shape)}].", name);
    }

    /// <summary>head_dim contiguous (stride 1), so a row of a head is one run of memory; otherwise a contiguous copy.</summary>
    private static Tensor Readable(Tensor t) => t.shape[3] <= 1 || t.stride(3) == 1 ? t : t.contiguous();

    /// <summary>True when every element has its own memory (no two indices alias) and head_dim is contiguous.</summary>
    internal static bool IsWritable(Tensor t)
    {
        if (t.numel() == 0)
            return true;
        if (t.shape[3] > 1 && t.stride(3) != 1)
            return false;
        // Sorted by stride, each dimension must step over the whole extent of the ones inside it.
        var dims = Enumerable.Range(0, (int)t.dim()).Where(d => t.shape[d] > 1).OrderBy(d => t.stride(d)).ToArray();
        long extent = 1;
        foreach (int d in dims)
        {
            if (t.stride(d) < extent)
                return false;
            extent = t.stride(d) * t.shape[d];
        }
        return true;
    }

    private static void Writable(Tensor t, string name)
    {
        if (t.requires_grad && t.is_leaf)
            throw new ArgumentException(
                $"'{name}' is a leaf that requires grad; in place, RoPE writes into '{name}', which must be a private intermediate (e.g. q_proj's output).", name);
        if (!IsWritable(t))
            throw new ArgumentException(
                $"'{name}' cannot be written in place: its elements must not overlap and head_dim must be contiguous; its strides are [{string.Join(", ", t.stride())}].", name);
    }

    /// <summary>Copies the dims after the rotated ones (partial rotary) into a separate output.</summary>
    private static void PassThrough(Tensor input, Tensor output, long rotary)
    {
        long headDim = input.shape[3];
        if (rotary == headDim || input.numel() == 0 || ReferenceEquals(input, output))
            return;
        using var source = input.narrow(-1, rotary, headDim - rotary);
        using var target = output.narrow(-1, rotary, headDim - rotary);
        target.copy_(source);
    }

    /// <summary>Disposes <paramref name="copy"/> when <see cref="Readable"/> made it (it is not <paramref name="original"/>).</summary>
    private static void DisposeCopy(Tensor? copy, Tensor? original)
    {
        if (copy is not null && !ReferenceEquals(copy, original))
            copy.Dispose();
    }

    // ---- CPU path for 16-bit types: torch ops rounding where the eager graph rounds ----

    /// <summary>
    /// forward: round(x·cos) + round(rotate_half(x)·sin); backward: round(g·cos) + rotate_half_T(round(g·sin)),
    /// rotate_half_T(v) = cat(v2, −v1), which is where autograd's cat, slice and neg backward put each product.
    /// </summary>
    internal static void RotateTorch(Tensor input, Tensor output, Tensor cos, Tensor sin, bool backward)
    {
        using var scope = NewDisposeScope();
        long rotary = cos.shape[2], half = rotary / 2;
        var x = rotary == input.shape[3] ? input : input.narrow(-1, 0, rotary);
        var (c, s) = (cos.unsqueeze(1), sin.unsqueeze(1)); // broadcast over heads
        Tensor rotated;
        if (!backward)
            rotated = (x * c).Plus(cat([-x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1) * s);
        else
        {
            var t = x * s;
            rotated = (x * c).Plus(cat([t.narrow(-1, half, half), -t.narrow(-1, 0, half)], -1));
        }
        (rotary == output.shape[3] ? output : output.narrow(-1, 0, rotary)).copy_(rotated);
    }

    /// <summary>cos and sin as (1|B, T, R) contiguous rows for one call; disposes what it made.</summary>
    private readonly struct CosSinRows : IDisposable
    {
        private readonly bool owned;

        internal CosSinRows(Tensor cos, Tensor sin)
        {
            owned = cos.dim() != 3 || !cos.is_contiguous() || !sin.is_contiguous();
            (Cos, Sin) = owned ? (CosRows(cos), CosRows(sin)) : (cos, sin);
        }

        internal Tensor Cos { get; }
        internal Tensor Sin { get; }
        internal long Rotary => Cos.shape[2];

        public void Dispose()
        {
            if (owned)
            {
                Cos.Dispose();
                Sin.Dispose();
            }
        }
    }
}
