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
