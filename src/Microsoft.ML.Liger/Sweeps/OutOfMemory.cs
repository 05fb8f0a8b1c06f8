namespace Microsoft.ML.Liger.Sweeps;

/// <summary>Tells an out-of-memory failure (the point does not fit) from other failures, and cleans up after one.</summary>
internal static class OutOfMemory
{
    // libtorch's messages reach .NET as TorchSharp exceptions carrying the C++ text: the CUDA caching allocator's
    // "CUDA out of memory. Tried to allocate ...", the CPU allocator's "DefaultCPUAllocator: can't allocate memory",
    // and std::bad_alloc; CUDA's own error name, should a kernel launch report it.
    private static readonly string[] Markers =
    [
        "CUDA out of memory", "OutOfMemory", "out of memory", "CUDA_ERROR_OUT_OF_MEMORY", "bad_alloc", "can't allocate memory",
    ];

    /// <summary>Whether <paramref name="exception"/>, or an exception inside it, is an out-of-memory failure.</summary>
    public static bool Is(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is OutOfMemoryException || Markers.Any(m => e.Message.Contains(m, StringComparison.OrdinalIgnoreCase)))
                return true;
            if (e is AggregateException aggregate && aggregate.InnerExceptions.Any(Is))
                return true;
        }
        return false;
    }

    /// <summary>
    /// Frees what the failed trial left behind before the next one starts: the tensors only its finalizers still
    /// hold go back to the allocator. (TorchSharp does not bind <c>torch.cuda.empty_cache</c>; the memory then stays
    /// in the CUDA caching allocator, where the next trial reuses it.)
    /// </summary>
    public static void Release()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }
}
