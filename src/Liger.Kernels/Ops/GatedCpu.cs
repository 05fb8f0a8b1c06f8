using System.Buffers;
using System.Numerics.Tensors;
using Liger.Kernels.Runtime;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace Liger.Kernels.Ops;

/// <summary>
/// The CPU path of gated activations for float32: one pass over memory each way, in blocks that stay in
/// cache, the activation's math done by <see cref="IGatedCpuActivation"/> with System.Numerics.Tensors'
/// vectorised primitives. Built from torch ops the backward needs four tensor passes to eager's three
/// (f(a) must be recomputed, since only a and b are saved); fused it reads dc, a, b once and writes
/// da, db once.
/// </summary>
internal static class GatedCpu
{
    // 4096 floats per stream: the backward touches 5 streams plus three scratch blocks, 128 KiB, within
    // a core's L2.
    private const int Block = 4096;

    internal static bool Applies(params Tensor[] tensors) =>
        tensors.All(t => t.dtype == ScalarType.Float32 && t.device.type == TorchSharp.DeviceType.CPU && t.is_contiguous());

    /// <summary>c = f(a) * b.</summary>
    internal static unsafe void Forward<TCpu>(Tensor a, Tensor b, Tensor c) where TCpu : IGatedCpuActivation
    {
        float* pa = (float*)TorchInterop.DataPointer(a), pb = (float*)TorchInterop.DataPointer(b), pc = (float*)TorchInterop.DataPointer(c);
        long n = a.numel();
        Parallel.For(0, (n + Block - 1) / Block, block =>
        {
            long start = block * Block;
            int length = (int)Math.Min(Block, n - start);
            float[] scratch = ArrayPool<float>.Shared.Rent(length);
            var cv = new Span<float>(pc + start, length);   // c is a fresh tensor: f(a) may go there first
            TCpu.Value(new ReadOnlySpan<float>(pa + start, length), cv, scratch.AsSpan(0, length));
            TensorPrimitives.Multiply(cv, new ReadOnlySpan<float>(pb + start, length), cv);
            ArrayPool<float>.Shared.Return(scratch);
        });
        GC.KeepAlive(a); GC.KeepAlive(b); GC.KeepAlive(c);
    }

    /// <summary>db = dc * f(a); da = (dc * b) * f'(a). da, db may alias a, b.</summary>
    internal static unsafe void Backward<TCpu>(Tensor dc, Tensor a, Tensor b, Tensor da, Tensor db) where TCpu : IGatedCpuActivation
    {
        float* pdc = (float*)TorchInterop.DataPointer(dc), pa = (float*)TorchInterop.DataPointer(a), pb = (float*)TorchInterop.DataPointer(b);
        float* pda = (float*)TorchInterop.DataPointer(da), pdb = (float*)TorchInterop.DataPointer(db);
        long n = a.numel();
        Parallel.For(0, (n + Block - 1) / Block, block =>
        {
            long start = block * Block;
            int length = (int)Math.Min(Block, n - start);
            float[] scratch = ArrayPool<float>.Shared.Rent(3 * length);
            var value = scratch.AsSpan(0, length);
            var derivative = scratch.AsSpan(length, length);
            TCpu.ValueAndDerivative(new ReadOnlySpan<float>(pa + start, length), value, derivative, scratch.AsSpan(2 * length, length));
            // a is read above, b below, before da and db (possibly a's and b's memory) are written.
            var dcv = new ReadOnlySpan<float>(pdc + start, length);
            var dav = new Span<float>(pda + start, length);
            TensorPrimitives.Multiply(dcv, new ReadOnlySpan<float>(pb + start, length), dav);
            TensorPrimitives.Multiply(dav, derivative, dav);
            TensorPrimitives.Multiply(dcv, value, new Span<float>(pdb + start, length));
            ArrayPool<float>.Shared.Return(scratch);
        });
        GC.KeepAlive(dc); GC.KeepAlive(a); GC.KeepAlive(b); GC.KeepAlive(da); GC.KeepAlive(db);
    }
}
