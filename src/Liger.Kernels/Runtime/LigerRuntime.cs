using ILGPU;
using ILGPU.Backends.PTX;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using TorchSharp;

namespace Liger.Kernels.Runtime;

/// <summary>How Liger ops run on CPU tensors.</summary>
public enum CpuExecution
{
    /// <summary>Each op's TorchSharp path: the same math and memory behaviour at TorchSharp speed (default).</summary>
    Torch,

    /// <summary>The ILGPU kernels on ILGPU's CPU accelerator, a GPU emulator: slow, used to verify kernel code.</summary>
    IlgpuEmulator,
}

/// <summary>Where an op ran, reported through <see cref="LigerRuntime.OpExecuted"/>.</summary>
public enum ExecutionPath
{
    /// <summary>ILGPU kernels on a CUDA GPU, in libtorch's primary context.</summary>
    CudaKernel,

    /// <summary>ILGPU kernels on ILGPU's CPU accelerator (emulated GPU threads).</summary>
    EmulatedKernel,

    /// <summary>The op's TorchSharp CPU path.</summary>
    TorchCpu,
}

/// <summary>
/// The one owner of ILGPU in the process: its context, the CUDA accelerators (one per torch device,
/// sharing libtorch's primary context) and the CPU emulator, each with its compiled kernels.
/// </summary>
public static class LigerRuntime
{
    private static readonly Lazy<Context> context = new(CreateContext);
    private static readonly Lazy<KernelDevice> emulator = new(() =>
        new KernelDevice(context.Value.CreateCPUAccelerator(0), 0));
    private static readonly Dictionary<int, KernelDevice> cudaDevices = new();
    private static readonly object gate = new();

    /// <summary>How ops run on CPU tensors; <see cref="CpuExecution.Torch"/> unless set.</summary>
    /// <remarks>
    /// Read from the environment variable LIGER_CPU_EXECUTION (torch | emulator) at start-up, so a test
    /// run can switch the whole process; setting the property overrides it.
    /// </remarks>
    public static CpuExecution CpuExecution { get; set; } =
        Environment.GetEnvironmentVariable("LIGER_CPU_EXECUTION")?.Trim().ToLowerInvariant() switch
        {
            "emulator" or "ilgpu" => CpuExecution.IlgpuEmulator,
            _ => CpuExecution.Torch,
        };

    /// <summary>Raised after each Liger op with the op's name and where it ran (for logs and tests).</summary>
    public static event Action<string, ExecutionPath>? OpExecuted;

    internal static void Report(string op, ExecutionPath path) => OpExecuted?.Invoke(op, path);

    /// <summary>The ILGPU context (O2, PTX enhanced mode so aligned structure loads become vector loads).</summary>
    internal static Context Context => context.Value;

    /// <summary>ILGPU's CPU accelerator, emulating a GPU with 32-thread warps.</summary>
    internal static KernelDevice Emulator => emulator.Value;

    /// <summary>The CUDA kernel device for torch device cuda:<paramref name="index"/>.</summary>
    /// <exception cref="InvalidOperationException">No CUDA device with that index is visible to ILGPU.</exception>
    internal static KernelDevice Cuda(int index = 0)
    {
        lock (gate)
        {
            if (cudaDevices.TryGetValue(index, out var device))
                return device;
            // First use of this GPU: a CPU-only libtorch, a missing driver or a wrong index gets its reason here.
            TorchRuntimeCheck.RequireCuda(index, $"Liger's CUDA kernels were asked for cuda:{index}");
            int count = Context.GetCudaDevices().Count;
            if (index < 0 || index >= count)
                throw new InvalidOperationException(
                    $"CUDA device {index} was requested but ILGPU sees {count} CUDA device(s). " +
                    "Check the NVIDIA driver (libcuda.so.1) and CUDA_VISIBLE_DEVICES.");
            device = new KernelDevice(CudaContextSharing.CreateInPrimaryContext(Context, index), index);
            cudaDevices[index] = device;
            return device;
        }
    }

    /// <summary>
    /// The kernel device that serves <paramref name="tensor"/>'s device, or null when the op should take
    /// its TorchSharp CPU path (a CPU tensor with <see cref="CpuExecution"/> = Torch).
    /// </summary>
    internal static KernelDevice? KernelDeviceFor(torch.Tensor tensor, string argumentName)
    {
        var device = tensor.device;
        return device.type switch
        {
            DeviceType.CUDA => Cuda(device.index < 0 ? 0 : device.index),
            DeviceType.CPU => CpuExecution == CpuExecution.IlgpuEmulator ? Emulator : null,
            _ => throw new ArgumentException(
                $"Liger ops run on CPU or CUDA tensors; '{argumentName}' is on {device}.", argumentName),
        };
    }

    /// <summary>Where an op on <paramref name="tensor"/> would run, in words.</summary>
    public static string Describe(torch.Tensor tensor) =>
        KernelDeviceFor(tensor, nameof(tensor))?.ToString() ?? "TorchSharp CPU path (no kernel launch)";

    private static Context CreateContext() =>
        Context.Create(builder => builder
            .CPU(KernelDevice.EmulatedDevice)
            .Cuda()
            .Optimize(OptimizationLevel.O2)
            .PTXBackend(PTXBackendMode.Enhanced)
            .Math(MathMode.Default));
}
