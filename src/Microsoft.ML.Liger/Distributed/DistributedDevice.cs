using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Distributed;

/// <summary>Which device a rank trains on.</summary>
internal static class DistributedDevice
{
    /// <summary>
    /// cuda:LocalRank for a data-parallel run on CUDA whose Device option names no GPU (null, or "cuda"): one process per
    /// GPU, as torchrun's LOCAL_RANK means. An explicit "cuda:N", and the CPU, stay as they are.
    /// </summary>
    public static Device Of(Device resolved, string? deviceOption, DistributedOptions? distributed)
    {
        if (distributed is null || resolved.type != DeviceType.CUDA || deviceOption is not null && resolved.index >= 0)
            return resolved;
        if (distributed.LocalRank >= torch.cuda.device_count())
            throw new ArgumentException(
                $"Distributed option LocalRank is {distributed.LocalRank}, but this machine has {torch.cuda.device_count()} GPU(s): start at most one process per GPU.",
                nameof(DistributedOptions.LocalRank));
        return new Device(DeviceType.CUDA, distributed.LocalRank);
    }
}
