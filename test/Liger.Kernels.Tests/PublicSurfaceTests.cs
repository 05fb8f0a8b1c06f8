using Liger.Kernels.Runtime;

namespace Liger.Kernels.Tests;

/// <summary>
/// Liger.Kernels' public types are a deliberate list: what users compose (modules), call (functions and
/// losses), pass (options, enums) and read (results, where an op ran). Kernel codecs, host launch code and
/// devices stay internal. A new public type fails this test until it is added here on purpose.
/// </summary>
[TestClass]
public sealed class PublicSurfaceTests
{
    private static readonly string[] Approved =
    [
        // Modules: what users compose into a model.
        "Liger.Kernels.Modules.LigerCrossEntropyLoss",
        "Liger.Kernels.Modules.LigerFusedAddRMSNorm",
        "Liger.Kernels.Modules.LigerFusedLinearCrossEntropyLoss",
        "Liger.Kernels.Modules.LigerGEGLUMLP",
        "Liger.Kernels.Modules.LigerLayerNorm",
        "Liger.Kernels.Modules.LigerRMSNorm",
        "Liger.Kernels.Modules.LigerRMSNormForGemma",
        "Liger.Kernels.Modules.LigerRotaryEmbedding",
        "Liger.Kernels.Modules.LigerSwiGLUMLP",
        // Functions: the differentiable ops, with their options and results.
        "Liger.Kernels.Ops.CrossEntropyOptions",
        "Liger.Kernels.Ops.CrossEntropyReduction",
        "Liger.Kernels.Ops.CrossEntropyResult",
        "Liger.Kernels.Ops.FusedLinearCrossEntropyOptions",
        "Liger.Kernels.Ops.LigerCrossEntropyFunction",
        "Liger.Kernels.Ops.LigerFusedAddRMSNormFunction",
        "Liger.Kernels.Ops.LigerFusedLinearCrossEntropyFunction",
        "Liger.Kernels.Ops.LigerGELUMulFunction",
        "Liger.Kernels.Ops.LigerGELUMulLinearFunction",
        "Liger.Kernels.Ops.LigerLayerNormFunction",
        "Liger.Kernels.Ops.LigerRMSNormFunction",
        "Liger.Kernels.Ops.LigerRMSNormLinearsFunction",
        "Liger.Kernels.Ops.LigerRotaryPosEmb",
        "Liger.Kernels.Ops.LigerSiLUMulFunction",
        "Liger.Kernels.Ops.LigerSiLUMulLinearFunction",
        "Liger.Kernels.Ops.RmsNormCastingMode",
        "Liger.Kernels.Ops.RotaryEmbedding",
        // Losses: fused-linear preference losses, their options and results.
        "Liger.Kernels.Losses.CpoLossOptions",
        "Liger.Kernels.Losses.DpoLossOptions",
        "Liger.Kernels.Losses.DpoLossType",
        "Liger.Kernels.Losses.KtoLossOptions",
        "Liger.Kernels.Losses.KtoLossResult",
        "Liger.Kernels.Losses.LigerFusedLinearCpoLoss",
        "Liger.Kernels.Losses.LigerFusedLinearDpoLoss",
        "Liger.Kernels.Losses.LigerFusedLinearKtoLoss",
        "Liger.Kernels.Losses.LigerFusedLinearOrpoLoss",
        "Liger.Kernels.Losses.LigerFusedLinearPreferenceLoss",
        "Liger.Kernels.Losses.LigerFusedLinearSequenceLogProbs",
        "Liger.Kernels.Losses.LigerFusedLinearSimPoLoss",
        "Liger.Kernels.Losses.OrpoLossOptions",
        "Liger.Kernels.Losses.PreferenceLossOptions",
        "Liger.Kernels.Losses.PreferenceLossResult",
        "Liger.Kernels.Losses.PreferenceReference",
        "Liger.Kernels.Losses.SimPoLossOptions",
        // Runtime: where ops run and how that is reported; the TorchSharp helpers the samples use.
        "Liger.Kernels.Runtime.CpuExecution",
        "Liger.Kernels.Runtime.ExecutionPath",
        "Liger.Kernels.Runtime.LigerRuntime",
        "Liger.Kernels.Runtime.Ranges",
        "Liger.Kernels.Runtime.ScalarArithmetic",
        // The start-up check of the native libtorch, and what it found (README, "GPU set-up").
        "Liger.Kernels.Runtime.LibTorchVersion",
        "Liger.Kernels.Runtime.TorchRuntimeCheck",
        "Liger.Kernels.Runtime.TorchRuntimeReport",
    ];

    [TestMethod]
    public void PublicTypes_AreTheApprovedList()
    {
        var exported = typeof(LigerRuntime).Assembly.GetExportedTypes().Select(t => t.FullName!).ToHashSet();
        var unexpected = exported.Except(Approved).Order().ToArray();
        var missing = Approved.Except(exported).Order().ToArray();
        Assert.IsTrue(unexpected.Length == 0 && missing.Length == 0,
            $"Liger.Kernels' public types differ from the approved list in {nameof(PublicSurfaceTests)}. " +
            $"Public but not approved (make internal, or approve): [{string.Join(", ", unexpected)}]. " +
            $"Approved but not public (renamed or removed?): [{string.Join(", ", missing)}].");
    }
}
