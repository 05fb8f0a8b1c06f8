using Liger.Kernels.Losses;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>One preference loss with one set of options: its Liger call and its eager composite over the same inputs.</summary>
/// <param name="Name">Row name.</param>
/// <param name="Paired">Chosen and rejected rows (else KTO's unpaired, labelled sequences).</param>
/// <param name="UsesReference">Takes a frozen reference model (DPO, KTO).</param>
/// <param name="BenchmarkBias">Whether lm_head has a bias in the benchmark: as Liger-Kernel's benchmarks (DPO and KTO with one).</param>
/// <param name="Liger">Our chunked loss.</param>
/// <param name="Eager">The eager composite.</param>
internal sealed record PreferenceLossCase(string Name, bool Paired, bool UsesReference, bool BenchmarkBias,
    Func<PreferenceInputs, PreferenceOutput> Liger, Func<PreferenceInputs, PreferenceOutput> Eager)
{
    internal PreferenceInputs Inputs(PreferenceShape shape, ScalarType dtype, Device device, bool bias, Random random) =>
        PreferenceInputs.Random(shape, dtype, device, Paired, bias, UsesReference, labels: !Paired, random);
}

/// <summary>The losses the benchmark times (each at its defaults) and the variants the correctness check adds.</summary>
internal static class PreferenceLossCases
{
    internal static IReadOnlyList<PreferenceLossCase> Benchmarked { get; } =
        [Orpo("ORPO", new()), Dpo("DPO", new()), Cpo("CPO", new()), SimPo("SimPO", new()), Kto("KTO", new())];

    /// <summary>Non-default options, so the check covers the formulas' other branches and parameters.</summary>
    internal static IReadOnlyList<PreferenceLossCase> Variants { get; } =
    [
        Orpo("ORPO β=0.25 α=0.5", new() { Beta = 0.25, Alpha = 0.5 }),
        Dpo("DPO ipo", new() { LossType = DpoLossType.Ipo }),
        Dpo("DPO hinge", new() { LossType = DpoLossType.Hinge, Beta = 0.05 }),
        Cpo("CPO ε=0.1", new() { LabelSmoothing = 0.1 }),
        SimPo("SimPO γ=1 ε=0.2", new() { Gamma = 1.0, LabelSmoothing = 0.2 }),
        Kto("KTO w_d=1.3 w_u=0.7", new() { DesirableWeight = 1.3, UndesirableWeight = 0.7 }),
    ];

    private static PreferenceLossCase Orpo(string name, OrpoLossOptions o) => new(name, true, false, false,
        x => Paired(LigerFusedLinearOrpoLoss.Apply(x.Hidden, x.Weight, x.Target, x.Bias, o)),
        x => PreferenceEager.Orpo(x, o));

    private static PreferenceLossCase Dpo(string name, DpoLossOptions o) => new(name, true, true, true,
        x => Paired(LigerFusedLinearDpoLoss.Apply(x.Hidden, x.Weight, x.Target, Reference(x), x.Bias, o)),
        x => PreferenceEager.Dpo(x, o));

    private static PreferenceLossCase Cpo(string name, CpoLossOptions o) => new(name, true, false, false,
        x => Paired(LigerFusedLinearCpoLoss.Apply(x.Hidden, x.Weight, x.Target, x.Bias, o)),
        x => PreferenceEager.Cpo(x, o));

    private static PreferenceLossCase SimPo(string name, SimPoLossOptions o) => new(name, true, false, false,
        x => Paired(LigerFusedLinearSimPoLoss.Apply(x.Hidden, x.Weight, x.Target, x.Bias, o)),
        x => PreferenceEager.SimPo(x, o));

    private static PreferenceLossCase Kto(string name, KtoLossOptions o) => new(name, false, true, true,
        x =>
        {
            var r = LigerFusedLinearKtoLoss.Apply(x.Hidden, x.Weight, x.Target, x.Labels!, Reference(x), x.Bias, o, x.Kl);
            return new PreferenceOutput(r.Loss, r.LogProbs);
        },
        x => PreferenceEager.Kto(x, o));

    private static PreferenceReference Reference(PreferenceInputs x) =>
        PreferenceReference.FromModel(x.ReferenceHidden!, x.ReferenceWeight!, x.ReferenceBias);

    private static PreferenceOutput Paired(PreferenceLossResult r) => new(r.Loss, cat([r.ChosenLogProbs, r.RejectedLogProbs], 0));
}
