using System.Reflection;
using System.Text.RegularExpressions;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using Liger.Kernels.Kernels;
using Liger.Kernels.Runtime;

namespace Liger.Benchmarks.Gpu;

/// <summary>
/// Writes the PTX ILGPU generates for each kernel (for sm_90), with no GPU: the first thing to read when
/// a kernel is slow (are loads 16 bytes wide? how many registers, barriers, local-memory spills?), and
/// the before/after comparison of a refactor that must not change device code (<c>diff -r</c> two dumps).
/// Every entry point the ops launch is listed, in every dtype the ops launch it with.
/// </summary>
internal static partial class PtxDump
{
    private static readonly (string Name, Type[] Codecs)[] VectorDtypes =
    [
        ("bf16", [typeof(ushort), typeof(BFloat16Codec), typeof(BFloat16x8), typeof(BFloat16x8Codec)]),
        ("fp32", [typeof(float), typeof(Float32Codec), typeof(Float8), typeof(Float32x8Codec)]),
    ];

    private static readonly (string Name, Type[] Codecs)[] ScalarDtypes =
    [
        ("bf16", [typeof(ushort), typeof(BFloat16Codec)]),
        ("fp32", [typeof(float), typeof(Float32Codec)]),
        ("fp16", [typeof(ushort), typeof(Float16Codec)]),
    ];

    /// <summary>Kernels whose type arguments are a dtype's codecs followed by <c>Extra</c>.</summary>
    private static readonly (Type Owner, string Name, bool Vectorized, Type[] Extra)[] Kernels =
    [
        (typeof(RmsNormKernels), nameof(RmsNormKernels.ForwardVectorized), true, []),
        (typeof(RmsNormKernels), nameof(RmsNormKernels.BackwardVectorized), true, []),
        (typeof(RmsNormKernels), nameof(RmsNormKernels.Forward), false, []),
        (typeof(RmsNormKernels), nameof(RmsNormKernels.Backward), false, []),
        (typeof(FusedAddRmsNormKernels), nameof(FusedAddRmsNormKernels.ForwardVectorized), true, []),
        (typeof(FusedAddRmsNormKernels), nameof(FusedAddRmsNormKernels.BackwardVectorized), true, []),
        (typeof(FusedAddRmsNormKernels), nameof(FusedAddRmsNormKernels.Forward), false, []),
        (typeof(FusedAddRmsNormKernels), nameof(FusedAddRmsNormKernels.Backward), false, []),
        (typeof(GatedKernels), nameof(GatedKernels.ForwardVectorized), true, [typeof(SiLU)]),
        (typeof(GatedKernels), nameof(GatedKernels.ForwardVectorized), true, [typeof(GeluTanh)]),
        (typeof(GatedKernels), nameof(GatedKernels.BackwardVectorized), true, [typeof(SiLU), typeof(KeepDc)]),
        (typeof(GatedKernels), nameof(GatedKernels.BackwardVectorized), true, [typeof(GeluTanh), typeof(KeepDc)]),
        (typeof(GatedKernels), nameof(GatedKernels.BackwardVectorized), true, [typeof(SiLU), typeof(ProductOverDc)]),
        (typeof(GatedKernels), nameof(GatedKernels.BackwardVectorized), true, [typeof(GeluTanh), typeof(ProductOverDc)]),
        (typeof(GatedKernels), nameof(GatedKernels.Forward), false, [typeof(SiLU)]),
        (typeof(GatedKernels), nameof(GatedKernels.Forward), false, [typeof(GeluTanh)]),
        (typeof(GatedKernels), nameof(GatedKernels.Backward), false, [typeof(SiLU), typeof(KeepDc)]),
        (typeof(GatedKernels), nameof(GatedKernels.Backward), false, [typeof(GeluTanh), typeof(KeepDc)]),
        (typeof(GatedKernels), nameof(GatedKernels.Backward), false, [typeof(SiLU), typeof(ProductOverDc)]),
        (typeof(GatedKernels), nameof(GatedKernels.Backward), false, [typeof(GeluTanh), typeof(ProductOverDc)]),
        (typeof(RopeKernels), nameof(RopeKernels.RotateVectorized), true, []),
        (typeof(RopeKernels), nameof(RopeKernels.Rotate), false, []),
        (typeof(CrossEntropyKernels), nameof(CrossEntropyKernels.RowsVectorized), true, []),
        (typeof(CrossEntropyKernels), nameof(CrossEntropyKernels.Rows), false, []),
        (typeof(CrossEntropyKernels), nameof(CrossEntropyKernels.ScaleRowsScalar), false, []),
        (typeof(LayerNormKernels), nameof(LayerNormKernels.ForwardVectorized), true, []),
        (typeof(LayerNormKernels), nameof(LayerNormKernels.BackwardVectorized), true, []),
        (typeof(LayerNormKernels), nameof(LayerNormKernels.Forward), false, []),
        (typeof(LayerNormKernels), nameof(LayerNormKernels.Backward), false, []),
    ];

    internal static int Run(string[] args)
    {
        string outDir = args.Length > 0 ? args[0] : "ptx";
        Directory.CreateDirectory(outDir);
        using var backend = new PTXBackend(LigerRuntime.Context, CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null!);
        int count = 0;
        foreach (var (owner, name, vectorized, extra) in Kernels)
            foreach (var (dtype, codecs) in vectorized ? VectorDtypes : ScalarDtypes)
            {
                // Type arguments past the codecs (a gated kernel's activation) tell the instantiations apart.
                string kernelName = string.Concat([owner.Name, ".", name, .. extra.Select(t => "." + t.Name)]);
                Write(backend, outDir, owner, name, [.. codecs, .. extra], $"{kernelName}.{dtype}");
                count++;
            }
        // ScaleRows takes only the vector codecs; CountTargets is not generic.
        foreach (var (dtype, codecs) in VectorDtypes)
        {
            Write(backend, outDir, typeof(CrossEntropyKernels), nameof(CrossEntropyKernels.ScaleRows), codecs[2..], $"CrossEntropyKernels.ScaleRows.{dtype}");
            count++;
        }
        Write(backend, outDir, typeof(CrossEntropyKernels), nameof(CrossEntropyKernels.CountTargets), [], "CrossEntropyKernels.CountTargets");
        Console.WriteLine($"{count + 1} kernels written to {outDir}");
        return 0;
    }

    private static void Write(PTXBackend backend, string outDir, Type owner, string name, Type[] typeArguments, string fileStem)
    {
        var method = owner.GetMethod(name, BindingFlags.Static | BindingFlags.NonPublic)!;
        if (typeArguments.Length > 0)
            method = method.MakeGenericMethod(typeArguments);
        var compiled = (PTXCompiledKernel)backend.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(method), KernelSpecialization.Empty);
        string ptx = WithStableNames(compiled.PTXAssembly);
        string path = Path.Combine(outDir, $"{fileStem}.ptx");
        File.WriteAllText(path, ptx);
        Console.WriteLine($"{fileStem}: {ptx.Split('\n').Length} lines, ld.global.v4: {Count(ptx, "ld.global.v4")}, " +
            $"st.global.v4: {Count(ptx, "st.global.v4")}, scalar ld.global: {Count(ptx, "ld.global.") - Count(ptx, "ld.global.v")}, " +
            $"bar.sync: {Count(ptx, "bar.sync")}, local: {Count(ptx, ".local")} -> {path}");
    }

    /// <summary>
    /// ILGPU suffixes parameter names and labels with IR node ids, which count up across every kernel compiled in
    /// the context; renumbering them in order of first use makes a kernel's text depend on its code alone.
    /// </summary>
    private static string WithStableNames(string ptx)
    {
        var numbers = new Dictionary<string, int>();
        return NodeIdSuffix().Replace(ptx, m =>
        {
            if (!numbers.TryGetValue(m.Value, out int n))
                numbers[m.Value] = n = numbers.Count;
            return $"{m.Groups[1].Value}_{n}";
        });
    }

    [GeneratedRegex(@"\b(L|_[A-Za-z]\w*?)_(\d+)\b")]
    private static partial Regex NodeIdSuffix();

    private static int Count(string text, string what)
    {
        int count = 0;
        for (int i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + what.Length, StringComparison.Ordinal))
            count++;
        return count;
    }
}
