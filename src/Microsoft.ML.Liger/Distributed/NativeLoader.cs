using System.Runtime.InteropServices;

namespace Microsoft.ML.Liger.Distributed;

/// <summary>Finds a host library from a list of candidates (an explicit path first), loaded with RTLD_GLOBAL.</summary>
internal static partial class NativeLoader
{
    private const int RtldNow = 0x2, RtldGlobal = 0x100;

    [LibraryImport("libc", EntryPoint = "dlopen", StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr DlOpen(string file, int mode);

    [LibraryImport("libc", EntryPoint = "dlerror")]
    private static partial IntPtr DlError();

    /// <summary>
    /// The first of <paramref name="candidates"/> that loads, or null with the loader's messages in <paramref name="errors"/>.
    /// RTLD_GLOBAL because Open MPI's plugins (mca_*.so) resolve their symbols against libmpi's global ones: .NET's own
    /// loader opens libraries RTLD_LOCAL, after which the first collective fails inside MPI_Init.
    /// </summary>
    public static IntPtr? Load(IEnumerable<string> candidates, out List<string> errors)
    {
        errors = [];
        foreach (var candidate in candidates)
        {
            IntPtr handle = DlOpen(candidate, RtldNow | RtldGlobal);
            if (handle != IntPtr.Zero)
                return handle;
            errors.Add($"{candidate}: {Marshal.PtrToStringUTF8(DlError()) ?? "not found"}");
        }
        return null;
    }

    /// <summary>The address of <paramref name="name"/> in <paramref name="library"/>, or an exception naming it.</summary>
    public static IntPtr Export(IntPtr library, string name, string libraryName) =>
        NativeLibrary.TryGetExport(library, name, out var address)
            ? address
            : throw new EntryPointNotFoundException($"{libraryName} has no export '{name}': it is not the library Liger expects (version too old?).");
}
