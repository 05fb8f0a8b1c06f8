using Liger.Kernels.Runtime;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests;

/// <summary>Gradient snapshots and bitwise comparisons for the checkpointing tests.</summary>
internal static class Gradients
{
    /// <summary>A fresh seed, seeded into torch, returned for the failure messages.</summary>
    public static long FreshSeed()
    {
        long seed = Random.Shared.NextInt64(1, int.MaxValue);
        manual_seed(seed);
        return seed;
    }

    /// <summary>Copies of the modules' parameter gradients by name (null where none).</summary>
    public static Dictionary<string, Tensor?> Of(params (string Prefix, nn.Module Module)[] modules)
    {
        var grads = new Dictionary<string, Tensor?>();
        foreach (var (prefix, module) in modules)
            foreach (var (name, parameter) in module.named_parameters())
                grads[$"{prefix}.{name}"] = parameter.grad?.detach().clone();
        return grads;
    }

    public static void Clear(params nn.Module[] modules)
    {
        foreach (var module in modules)
            foreach (var parameter in module.parameters())
                parameter.grad = null;
    }

    /// <summary>Asserts identical bytes, dtype and shape; the expected tensor must be finite and not all zero.</summary>
    public static void AssertBitwise(Tensor? expected, Tensor? actual, string what, string context)
    {
        Assert.IsNotNull(expected, $"{what}: the plain run gave no gradient. {context}");
        Assert.IsNotNull(actual, $"{what}: the checkpointed run gave no gradient. {context}");
        Assert.AreEqual(expected.dtype, actual.dtype, $"{what}: dtype differs. {context}");
        CollectionAssert.AreEqual(expected.shape, actual.shape, $"{what}: shape differs. {context}");
        Assert.IsTrue(expected.isfinite().all().item<bool>(), $"{what}: the plain run's gradient is not finite. {context}");
        Assert.IsTrue(expected.NotEqualTo(0).any().item<bool>(), $"{what}: the plain run's gradient is all zero, which proves nothing. {context}");
        var e = expected.detach().contiguous().bytes.ToArray();
        var a = actual.detach().contiguous().bytes.ToArray();
        int first = Enumerable.Range(0, e.Length).FirstOrDefault(i => e[i] != a[i], -1);
        if (first >= 0)
        {
            double maxDiff = (expected.detach().to(ScalarType.Float64) - actual.detach().to(ScalarType.Float64)).abs().max().item<double>();
            Assert.Fail($"{what}: not bitwise identical (first differing byte {first}, max |difference| {maxDiff:E3}). {context}");
        }
    }

    /// <summary>Asserts two gradient snapshots are bitwise identical, name by name (both null counts as equal).</summary>
    public static void AssertBitwise(Dictionary<string, Tensor?> expected, Dictionary<string, Tensor?> actual, string context)
    {
        CollectionAssert.AreEquivalent(expected.Keys.ToList(), actual.Keys.ToList(), context);
        Assert.IsTrue(expected.Values.Any(g => g is not null), $"the plain run gave no parameter any gradient. {context}");
        foreach (var (name, grad) in expected)
        {
            if (grad is null)
                Assert.IsNull(actual[name], $"{name}: the plain run gave it no gradient, the checkpointed run did. {context}");
            else
                AssertBitwise(grad, actual[name], name, context);
        }
    }
}

/// <summary>
/// Live bytes of the process's C heap (glibc's mallinfo2: in-use arena bytes plus mmapped chunks). libtorch's
/// CPU allocator takes tensor memory from malloc, so this counts CPU tensor storage exactly, with a little
/// noise from everything else the process mallocs.
/// </summary>
internal static partial class NativeHeap
{
    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo2
    {
        public nuint Arena, OrdBlks, SmBlks, HBlks, HBlkHd, UsmBlks, FsmBlks, UordBlks, FordBlks, KeepCost;
    }

    [LibraryImport("libc", EntryPoint = "mallinfo2")]
    private static partial MallInfo2 Mallinfo2();

    /// <summary>
    /// Runs the finalizers of earlier tests' unreachable tensors now, so that they do not free native memory inside a
    /// measured window (seen: a forward that "kept" −8.7 MB).
    /// </summary>
    public static void Settle()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    public static long LiveBytes()
    {
        var info = Mallinfo2();
        return (long)(info.UordBlks + info.HBlkHd);
    }
}
