using System.Reflection;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using Liger.Kernels.Kernels;
using Liger.Kernels.Runtime;

namespace Liger.Benchmarks.Gpu;

/// <summary>
/// Writes the PTX ILGPU generates for each kernel (for sm_90), with no GPU: the first thing to read when
/// a kernel is slow (are loads 16 bytes wide? how many registers, barriers, local-memory spills?).
/// </summary>
internal static class PtxDump
{
    internal static int Run(string[] args)
    {
        string outDir = args.Length > 0 ? args[0] : "ptx";
        Directory.CreateDirectory(outDir);
        using var backend = new PTXBackend(LigerRuntime.Context, CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null!);
        Type[] bf16 = [typeof(ushort), typeof(BFloat16Codec), typeof(BFloat16x8), typeof(BFloat16x8Codec)];
        var kernels = new (Type Owner, string Name, Type[] Arguments)[]
        {
            (typeof(RmsNormKernels), nameof(RmsNormKernels.ForwardVectorized), bf16),
            (typeof(RmsNormKernels), nameof(RmsNormKernels.BackwardVectorized), bf16),
            (typeof(GatedKernels), nameof(GatedKernels.ForwardVectorized), [.. bf16, typeof(SiLU)]),
            (typeof(GatedKernels), nameof(GatedKernels.BackwardVectorized), [.. bf16, typeof(SiLU), typeof(KeepDc)]),
            (typeof(GatedKernels), nameof(GatedKernels.ForwardVectorized), [.. bf16, typeof(GeluTanh)]),
            (typeof(GatedKernels), nameof(GatedKernels.BackwardVectorized), [.. bf16, typeof(GeluTanh), typeof(KeepDc)]),
            (typeof(GatedKernels), nameof(GatedKernels.BackwardVectorized), [.. bf16, typeof(SiLU), typeof(ProductOverDc)]),
            (typeof(GatedKernels), nameof(GatedKernels.BackwardVectorized), [.. bf16, typeof(GeluTanh), typeof(ProductOverDc)]),
            (typeof(RopeKernels), nameof(RopeKernels.RotateVectorized), bf16),
            (typeof(RopeKernels), nameof(RopeKernels.Rotate), bf16[..2]),
            (typeof(CrossEntropyKernels), nameof(CrossEntropyKernels.RowsVectorized), bf16),
            (typeof(CrossEntropyKernels), nameof(CrossEntropyKernels.ScaleRows), bf16[2..]),
            (typeof(LayerNormKernels), nameof(LayerNormKernels.ForwardVectorized), bf16),
            (typeof(LayerNormKernels), nameof(LayerNormKernels.BackwardVectorized), bf16),
            (typeof(FusedAddRmsNormKernels), nameof(FusedAddRmsNormKernels.ForwardVectorized), bf16),
            (typeof(FusedAddRmsNormKernels), nameof(FusedAddRmsNormKernels.BackwardVectorized), bf16),
        };
        foreach (var (owner, name, arguments) in kernels)
        {
            var method = owner.GetMethod(name, BindingFlags.Static | BindingFlags.NonPublic)!.MakeGenericMethod(arguments);
            var compiled = (PTXCompiledKernel)backend.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(method), KernelSpecialization.Empty);
            // Type arguments past the codecs (a gated kernel's activation) tell the instantiations apart.
            string kernelName = string.Concat([owner.Name, ".", name, .. arguments.Skip(bf16.Length).Select(t => "." + t.Name)]);
            string path = Path.Combine(outDir, $"{kernelName}.bf16.ptx");
            File.WriteAllText(path, compiled.PTXAssembly);
            string ptx = compiled.PTXAssembly;
            Console.WriteLine($"{kernelName}: {ptx.Split('\n').Length} lines, ld.global.v4: {Count(ptx, "ld.global.v4")}, " +
                $"st.global.v4: {Count(ptx, "st.global.v4")}, scalar ld.global: {Count(ptx, "ld.global.") - Count(ptx, "ld.global.v")}, " +
                $"bar.sync: {Count(ptx, "bar.sync")}, local: {Count(ptx, ".local")} -> {path}");
        }
        return 0;
    }

    private static int Count(string text, string what)
    {
        int count = 0;
        for (int i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + what.Length, StringComparison.Ordinal))
            count++;
        return count;
    }
}
