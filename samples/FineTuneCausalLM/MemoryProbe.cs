using System.Runtime.InteropServices;

namespace FineTuneCausalLM;

/// <summary>
/// Makes the process's peak resident memory a fair measure of a step's tensors: glibc raises its mmap threshold
/// after large blocks are freed, after which freed tensor memory stays in the heap and in the resident set, so a
/// later, smaller run would read the earlier run's peak. A fixed threshold maps every large block on its own and
/// returns it to the system when freed.
/// </summary>
internal static partial class MemoryProbe
{
    private const int MmapThreshold = -3; // M_MMAP_THRESHOLD in malloc.h

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int Mallopt(int parameter, int value);

    public static void KeepLargeBlocksOutOfTheHeap()
    {
        if (OperatingSystem.IsLinux())
            Mallopt(MmapThreshold, 64 * 1024);
    }
}
