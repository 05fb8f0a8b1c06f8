using System.Runtime.CompilerServices;
using ILGPU;

namespace Liger.Kernels.Kernels;

/// <summary>
/// A gradient that reaches a norm's input directly, besides the one through the norm (fused add+RMSNorm's
/// residual stream), added to dx before the store. A struct type parameter of RMSNorm's backward body, like
/// the codecs, so one body serves both ops and RMSNorm's kernels compile with no trace of it. This one
/// works on 8-element chunks (the vectorised kernels).
/// </summary>
internal interface IDirectGradient<TVec, TVecCodec>
    where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
{
    /// <summary>Loads chunk <paramref name="index"/> of the direct gradient into <paramref name="next"/> (left as it was when there is none).</summary>
    void Prefetch(ref TVec next, long index);

    /// <summary>Stores chunk <paramref name="index"/> of dx: with a direct gradient <paramref name="direct"/>, round(dx) + direct
    /// rounded again (autograd sums the two gradients in the stored type); without one, dx rounded once.</summary>
    void Store(ArrayView<TVec> output, long index, Float8 dx, TVec direct);
}

/// <summary><see cref="IDirectGradient{TVec, TVecCodec}"/> for one element at a time (the scalar kernels).</summary>
internal interface IDirectElementGradient<T, TCodec>
    where T : unmanaged where TCodec : struct, IElementCodec<T>
{
    /// <summary>Stores element <paramref name="index"/> of dx plus the direct gradient's, round(dx) first; dx alone when there is none.</summary>
    void Store(ArrayView<T> output, long index, float dx);
}

/// <summary>RMSNorm's backward: dx is the whole gradient of x.</summary>
internal readonly struct NoDirectGradient<TVec, TVecCodec> : IDirectGradient<TVec, TVecCodec>
    where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Prefetch(ref TVec next, long index) { }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(ArrayView<TVec> output, long index, Float8 dx, TVec direct) => output[index] = default(TVecCodec).Store(dx);
}

/// <summary>RMSNorm's scalar backward: dx is the whole gradient of x.</summary>
internal readonly struct NoDirectElementGradient<T, TCodec> : IDirectElementGradient<T, TCodec>
    where T : unmanaged where TCodec : struct, IElementCodec<T>
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(ArrayView<T> output, long index, float dx) => output[index] = default(TCodec).Store(dx);
}

/// <summary>Fused add+RMSNorm's backward: the gradient that reached h = x + residual directly, when there is one.</summary>
internal readonly struct ResidualGradient<TVec, TVecCodec>(ArrayView<TVec> gradient, bool present) : IDirectGradient<TVec, TVecCodec>
    where TVec : unmanaged where TVecCodec : struct, IVectorCodec<TVec>
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Prefetch(ref TVec next, long index)
    {
        if (present)
            next = gradient[index];
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(ArrayView<TVec> output, long index, Float8 dx, TVec direct)
    {
        TVecCodec vc = default;
        output[index] = present ? vc.Store(FusedAddRmsNormKernels.Sum(vc.Load(vc.Store(dx)), vc.Load(direct))) : vc.Store(dx);
    }
}

/// <summary>Fused add+RMSNorm's scalar backward: the gradient that reached h directly, when there is one.</summary>
internal readonly struct ResidualElementGradient<T, TCodec>(ArrayView<T> gradient, bool present) : IDirectElementGradient<T, TCodec>
    where T : unmanaged where TCodec : struct, IElementCodec<T>
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(ArrayView<T> output, long index, float dx)
    {
        TCodec codec = default;
        output[index] = codec.Store(present ? codec.Round(dx) + codec.Load(gradient[index]) : dx);
    }
}
