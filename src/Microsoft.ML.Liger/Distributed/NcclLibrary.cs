using System.Runtime.InteropServices;

namespace Microsoft.ML.Liger.Distributed;

/// <summary>NCCL's 128-byte unique id, passed by value to ncclCommInitRank.</summary>
[StructLayout(LayoutKind.Sequential, Size = NcclUniqueId.Size)]
internal unsafe struct NcclUniqueId
{
    public const int Size = 128;
    public fixed byte Bytes[Size];

    public readonly byte[] ToArray()
    {
        var array = new byte[Size];
        for (int i = 0; i < Size; i++)
            array[i] = Bytes[i];
        return array;
    }

    public static NcclUniqueId From(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Size)
            throw new ArgumentException($"An NCCL unique id has {Size} bytes; got {bytes.Length}.", nameof(bytes));
        var id = new NcclUniqueId();
        for (int i = 0; i < Size; i++)
            id.Bytes[i] = bytes[i];
        return id;
    }
}

/// <summary>
/// NCCL (libnccl.so.2) bound at run time from the host: TorchSharp's CUDA build links no NCCL of its own, while PyTorch's
/// wheels bring one (nvidia/nccl/lib). Searched in order: <see cref="PathVariable"/>, the already-loaded or system
/// libnccl.so.2 (libtorch_cuda often loads it first), then every Python site-packages' nvidia/nccl/lib.
/// </summary>
internal sealed unsafe class NcclLibrary
{
    /// <summary>Environment variable with the library's path, tried first.</summary>
    public const string PathVariable = "LIGER_NCCL_LIBRARY";
    public const string Name = "libnccl.so.2";

    // ncclDataType_t and ncclRedOp_t values (nccl.h).
    public const int Uint8 = 1, Int32 = 2, Int64 = 4, Float16 = 6, Float32 = 7, Float64 = 8, BFloat16 = 9;
    public const int OpSum = 0, OpAvg = 4;

    private static NcclLibrary? loaded;

    public readonly delegate* unmanaged<NcclUniqueId*, int> GetUniqueId;
    public readonly delegate* unmanaged<IntPtr*, int, NcclUniqueId, int, int> CommInitRank;
    /// <summary>ncclAllReduce(sendbuff, recvbuff, count, datatype, op, comm, stream): in place when both buffers are the same.</summary>
    public readonly delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int> AllReduce;

    /// <summary>ncclBroadcast(sendbuff, recvbuff, count, datatype, root, comm, stream).</summary>
    public readonly delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int> Broadcast;
    public readonly delegate* unmanaged<int> GroupStart, GroupEnd;
    public readonly delegate* unmanaged<IntPtr, int> CommDestroy;
    public readonly delegate* unmanaged<int, IntPtr> GetErrorString;
    public readonly delegate* unmanaged<int*, int> GetVersion;

    private NcclLibrary(IntPtr library)
    {
        IntPtr E(string name) => NativeLoader.Export(library, name, Name);
        GetUniqueId = (delegate* unmanaged<NcclUniqueId*, int>)E("ncclGetUniqueId");
        CommInitRank = (delegate* unmanaged<IntPtr*, int, NcclUniqueId, int, int>)E("ncclCommInitRank");
        AllReduce = (delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int>)E("ncclAllReduce");
        Broadcast = (delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int>)E("ncclBroadcast");
        GroupStart = (delegate* unmanaged<int>)E("ncclGroupStart");
        GroupEnd = (delegate* unmanaged<int>)E("ncclGroupEnd");
        CommDestroy = (delegate* unmanaged<IntPtr, int>)E("ncclCommDestroy");
        GetErrorString = (delegate* unmanaged<int, IntPtr>)E("ncclGetErrorString");
        GetVersion = (delegate* unmanaged<int*, int>)E("ncclGetVersion");
    }

    /// <summary>The library, loaded once per process.</summary>
    /// <exception cref="DllNotFoundException">No libnccl.so.2 was found (the message lists where it looked and how to point at one).</exception>
    public static NcclLibrary Load() => loaded ??= LoadFrom(Candidates());

    /// <summary>The first of <paramref name="candidates"/> that loads.</summary>
    internal static NcclLibrary LoadFrom(IEnumerable<string> candidates) => new(Find(candidates));

    internal static IEnumerable<string> Candidates()
    {
        if (Environment.GetEnvironmentVariable(PathVariable) is { Length: > 0 } explicitPath)
            yield return explicitPath;
        yield return Name;
        foreach (var folder in PythonNcclFolders())
            yield return Path.Combine(folder, Name);
    }

    /// <summary>nvidia/nccl/lib under the site-packages of the Python installs in the usual places (PyTorch's wheels put NCCL there).</summary>
    private static IEnumerable<string> PythonNcclFolders()
    {
        var roots = new List<string> { "/usr/local/lib", "/usr/lib", "/opt/conda/lib" };
        if (Environment.GetEnvironmentVariable("VIRTUAL_ENV") is { Length: > 0 } venv) roots.Insert(0, Path.Combine(venv, "lib"));
        if (Environment.GetEnvironmentVariable("CONDA_PREFIX") is { Length: > 0 } conda) roots.Insert(0, Path.Combine(conda, "lib"));
        if (Environment.GetEnvironmentVariable("HOME") is { Length: > 0 } home) roots.Add(Path.Combine(home, ".local", "lib"));
        foreach (var root in roots.Where(Directory.Exists))
        {
            IEnumerable<string> pythons;
            try
            {
                pythons = Directory.GetDirectories(root, "python3*");
            }
            catch (IOException)
            {
                continue;
            }
            catch (UnauthorizedAccessException)
            {
                continue;
            }
            foreach (var python in pythons)
                foreach (var packages in new[] { "site-packages", "dist-packages" })
                {
                    string folder = Path.Combine(python, packages, "nvidia", "nccl", "lib");
                    if (Directory.Exists(folder))
                        yield return folder;
                }
        }
    }

    private static IntPtr Find(IEnumerable<string> candidates) =>
        NativeLoader.Load(candidates, out var errors) ?? throw new DllNotFoundException(
            $"The NCCL backend needs {Name}, which could not be loaded (tried: {string.Join("; ", errors)}). Install NCCL " +
            $"(for example with PyTorch: pip install torch brings nvidia/nccl/lib/{Name}), or set {PathVariable} to the library's full path.");

    /// <summary>Throws naming <paramref name="call"/> and NCCL's message when <paramref name="status"/> is not ncclSuccess.</summary>
    public void Check(int status, string call)
    {
        if (status != 0)
            throw new InvalidOperationException($"{call} failed: {Marshal.PtrToStringUTF8(GetErrorString(status)) ?? $"error {status}"} (NCCL result {status}; NCCL_DEBUG=INFO says more).");
    }
}
