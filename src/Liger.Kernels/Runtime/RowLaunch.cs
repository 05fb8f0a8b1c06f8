using TorchSharp;

namespace Liger.Kernels.Runtime;

/// <summary>Launch decisions shared by the row-wise kernels (RMSNorm, LayerNorm, fused add + RMSNorm).</summary>
internal static class RowLaunch
{
    /// <summary>
    /// The vectorised row kernels need rows of whole 8-element chunks, one chunk per thread of a group,
    /// and 16-byte aligned data; float16 has no vector codec yet and takes the scalar kernels.
    /// </summary>
    internal static bool Vectorizable(KernelDevice device, long cols, params torch.Tensor[] tensors) =>
        VectorizableUpTo(device, device.MaxGroupSize, cols, tensors);

    /// <summary>
    /// Widest row, in 8-element chunks, for vectorised backwards that hold more registers per thread
    /// than a 1024-thread group may have on an H100 ("too many resources requested for launch" at
    /// H = 8192): LayerNorm's and fused add + RMSNorm's. Wider rows take their scalar kernels.
    /// </summary>
    internal const int MaxChunksOfHeavyKernels = 512;

    /// <summary><see cref="Vectorizable"/> for a kernel that launches at most <paramref name="maxChunks"/> threads a group.</summary>
    internal static bool VectorizableUpTo(KernelDevice device, int maxChunks, long cols, params torch.Tensor[] tensors) =>
        tensors[0].dtype != torch.ScalarType.Float16 && cols % 8 == 0 && cols / 8 <= Math.Min(maxChunks, device.MaxGroupSize)
        && TensorViews.VectorFriendly(tensors);

    /// <summary>
    /// Whether a scalar backward can keep <paramref name="accumulators"/> fp32 rows of weight-gradient
    /// partials (dW, dB) in one group's shared memory; otherwise those gradients come from torch ops.
    /// </summary>
    internal static bool SharedAccumulatorsFit(KernelDevice device, long cols, int accumulators) =>
        accumulators * cols * sizeof(float) + 256 <= device.MaxSharedMemoryPerGroup;
}
