using TorchSharp;

namespace Microsoft.ML.Liger.Training;

/// <summary>
/// Peak memory between two readings: on a GPU the CUDA caching allocator's peak allocated bytes (through
/// <see cref="CudaMemoryStats"/>, when its shim is loaded); on the CPU the process's peak resident set (VmHWM),
/// which Linux lets a process reset (writing 5 to /proc/self/clear_refs), so each reading covers its own interval.
/// </summary>
internal sealed class MemoryMeter
{
    private readonly torch.Device device;
    private readonly CudaMemoryStats? cuda;
    private bool canResetCpuPeak = OperatingSystem.IsLinux();

    public MemoryMeter(torch.Device device)
    {
        this.device = device;
        if (device.type == DeviceType.CUDA)
            cuda = CudaMemoryStats.TryLoad();
    }

    /// <summary>Starts a new interval.</summary>
    public void Reset()
    {
        if (device.type == DeviceType.CUDA)
        {
            cuda?.ResetPeak(device.index < 0 ? 0 : device.index);
            return;
        }
        if (!canResetCpuPeak)
            return;
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            canResetCpuPeak = false; // then the reading is the process's peak so far
        }
    }

    /// <summary>Peak bytes since the last <see cref="Reset"/>, or null when this device cannot tell.</summary>
    public long? Peak()
    {
        if (device.type == DeviceType.CUDA)
            return cuda?.Peak(device.index < 0 ? 0 : device.index);
        if (OperatingSystem.IsLinux())
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0]) * 1024;
        }
        return System.Diagnostics.Process.GetCurrentProcess().PeakWorkingSet64;
    }
}
