using Liger.Kernels.Runtime;
using TorchSharp;

namespace Microsoft.ML.Liger;

/// <summary>
/// The entry point to Liger from ML.NET: <c>mlContext.Liger()</c>. Fine-tuning and preference-alignment
/// estimators hang off this catalog; for now it tells where Liger's kernels run for the context.
/// </summary>
public sealed class LigerCatalog
{
    internal LigerCatalog(MLContext context) => Context = context;

    /// <summary>The ML.NET context this catalog belongs to.</summary>
    public MLContext Context { get; }

    /// <summary>
    /// The torch device training will use: cuda:<see cref="MLContext.GpuDeviceId"/> when it is set and
    /// CUDA is available, the CPU otherwise (or an error when <see cref="MLContext.FallbackToCpu"/> is false).
    /// </summary>
    public torch.Device Device
    {
        get
        {
            if (Context.GpuDeviceId is int id)
            {
                if (torch.cuda.is_available() && id < torch.cuda.device_count())
                    return new torch.Device(DeviceType.CUDA, id);
                if (!Context.FallbackToCpu)
                    throw new InvalidOperationException(
                        $"MLContext.GpuDeviceId is {id} but CUDA device {id} is not available, and FallbackToCpu is false.");
            }
            return torch.CPU;
        }
    }

    /// <summary>Where Liger ops run on <see cref="Device"/>, in words (kernel device or TorchSharp CPU path).</summary>
    public string DescribeKernels()
    {
        using var probe = torch.empty(1, device: Device);
        return LigerRuntime.Describe(probe);
    }
}

/// <summary>Adds <c>Liger()</c> to <see cref="MLContext"/>.</summary>
public static class LigerCatalogExtensions
{
    /// <summary>Liger's fused-kernel training catalog for this context.</summary>
    public static LigerCatalog Liger(this MLContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new LigerCatalog(context);
    }
}
