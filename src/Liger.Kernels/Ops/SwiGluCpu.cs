using System.Buffers;
using System.Numerics.Tensors;
using Liger.Kernels.Runtime;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace Liger.Kernels.Ops;

/// <summary>
/// SwiGLU's CPU path for float32: one pass over memory each way, in blocks that stay in cache, with
/// System.Numerics.Tensors' vectorised primitives. Built from torch ops the backward needs four tensor
/// passes to eager's three (silu must be recomputed, since only a and b are saved) and measured 1.23x
/// slower than eager; fused it reads dc, a, b once and writes da, db once.
/// </summary>
internal static class SwiGluCpu
{
    // 4096 floats per stream: the forward touches 3 streams plus one scratch block, the backward 5
    // plus two, about 112 KiB, within a core's L2.
    private const int Block = 4096;

    internal static bool Applies(params Tensor[] tensors) =>
        tensors.All(t => t.dtype == ScalarType.Float32 && t.device.type == TorchSharp.DeviceType.CPU && t.is_contiguous());

    /// <summary>c = a / (1 + e^-a) * b.</summary>
    internal static unsafe void Forward(Tensor a, Tensor b, Tensor c)
    {
        float* pa = (float*)TorchInterop.DataPointer(a), pb = (float*)TorchInterop.DataPointer(b), pc = (float*)TorchInterop.DataPointer(c);
        long n = a.numel();
        Parallel.For(0, (n + Block - 1) / Block, block =>
        {
            long start = block * Block;
            int length = (int)Math.Min(Block, n - start);
            var av = new ReadOnlySpan<float>(pa + start, length);
            float[] scratch = ArrayPool<float>.Shared.Rent(length);
            var silu = scratch.AsSpan(0, length);
            Silu(av, silu, denominator: silu);
            TensorPrimitives.Multiply(silu, new ReadOnlySpan<float>(pb + start, length), new Span<float>(pc + start, length));
            ArrayPool<float>.Shared.Return(scratch);
        });
        GC.KeepAlive(a); GC.KeepAlive(b); GC.KeepAlive(c);
    }

    /// <summary>db = dc * silu(a); da = (dc * b) * sig(a) * (1 + a * (1 - sig(a))). da, db may alias a, b.</summary>
    internal static unsafe void Backward(Tensor dc, Tensor a, Tensor b, Tensor da, Tensor db)
    {
        float* pdc = (float*)TorchInterop.DataPointer(dc), pa = (float*)TorchInterop.DataPointer(a), pb = (float*)TorchInterop.DataPointer(b);
        float* pda = (float*)TorchInterop.DataPointer(da), pdb = (float*)TorchInterop.DataPointer(db);
        long n = a.numel();
        Parallel.For(0, (n + Block - 1) / Block, block =>
        {
            long start = block * Block;
            int length = (int)Math.Min(Block, n - start);
            float[] scratch = ArrayPool<float>.Shared.Rent(2 * length);
            var denominator = scratch.AsSpan(0, length);   // 1 + e^-a, then sig(a)
            var work = scratch.AsSpan(length, length);       // silu(a), then the derivative
            var av = new ReadOnlySpan<float>(pa + start, length);
            var dcv = new ReadOnlySpan<float>(pdc + start, length);
            var bv = new ReadOnlySpan<float>(pb + start, length);
            Silu(av, work, denominator);
            TensorPrimitives.Reciprocal(denominator, denominator);                  // sig
            TensorPrimitives.Subtract(1f, denominator, work);                       // 1 - sig
            TensorPrimitives.FusedMultiplyAdd(av, work, 1f, work);                  // 1 + a (1 - sig)
            TensorPrimitives.Multiply(work, denominator, work);                     // silu'(a)
            // Everything read from a and b is read above or below before da, db (possibly a, b) are written.
            Silu(av, denominator, denominator);                                     // silu(a) again, in the sig scratch
            var dbv = new Span<float>(pdb + start, length);
            var dav = new Span<float>(pda + start, length);
            TensorPrimitives.Multiply(dcv, bv, dav);                                // dc * b (da may alias a: a no longer read)
            TensorPrimitives.Multiply(dav, work, dav);
            TensorPrimitives.Multiply(dcv, denominator, dbv);
            ArrayPool<float>.Shared.Return(scratch);
        });
        GC.KeepAlive(dc); GC.KeepAlive(a); GC.KeepAlive(b); GC.KeepAlive(da); GC.KeepAlive(db);
    }

    /// <summary>silu(a) = a / (1 + e^-a), as torch computes it; leaves 1 + e^-a in <paramref name="denominator"/>.</summary>
    private static void Silu(ReadOnlySpan<float> a, Span<float> silu, Span<float> denominator)
    {
        TensorPrimitives.Negate(a, denominator);
        TensorPrimitives.Exp(denominator, denominator);
        TensorPrimitives.Add(denominator, 1f, denominator);
        TensorPrimitives.Divide(a, denominator, silu);
    }
}
