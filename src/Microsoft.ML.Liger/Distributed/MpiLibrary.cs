namespace Microsoft.ML.Liger.Distributed;

/// <summary>
/// Open MPI's libmpi.so.40 bound at run time (a missing library is then an error when a run asks for MPI, not when
/// the assembly loads). Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are the addresses of exported
/// globals (ompi_mpi_comm_world, ...), so they are looked up as exports; MPICH's integer handles are not supported.
/// </summary>
internal sealed unsafe class MpiLibrary
{
    /// <summary>Environment variable with the library's path, tried first.</summary>
    public const string PathVariable = "LIGER_MPI_LIBRARY";
    private const string Name = "libmpi.so.40";

    /// <summary>Open MPI's MPI_IN_PLACE.</summary>
    public static readonly IntPtr InPlace = 1;

    private static MpiLibrary? loaded;

    public readonly delegate* unmanaged<int*, int> Initialized, Finalized;
    public readonly delegate* unmanaged<int*, IntPtr*, int> Init;
    public readonly delegate* unmanaged<int> Finalize;
    public readonly delegate* unmanaged<IntPtr, int*, int> CommRank, CommSize;
    public readonly delegate* unmanaged<IntPtr, IntPtr, int, IntPtr, IntPtr, IntPtr, int> Allreduce;
    public readonly delegate* unmanaged<IntPtr, int, IntPtr, int, IntPtr, int> Bcast;
    public readonly delegate* unmanaged<IntPtr, int> Barrier;
    public readonly delegate* unmanaged<int, byte*, int*, int> ErrorString;
    public readonly IntPtr CommWorld, Float, Double, Int64, UInt8, Sum;

    private MpiLibrary(IntPtr library)
    {
        IntPtr E(string name) => NativeLoader.Export(library, name, Name);
        Initialized = (delegate* unmanaged<int*, int>)E("MPI_Initialized");
        Finalized = (delegate* unmanaged<int*, int>)E("MPI_Finalized");
        Init = (delegate* unmanaged<int*, IntPtr*, int>)E("MPI_Init");
        Finalize = (delegate* unmanaged<int>)E("MPI_Finalize");
        CommRank = (delegate* unmanaged<IntPtr, int*, int>)E("MPI_Comm_rank");
        CommSize = (delegate* unmanaged<IntPtr, int*, int>)E("MPI_Comm_size");
        Allreduce = (delegate* unmanaged<IntPtr, IntPtr, int, IntPtr, IntPtr, IntPtr, int>)E("MPI_Allreduce");
        Bcast = (delegate* unmanaged<IntPtr, int, IntPtr, int, IntPtr, int>)E("MPI_Bcast");
        Barrier = (delegate* unmanaged<IntPtr, int>)E("MPI_Barrier");
        ErrorString = (delegate* unmanaged<int, byte*, int*, int>)E("MPI_Error_string");
        CommWorld = E("ompi_mpi_comm_world");
        Float = E("ompi_mpi_float");
        Double = E("ompi_mpi_double");
        Int64 = E("ompi_mpi_int64_t");
        UInt8 = E("ompi_mpi_uint8_t");
        Sum = E("ompi_mpi_op_sum");
    }

    /// <summary>The library, loaded once per process.</summary>
    /// <exception cref="DllNotFoundException">Open MPI is not installed (the message says what to install or set).</exception>
    public static MpiLibrary Load() => loaded ??= LoadFrom(Candidates());

    /// <summary>The first of <paramref name="candidates"/> that loads.</summary>
    internal static MpiLibrary LoadFrom(IEnumerable<string> candidates) => new(Find(candidates));

    internal static IEnumerable<string> Candidates()
    {
        if (Environment.GetEnvironmentVariable(PathVariable) is { Length: > 0 } explicitPath)
            yield return explicitPath;
        yield return Name;
        yield return "/usr/lib/x86_64-linux-gnu/libmpi.so.40";
        yield return "/usr/lib64/openmpi/lib/libmpi.so.40";
    }

    private static IntPtr Find(IEnumerable<string> candidates) =>
        NativeLoader.Load(candidates, out var errors) ?? throw new DllNotFoundException(
            $"The MPI backend needs Open MPI's {Name}, which could not be loaded ({string.Join("; ", errors)}). Install Open MPI " +
            $"(Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev) or set {PathVariable} to the library's path, and start the ranks with mpirun.");

    /// <summary>Throws naming <paramref name="call"/> and MPI's message when <paramref name="status"/> is not MPI_SUCCESS.</summary>
    public void Check(int status, string call)
    {
        if (status == 0)
            return;
        var buffer = stackalloc byte[512];
        int length = 0;
        string message = ErrorString(status, buffer, &length) == 0 ? System.Text.Encoding.UTF8.GetString(buffer, length) : $"error {status}";
        throw new InvalidOperationException($"{call} failed: {message}.");
    }
}
