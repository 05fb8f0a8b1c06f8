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
    /// tanh(x) to a few fp32 ulps for every x, from ex2 alone (MathF.Tanh would need libdevice). Near 0,
    /// 1 - 2/(e^2x + 1) would cancel (tanh(1e-3) would keep ~13 bits), so |x| &lt; 0.625 uses the odd
    /// minimax polynomial of Cephes' tanhf; beyond, the exponential form has no cancellation (tanh ≥ 0.55)
    /// and saturates to ±1 without overflow trouble (e^2x = inf gives exactly 1).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Tanh(float x)
    {
        float a = Math.Abs(x);
        if (a < 0.625f)
        {
            float z = x * x;
            float p = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z
                        + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z;
            return x + x * p;
        }
        float t = 1f - 2f / (Exp(2f * a) + 1f);
        return x < 0f ? -t : t;
    }

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

    /// <summary>The maximum of <paramref name="value"/> over the group, to every thread (see <see cref="Sum"/>).</summary>
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
    /// torch.argmax); every thread passes its own best value and the index where it found it.
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
            value = Math.Max(value, Warp.ShuffleDown(value, delta));
        return value;
    }

    private static (float Value, int Index) WarpArgMax(float value, int index)
    {
        for (int delta = Warp.WarpSize / 2; delta > 0; delta >>= 1)
        {
            float otherValue = Warp.ShuffleDown(value, delta);
            int otherIndex = Warp.ShuffleDown(index, delta);
            if (otherValue > value || (otherValue == value && otherIndex < index))
            {
                value = otherValue;
                index = otherIndex;
            }
        }
        return (value, index);
    }

    private static float WarpSum(float value)
    {
        for (int delta = Warp.WarpSize / 2; delta > 0; delta >>= 1)
            value += Warp.ShuffleDown(value, delta);
        return value;
    }
}
