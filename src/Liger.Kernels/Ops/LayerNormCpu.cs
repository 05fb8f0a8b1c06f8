using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Liger.Kernels.Runtime;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace Liger.Kernels.Ops;

/// <summary>
/// LayerNorm's CPU path for float32: row by row with SIMD loops, rows spread over cores. Eager's
/// LayerNorm is ATen's fused native kernel (two passes over a row forward), which a composite of torch
/// ops (about ten tensor passes each way) cannot match, nor one built from single-operation
/// primitives (seven in-cache passes forward, ten backward, measured slower than eager). Here the
/// forward makes three passes over a row (a rough mean, the corrected statistics, y) and the backward
/// two (the row's two sums with dW and dB, then dx), the later ones in L1. dW and dB: one fp32 partial
/// row per fixed block of rows, summed in block order, so the result does not depend on thread scheduling.
/// </summary>
internal static class LayerNormCpu
{
    // Rows per parallel work item: about 64 KiB of input, enough to amortise the scheduling.
    private const int ElementsPerItem = 16384;

    // Blocks of rows with their own dW/dB partials in the backward: at most this many.
    private const int MaxBlocks = 64;

    internal static bool Applies(params Tensor[] tensors) =>
        tensors.All(t => t.dtype == ScalarType.Float32 && t.device.type == TorchSharp.DeviceType.CPU && t.is_contiguous());

    /// <summary>y = (x - mean) * rstd * w (+ b) per row; writes the fp32 mean and rstd.</summary>
    internal static unsafe void Forward(Tensor x, Tensor weight, Tensor? bias, Tensor y, Tensor mean, Tensor rstd, float eps)
    {
        long rows = x.shape[0];
        int cols = (int)x.shape[1];
        float* px = (float*)TorchInterop.DataPointer(x), pw = (float*)TorchInterop.DataPointer(weight), py = (float*)TorchInterop.DataPointer(y);
        float* pb = bias is null ? null : (float*)TorchInterop.DataPointer(bias);
        float* pm = (float*)TorchInterop.DataPointer(mean), pr = (float*)TorchInterop.DataPointer(rstd);
        long rowsPerItem = Math.Max(1, ElementsPerItem / cols);
        Parallel.For(0, (rows + rowsPerItem - 1) / rowsPerItem, item =>
        {
            var w = new ReadOnlySpan<float>(pw, cols);
            var b = pb is null ? default : new ReadOnlySpan<float>(pb, cols);
            for (long row = item * rowsPerItem, end = Math.Min(rows, row + rowsPerItem); row < end; row++)
            {
                var xr = new ReadOnlySpan<float>(px + row * cols, cols);
                // Corrected two-pass statistics, as the kernels (LayerNormKernels): the correction
                // recovers what the fp32 sum behind the first mean loses.
                float roughMean = TensorPrimitives.Sum(xr) / cols;
                var (sumD, sumD2) = CenteredSums(xr, roughMean);
                float shift = sumD / cols;
                float variance = Math.Max(sumD2 / cols - shift * shift, 0f);
                float r = 1f / MathF.Sqrt(variance + eps);
                Normalize(xr, roughMean, shift, r, w, b, new Span<float>(py + row * cols, cols));
                pm[row] = roughMean + shift;
                pr[row] = r;
            }
        });
        GC.KeepAlive(x); GC.KeepAlive(weight); GC.KeepAlive(bias); GC.KeepAlive(y); GC.KeepAlive(mean); GC.KeepAlive(rstd);
    }

    /// <summary>
    /// dx = rstd * (w·dy - xhat * mean(w·dy·xhat) - mean(w·dy)); dW = Σ dy·xhat, dB = Σ dy (when
    /// <paramref name="db"/> is given), written into <paramref name="dw"/> and <paramref name="db"/>.
    /// </summary>
    internal static unsafe void Backward(Tensor dy, Tensor x, Tensor weight, Tensor mean, Tensor rstd, Tensor dx, Tensor dw, Tensor? db)
    {
        long rows = x.shape[0];
        int cols = (int)x.shape[1];
        float* pdy = (float*)TorchInterop.DataPointer(dy), px = (float*)TorchInterop.DataPointer(x), pw = (float*)TorchInterop.DataPointer(weight);
        float* pm = (float*)TorchInterop.DataPointer(mean), pr = (float*)TorchInterop.DataPointer(rstd), pdx = (float*)TorchInterop.DataPointer(dx);
        bool withBias = db is not null;
        int sums = withBias ? 2 : 1;
        long rowsPerBlock = Math.Max(Math.Max(1, ElementsPerItem / cols), (rows + MaxBlocks - 1) / MaxBlocks);
        int blocks = (int)((rows + rowsPerBlock - 1) / rowsPerBlock);
        float[] partials = ArrayPool<float>.Shared.Rent(Math.Max(1, blocks * sums * cols));
        Parallel.For(0, blocks, block =>
        {
            var w = new ReadOnlySpan<float>(pw, cols);
            var accW = partials.AsSpan(block * sums * cols, cols);
            var accB = withBias ? partials.AsSpan((block * sums + 1) * cols, cols) : default;
            accW.Clear();
            accB.Clear();
            for (long row = block * rowsPerBlock, end = Math.Min(rows, row + rowsPerBlock); row < end; row++)
            {
                var xr = new ReadOnlySpan<float>(px + row * cols, cols);
                var dyr = new ReadOnlySpan<float>(pdy + row * cols, cols);
                float mu = pm[row], r = pr[row];
                var (sumWdyXhat, sumWdy) = RowSumsAndParameterGrads(xr, dyr, w, mu, r, accW, accB);
                InputGrad(xr, dyr, w, mu, r, sumWdyXhat / cols, sumWdy / cols, new Span<float>(pdx + row * cols, cols));
            }
        });

        // Block partials summed in block order: the same result whatever the thread count.
        var dwSpan = new Span<float>((float*)TorchInterop.DataPointer(dw), cols);
        var dbSpan = withBias ? new Span<float>((float*)TorchInterop.DataPointer(db!), cols) : default;
        dwSpan.Clear();
        dbSpan.Clear();
        for (int block = 0; block < blocks; block++)
        {
            TensorPrimitives.Add(dwSpan, partials.AsSpan(block * sums * cols, cols), dwSpan);
            if (withBias)
                TensorPrimitives.Add(dbSpan, partials.AsSpan((block * sums + 1) * cols, cols), dbSpan);
        }
        ArrayPool<float>.Shared.Return(partials);
        GC.KeepAlive(dy); GC.KeepAlive(x); GC.KeepAlive(weight); GC.KeepAlive(mean); GC.KeepAlive(rstd);
        GC.KeepAlive(dx); GC.KeepAlive(dw); GC.KeepAlive(db);
    }

    // ---- one row, SIMD over Vector<float> lanes with a scalar tail ----

    /// <summary>Σd and Σd² of d = x - <paramref name="center"/>.</summary>
    private static (float SumD, float SumD2) CenteredSums(ReadOnlySpan<float> x, float center)
    {
        var xv = MemoryMarshal.Cast<float, Vector<float>>(x);
        var c = new Vector<float>(center);
        Vector<float> s1 = Vector<float>.Zero, s2 = Vector<float>.Zero;
        foreach (var v in xv)
        {
            var d = v - c;
            s1 += d;
            s2 += d * d;
        }
        float sumD = Vector.Sum(s1), sumD2 = Vector.Sum(s2);
        for (int i = xv.Length * Vector<float>.Count; i < x.Length; i++)
        {
            float d = x[i] - center;
            sumD += d;
            sumD2 += d * d;
        }
        return (sumD, sumD2);
    }

    /// <summary>y = ((x - m0) - shift) * r * w (+ b), the centring as the kernels do it.</summary>
    private static void Normalize(ReadOnlySpan<float> x, float roughMean, float shift, float r, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, Span<float> y)
    {
        bool withBias = !b.IsEmpty;
        var xv = MemoryMarshal.Cast<float, Vector<float>>(x);
        var wv = MemoryMarshal.Cast<float, Vector<float>>(w);
        var bv = MemoryMarshal.Cast<float, Vector<float>>(b);
        var yv = MemoryMarshal.Cast<float, Vector<float>>(y);
        Vector<float> m0 = new(roughMean), s = new(shift), rv = new(r);
        for (int i = 0; i < xv.Length; i++)
        {
            var o = (xv[i] - m0 - s) * rv * wv[i];
            yv[i] = withBias ? o + bv[i] : o;
        }
        for (int i = xv.Length * Vector<float>.Count; i < x.Length; i++)
        {
            float o = (x[i] - roughMean - shift) * r * w[i];
            y[i] = withBias ? o + b[i] : o;
        }
    }

    /// <summary>
    /// Σ w·dy·xhat and Σ w·dy over the row, adding dy·xhat to <paramref name="accW"/> and dy to
    /// <paramref name="accB"/> (when not empty) on the way.
    /// </summary>
    private static (float SumWdyXhat, float SumWdy) RowSumsAndParameterGrads(ReadOnlySpan<float> x, ReadOnlySpan<float> dy,
        ReadOnlySpan<float> w, float mu, float r, Span<float> accW, Span<float> accB)
    {
        bool withBias = !accB.IsEmpty;
        var xv = MemoryMarshal.Cast<float, Vector<float>>(x);
        var dyv = MemoryMarshal.Cast<float, Vector<float>>(dy);
        var wv = MemoryMarshal.Cast<float, Vector<float>>(w);
        var awv = MemoryMarshal.Cast<float, Vector<float>>(accW);
        var abv = MemoryMarshal.Cast<float, Vector<float>>(accB);
        Vector<float> muv = new(mu), rv = new(r), s1 = Vector<float>.Zero, s2 = Vector<float>.Zero;
        for (int i = 0; i < xv.Length; i++)
        {
            var g = dyv[i];
            var xhat = (xv[i] - muv) * rv;
            var wdy = wv[i] * g;
            s1 += wdy * xhat;
            s2 += wdy;
            awv[i] += g * xhat;
            if (withBias)
                abv[i] += g;
        }
        float sumWdyXhat = Vector.Sum(s1), sumWdy = Vector.Sum(s2);
        for (int i = xv.Length * Vector<float>.Count; i < x.Length; i++)
        {
            float g = dy[i], xhat = (x[i] - mu) * r, wdy = w[i] * g;
            sumWdyXhat += wdy * xhat;
            sumWdy += wdy;
            accW[i] += g * xhat;
            if (withBias)
                accB[i] += g;
        }
        return (sumWdyXhat, sumWdy);
    }

    /// <summary>dx = (w·dy - (xhat·c1 + c2)) · r.</summary>
    private static void InputGrad(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, ReadOnlySpan<float> w, float mu, float r,
        float c1, float c2, Span<float> dx)
    {
        var xv = MemoryMarshal.Cast<float, Vector<float>>(x);
        var dyv = MemoryMarshal.Cast<float, Vector<float>>(dy);
        var wv = MemoryMarshal.Cast<float, Vector<float>>(w);
        var dxv = MemoryMarshal.Cast<float, Vector<float>>(dx);
        Vector<float> muv = new(mu), rv = new(r), c1v = new(c1), c2v = new(c2);
        for (int i = 0; i < xv.Length; i++)
            dxv[i] = (wv[i] * dyv[i] - ((xv[i] - muv) * rv * c1v + c2v)) * rv;
        for (int i = xv.Length * Vector<float>.Count; i < x.Length; i++)
            dx[i] = (w[i] * dy[i] - ((x[i] - mu) * r * c1 + c2)) * r;
    }
}
