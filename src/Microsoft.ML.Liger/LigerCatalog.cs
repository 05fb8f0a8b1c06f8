using Liger.Kernels.Runtime;
using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.PreferenceAlignment;
using Microsoft.ML.Liger.Sweeps;
using Microsoft.ML.Runtime;
using TorchSharp;

namespace Microsoft.ML.Liger;

/// <summary>
/// The entry point to Liger from ML.NET: <c>mlContext.Liger()</c>. The fine-tuning and preference-alignment
/// estimators hang off this catalog, with loading of the models they save.
/// </summary>
public sealed class LigerCatalog
{
    internal LigerCatalog(MLContext context) => Context = context;

    /// <summary>The ML.NET context this catalog belongs to.</summary>
    public MLContext Context { get; }

    /// <summary>
    /// The torch device training will use: cuda:<see cref="MLContext.GpuDeviceId"/> when it is set and
    /// CUDA is available, the CPU otherwise (or an error when <see cref="MLContext.FallbackToCpu"/> is false).
    /// </summary>
    /// <remarks>
    /// The first call in a process runs <see cref="TorchRuntimeCheck"/>: an error naming the package to add when native
    /// libtorch is missing, and a warning (standard error and this context's log) when its version differs from the
    /// one TorchSharp was built for.
    /// </remarks>
    /// <exception cref="InvalidOperationException">libtorch cannot be loaded, or a GPU was asked for with FallbackToCpu false and
    /// cannot be used (the message says why: CPU-only libtorch, no driver, no such device).</exception>
    public torch.Device Device
    {
        get
        {
            LogRuntimeWarningOnce(TorchRuntimeCheck.Report);
            if (Context.GpuDeviceId is int id)
            {
                string? reason = TorchRuntimeCheck.WhyCudaUnavailable(id);
                if (reason is null)
                    return new torch.Device(DeviceType.CUDA, id);
                if (!Context.FallbackToCpu)
                    throw new InvalidOperationException($"MLContext.GpuDeviceId is {id} and FallbackToCpu is false, but {reason}");
            }
            return torch.CPU;
        }
    }

    private static int runtimeWarningLogged;

    private void LogRuntimeWarningOnce(TorchRuntimeReport report)
    {
        if (report.Warning is null || Interlocked.Exchange(ref runtimeWarningLogged, 1) == 1)
            return;
        using var channel = ((IHostEnvironment)Context).Register("Liger").Start("TorchRuntimeCheck");
        channel.Warning(MessageSensitivity.None, report.Warning);
    }

    /// <summary>
    /// Fine-tunes a causal LM (a Hugging Face checkpoint, or a named architecture from random init) on text or on
    /// prompt/response columns, with Liger's kernels: <c>mlContext.Liger().FineTuneCausalLM(options).Fit(data)</c>.
    /// </summary>
    public FineTuneCausalLMEstimator FineTuneCausalLM(FineTuneCausalLMOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new FineTuneCausalLMEstimator(this, options);
    }

    /// <summary>
    /// Aligns a causal LM to preferences with <see cref="PreferenceAlignmentOptions.Algorithm"/> (ORPO when null; DPO, CPO,
    /// SimPO or KTO) on prompt / chosen / rejected columns (KTO: prompt / completion / label), with Liger's chunked
    /// fused-linear preference losses and the fine-tuning loop: <c>mlContext.Liger().PreferenceAlignment(options).Fit(data)</c>.
    /// </summary>
    public PreferenceAlignmentEstimator PreferenceAlignment(PreferenceAlignmentOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new PreferenceAlignmentEstimator(this, options, options.Algorithm ?? PreferenceAlgorithm.Orpo);
    }

    /// <summary>
    /// ORPO (odds-ratio preference optimisation: SFT and preference in one loss, no reference model) on prompt / chosen /
    /// rejected columns: <see cref="PreferenceAlignment"/> with the algorithm fixed to ORPO.
    /// </summary>
    /// <exception cref="ArgumentException">The options name another algorithm.</exception>
    public PreferenceAlignmentEstimator Orpo(PreferenceAlignmentOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Algorithm is { } algorithm && algorithm != PreferenceAlgorithm.Orpo)
            throw new ArgumentException(
                $"Orpo() runs ORPO, but option 'Algorithm' is {algorithm}: leave it null (or Orpo), or call PreferenceAlignment(options).",
                nameof(PreferenceAlignmentOptions.Algorithm));
        return new PreferenceAlignmentEstimator(this, options, PreferenceAlgorithm.Orpo);
    }

    /// <summary>
    /// A sweep of short fine-tuning trials (AutoML-style: search space, tuner, trial and time budgets) starting from
    /// <paramref name="baseOptions"/>: <c>mlContext.Liger().CreateSweep(options).SetDataset(train, validation).RunAsync()</c>.
    /// The options are copied for each trial when it starts, with the trial's point applied.
    /// </summary>
    public SweepExperiment CreateSweep(FineTuneCausalLMOptions baseOptions)
    {
        ArgumentNullException.ThrowIfNull(baseOptions);
        return new SweepExperiment(this, baseOptions);
    }

    /// <summary>
    /// Loads a model saved by <see cref="CausalLMTransformer.Save"/> (or a checkpoint folder of a fine-tuning run)
    /// onto <see cref="Device"/>, with the Liger kernels it was trained with unless <paramref name="kernels"/> says otherwise.
    /// </summary>
    public CausalLMTransformer LoadCausalLM(string folder, LigerKernelOptions? kernels = null) =>
        CausalLMTransformer.Load(folder, Device, kernels);

    /// <summary>Where Liger ops run on <see cref="Device"/>, in words (kernel device or TorchSharp CPU path).</summary>
    public string DescribeKernels()
    {
        using var probe = torch.empty(1, device: Device);
        return LigerRuntime.Describe(probe);
    }
}

/// <summary>Adds <c>Liger()</c> to <see cref="MLContext"/>.</summary>
public static class LigerCatalogExtensions
{
    /// <summary>Liger's fused-kernel training catalog for this context.</summary>
    public static LigerCatalog Liger(this MLContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new LigerCatalog(context);
    }
}
