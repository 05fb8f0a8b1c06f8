using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models.Weights;

/// <summary>
/// Finds state-dict entries that are one tensor under several names (tied weights). TorchSharp may hand out a
/// new wrapper, with its own handle, for the same parameter (native modules such as Embedding do), so the
/// identity is the memory: same device, address, dtype, shape and strides.
/// </summary>
internal static class SameTensor
{
    /// <summary>A key equal for entries that are the same tensor, distinct otherwise.</summary>
    public static object Key(Tensor tensor)
    {
        // Meta and empty tensors have no memory to compare: each is its own.
        if (tensor.device_type == DeviceType.META || tensor.NumberOfElements == 0)
            return tensor.Handle;
        return (tensor.device.ToString(), TorchInterop.DataPointer(tensor), tensor.dtype,
            string.Join(",", tensor.shape), string.Join(",", tensor.stride()));
    }

    /// <summary>For each name, the other names of the same tensor (empty for most).</summary>
    public static Dictionary<string, List<string>> Group(Dictionary<string, Tensor> state)
    {
        var byKey = state.GroupBy(entry => Key(entry.Value))
            .ToDictionary(group => group.Key, group => group.Select(entry => entry.Key).ToList());
        return state.ToDictionary(entry => entry.Key,
            entry => byKey[Key(entry.Value)].Where(other => other != entry.Key).ToList(), StringComparer.Ordinal);
    }
}
