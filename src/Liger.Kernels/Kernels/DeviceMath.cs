using System.Runtime.CompilerServices;
using ILGPU;

namespace Liger.Kernels.Kernels;

/// <summary>Math helpers for device code that compile to native PTX instructions (no libdevice needed).</summary>
internal static class DeviceMath
{
    private const float Log2E = 1.4426950408889634f;

    /// <summary>e^x through ex2 (PTX ex2.approx, about 2 ulp; Triton's tl.exp compiles to the same).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Exp(float x) => IntrinsicMath.CPUOnly.Exp2(x * Log2E);

    /// <summary>1 / (1 + e^-x).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Sigmoid(float x) => 1f / (1f + Exp(-x));

    /// <summary>
    /// tanh(x) within 1.3 ulp for every float when e^x is exact (the CPU), about 2 ulp through ex2.approx
    /// (tested over a dense sweep). Computed on |x|, x's sign put back last, so tanh is exactly odd and
    /// tanh(-0) = -0. Below |x| = 1 an odd polynomial: there 1 - e^-2|x| would cancel and lose the relative
    /// accuracy of small results. From 1 up, 1 - 2q / (1 + q) with q = e^-2|x| &lt;= e^-2, where q's own
    /// error reaches the result damped (by at most 0.28) and q cannot overflow, so large |x| give exactly
    /// +-1 and infinities too; NaN stays NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Tanh(float x)
    {
        float magnitude = IntrinsicMath.Abs(x);
        float result;
        if (magnitude < 1f)
        {
            // tanh(m) = m + m^3 P(m^2); P is a near-minimax (Chebyshev) fit on [0, 1], its error below 0.04 ulp.
            float s = magnitude * magnitude;
            float p = 1.42793186e-4f;
            p = p * s - 9.23500862e-4f;
            p = p * s + 3.20680346e-3f;
            p = p * s - 8.69784784e-3f;
            p = p * s + 2.18295492e-2f;
            p = p * s - 5.39634153e-2f;
            p = p * s + 1.33333102e-1f;
            p = p * s - 3.33333343e-1f;
            result = magnitude + magnitude * s * p;
        }
        else
        {
            float q = Exp(-2f * magnitude);
            result = 1f - 2f * q / (1f + q);
        }
        // The sign by bits, not IntrinsicMath.CopySign: ILGPU 1.5.3 swaps CopySign's operands in PTX
        // (m4rs-mt/ILGPU#1361), which would return |x| on the GPU.
        return Interop.IntAsFloat(Interop.FloatAsInt(result) | (Interop.FloatAsInt(x) & 0x80000000u));
    }

    /// <summary>
    /// max(a, b) that returns NaN when either is NaN, as torch.max / amax and .NET's Math.Max do. Math.Max
    /// compiles to PTX max.f32 (fmaxf: the non-NaN operand wins), so a NaN seen by a GPU reduction
    /// vanished there while the emulator kept it. Non-short-circuit operators, so ILGPU emits no branch:
    /// setp.gt, testp.notanumber, or.pred, selp (4 PTX instructions instead of max.f32's 1).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float NanMax(float a, float b) => (a > b) | float.IsNaN(a) ? a : b;

    /// <summary>Whether <paramref name="a"/> comes before <paramref name="b"/> in torch.argmax's order: NaN above everything.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool Above(float a, float b) => (a > b) | (float.IsNaN(a) & !float.IsNaN(b));

    /// <summary>1 / sqrt(x) with a correctly rounded square root and division, as torch's CPU rsqrt.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Rsqrt(float x) => 1f / MathF.Sqrt(x);
}

/// <summary>Reductions across the threads of one group (thread block).</summary>
internal static class GroupReduce
{
    /// <summary>
    /// The sum of <paramref name="value"/> over the group, returned to every thread. Deterministic: a fixed
    /// shuffle tree per warp, then every warp reduces the warp totals with the same tree and takes lane
    /// 0's result, so all threads hold the identical value. (ILGPU.Algorithms' group reduction adds warp
    /// totals with shared-memory atomics, whose order, and so the rounding, changes from run to run.)
    /// One barrier per call: the totals live in one of two shared slots chosen by <paramref name="parity"/>,
    /// so consecutive calls (pass 0, 1, 0, ...) never overwrite totals another warp may still be reading.
    /// The group size must be a multiple of the warp size, at most 32 warps.
    /// </summary>
    internal static float Sum(float value, int parity)
    {
        value = WarpSum(value);
        var warpTotals = SharedMemory.Allocate<float>(64);
        int slot = (parity & 1) * 32;
        if (Warp.IsFirstLane)
            warpTotals[slot + Warp.WarpIdx] = value;
        Group.Barrier();
        float total = Warp.LaneIdx < Group.DimX / Warp.WarpSize ? warpTotals[slot + Warp.LaneIdx] : 0f;
        return Warp.Shuffle(WarpSum(total), 0);
    }

    /// <summary>
    /// The maximum of <paramref name="value"/> over the group, to every thread (see <see cref="Sum(float, int)"/>);
    /// NaN if any thread holds NaN (torch's max propagates it).
    /// </summary>
    internal static float Max(float value, int parity)
    {
        value = WarpMax(value);
        var warpTotals = SharedMemory.Allocate<float>(64);
        int slot = (parity & 1) * 32;
        if (Warp.IsFirstLane)
            warpTotals[slot + Warp.WarpIdx] = value;
        Group.Barrier();
        float total = Warp.LaneIdx < Group.DimX / Warp.WarpSize ? warpTotals[slot + Warp.LaneIdx] : float.NegativeInfinity;
        return Warp.Shuffle(WarpMax(total), 0);
    }

    /// <summary>
    /// The index of the group's largest <paramref name="value"/>, the smallest such index on ties (as
    /// torch.argmax); every thread passes its own best value and the index where it found it. NaN counts
    /// as the largest (torch.argmax returns the first NaN's index).
    /// </summary>
    internal static int ArgMax(float value, int index, int parity)
    {
        (value, index) = WarpArgMax(value, index);
        var values = SharedMemory.Allocate<float>(64);
        var indices = SharedMemory.Allocate<int>(64);
        int slot = (parity & 1) * 32;
        if (Warp.IsFirstLane)
        {
            values[slot + Warp.WarpIdx] = value;
            indices[slot + Warp.WarpIdx] = index;
        }
        Group.Barrier();
        bool present = Warp.LaneIdx < Group.DimX / Warp.WarpSize;
        (_, int best) = WarpArgMax(present ? values[slot + Warp.LaneIdx] : float.NegativeInfinity,
            present ? indices[slot + Warp.LaneIdx] : int.MaxValue);
        return Warp.Shuffle(best, 0);
    }

    private static float WarpMax(float value)
    {
        for (int delta = Warp.WarpSize / 2; delta > 0; delta >>= 1)
            value = DeviceMath.NanMax(value, Warp.ShuffleDown(value, delta));
        return value;
    }

    private static (float Value, int Index) WarpArgMax(float value, int index)
    {
        for (int delta = Warp.WarpSize / 2; delta > 0; delta >>= 1)
        {
            float otherValue = Warp.ShuffleDown(value, delta);
            int otherIndex = Warp.ShuffleDown(index, delta);
            bool tie = otherValue == value || (float.IsNaN(otherValue) && float.IsNaN(value));
            if (DeviceMath.Above(otherValue, value) || (tie && otherIndex < index))
            {
                value = otherValue;
                index = otherIndex;
            }
        }
        return (value, index);
    }

    /// <summary>
    /// Two sums over the group for the price of one barrier, with the guarantees of
    /// <see cref="Sum(float, int)"/> (deterministic, identical in every thread). Its shared slots are its
    /// own, so calls of the two overloads may follow each other; consecutive calls of this one must
    /// alternate <paramref name="parity"/>.
    /// </summary>
    internal static void Sum(float a, float b, int parity, out float sumA, out float sumB)
    {
        a = WarpSum(a);
        b = WarpSum(b);
        var warpTotals = SharedMemory.Allocate<float>(128);
        int slot = (parity & 1) * 64;
        if (Warp.IsFirstLane)
        {
            warpTotals[slot + Warp.WarpIdx] = a;
            warpTotals[slot + 32 + Warp.WarpIdx] = b;
        }
        Group.Barrier();
        bool live = Warp.LaneIdx < Group.DimX / Warp.WarpSize;
        float totalA = live ? warpTotals[slot + Warp.LaneIdx] : 0f;
        float totalB = live ? warpTotals[slot + 32 + Warp.LaneIdx] : 0f;
        sumA = Warp.Shuffle(WarpSum(totalA), 0);
        sumB = Warp.Shuffle(WarpSum(totalB), 0);
    }

    private static float WarpSum(float value)
    {
        for (int delta = Warp.WarpSize / 2; delta > 0; delta >>= 1)
            value += Warp.ShuffleDown(value, delta);
        return value;
    }
}
