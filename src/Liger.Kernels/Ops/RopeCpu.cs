using System.Numerics;
using Liger.Kernels.Runtime;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace Liger.Kernels.Ops;

/// <summary>
/// RoPE's CPU path for float32: one read and one write of q and k each way, at their strides, with the
/// (b, t) row's cos and sin reused across every head while they sit in L1. Eager torch makes five
/// passes over q each way (q·cos, −x2, cat, ·sin, +) and allocates a q-sized tensor for each. The
/// arithmetic is eager's, unfused (no FMA contraction in .NET), so the results equal eager torch's bit
/// for bit: x1·c1 − x2·s1 is round(x1·c1) + round(−x2·s1) in fp32.
/// </summary>
internal static class RopeCpu
{
    // Rows of (b, t) per parallel task: about 16K floats of q and k, enough to amortise the scheduling.
    private const long FloatsPerTask = 16384;

    internal static bool Applies(params Tensor?[] tensors) =>
        tensors.All(t => t is null || (t.dtype == ScalarType.Float32 && t.device.type == TorchSharp.DeviceType.CPU
                                       && (t.shape[^1] <= 1 || t.stride(-1) == 1)));

    /// <summary>
    /// The rotation (forward, or its transpose for the backward) of q and k rows into their outputs, which
    /// may alias the inputs; the dims after the rotated ones are copied when input and output differ.
    /// cos, sin: contiguous (1|B, T, R).
    /// </summary>
    internal static unsafe void Rotate(Tensor? qIn, Tensor? qOut, Tensor? kIn, Tensor? kOut, Tensor cos, Tensor sin, bool backward)
    {
        var any = (qIn ?? kIn)!;
        long batch = any.shape[0], seq = any.shape[2], headDim = any.shape[3];
        int rotary = (int)cos.shape[2];
        long cosBatch = cos.shape[0];
        var q = Heads.Of(qIn, qOut);
        var k = Heads.Of(kIn, kOut);
        float* pc = (float*)TorchInterop.DataPointer(cos), ps = (float*)TorchInterop.DataPointer(sin);
        long rows = batch * seq;
        if (rows == 0 || (q.Count + k.Count) * headDim == 0)
            return;
        long rowsPerTask = Math.Max(1, FloatsPerTask / ((q.Count + k.Count) * headDim));
        Parallel.For(0, (rows + rowsPerTask - 1) / rowsPerTask, task =>
        {
            long end = Math.Min(rows, (task + 1) * rowsPerTask);
            for (long row = task * rowsPerTask; row < end; row++)
            {
                long b = row / seq, t = row % seq;
                long cosAt = ((cosBatch == 1 ? 0 : b) * seq + t) * rotary;
                q.RotateRow(b, t, pc + cosAt, ps + cosAt, rotary, (int)headDim, backward);
                k.RotateRow(b, t, pc + cosAt, ps + cosAt, rotary, (int)headDim, backward);
            }
        });
        GC.KeepAlive(qIn); GC.KeepAlive(qOut); GC.KeepAlive(kIn); GC.KeepAlive(kOut); GC.KeepAlive(cos); GC.KeepAlive(sin);
    }

    /// <summary>The heads of q or k at one (b, t): pointers and (batch, head, position) strides of input and output.</summary>
    private readonly unsafe struct Heads
    {
        private readonly float* input, output;
        private readonly long inB, inH, inT, outB, outH, outT;

        internal long Count { get; }

        private Heads(Tensor input, Tensor output)
        {
            this.input = (float*)TorchInterop.DataPointer(input);
            this.output = (float*)TorchInterop.DataPointer(output);
            (inB, inH, inT) = (input.stride(0), input.stride(1), input.stride(2));
            (outB, outH, outT) = (output.stride(0), output.stride(1), output.stride(2));
            Count = input.shape[1];
        }

        internal static Heads Of(Tensor? input, Tensor? output) => input is null ? default : new Heads(input, output!);

        internal void RotateRow(long b, long t, float* cos, float* sin, int rotary, int headDim, bool backward)
        {
            for (long h = 0; h < Count; h++)
            {
                float* x = input + b * inB + h * inH + t * inT;
                float* y = output + b * outB + h * outH + t * outT;
                Rotate(x, y, cos, sin, rotary / 2, transposed: backward);
                if (x != y && rotary < headDim)
                    new ReadOnlySpan<float>(x + rotary, headDim - rotary).CopyTo(new Span<float>(y + rotary, headDim - rotary));
            }
        }
    }

    /// <summary>
    /// forward: y1 = x1·c1 − x2·s1, y2 = x2·c2 + x1·s2; transposed (backward): y1 = x1·c1 + x2·s2,
    /// y2 = x2·c2 − x1·s1. y may alias x: each position is read before it is written.
    /// </summary>
    private static unsafe void Rotate(float* x, float* y, float* cos, float* sin, int half, bool transposed)
    {
        int i = 0;
        for (; i <= half - Vector<float>.Count; i += Vector<float>.Count)
        {
            var x1 = Vector.Load(x + i);
            var x2 = Vector.Load(x + half + i);
            var c1 = Vector.Load(cos + i);
            var c2 = Vector.Load(cos + half + i);
            var s1 = Vector.Load(sin + i);
            var s2 = Vector.Load(sin + half + i);
            if (transposed)
            {
                Vector.Store(x1 * c1 + x2 * s2, y + i);
                Vector.Store(x2 * c2 - x1 * s1, y + half + i);
            }
            else
            {
                Vector.Store(x1 * c1 - x2 * s1, y + i);
                Vector.Store(x2 * c2 + x1 * s2, y + half + i);
            }
        }
        for (; i < half; i++)
        {
            float x1 = x[i], x2 = x[half + i];
            if (transposed)
            {
                y[i] = x1 * cos[i] + x2 * sin[half + i];
                y[half + i] = x2 * cos[half + i] - x1 * sin[i];
            }
            else
            {
                y[i] = x1 * cos[i] - x2 * sin[i];
                y[half + i] = x2 * cos[half + i] + x1 * sin[half + i];
            }
        }
    }
}
