using Liger.Kernels.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Training;

/// <summary>
/// AdamW (TorchSharp's) over the model's trainable parameters, with matrices decayed and norms and biases not,
/// and for bf16 training fp32 master weights: the optimizer updates fp32 copies, which are rounded into the
/// bf16 weights after each step, so small updates accumulate instead of being rounded away.
/// </summary>
internal sealed partial class TrainingOptimizer : ICheckpointedOptimizer
{
    private readonly (string Name, Parameter Weight)[] weights;
    private readonly Parameter[]? masters;
    // One AdamW per parameter: TorchSharp's step keeps every temporary of a step (two per parameter, the size of
    // the parameter) until the whole step ends; stepping parameter by parameter frees them as it goes (8 bytes per
    // parameter less at the peak: 9 GiB for a 1B model).
    private readonly AdamW[] adamW;

    public TrainingOptimizer(nn.Module model, CausalLMTrainingOptions options, bool masterWeights)
        : this(model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => (p.name, p.parameter)).ToArray(), options, masterWeights)
    {
    }

    /// <summary>Over <paramref name="weights"/> alone (ZeRO-1: a rank's share of the trainable parameters).</summary>
    public TrainingOptimizer(IReadOnlyList<(string Name, Parameter Weight)> weights, CausalLMTrainingOptions options, bool masterWeights)
    {
        this.weights = [.. weights];
        if (masterWeights)
        {
            using var _ = no_grad();
            masters = weights.Select(w => new Parameter(w.Weight.detach().to(ScalarType.Float32, copy: true), requires_grad: true)).ToArray();
        }
        var optimized = masters ?? weights.Select(w => w.Weight).ToArray();
        // As transformers' Trainer: no decay on biases and norm weights (1-D parameters).
        adamW = optimized.Select(p => new AdamW([p], options.LearningRate, options.Beta1, options.Beta2, options.AdamEpsilon,
            p.dim() >= 2 ? options.WeightDecay : 0.0)).ToArray();
    }

    /// <summary>The fp32 master weights by parameter name (null in fp32 training, where the weights are their own masters).</summary>
    public IEnumerable<(string Name, Tensor Master)>? MasterWeights =>
        masters is null ? null : weights.Select((w, i) => (w.Name, (Tensor)masters[i]));

    /// <summary>
    /// Moves the model's gradients to the masters (fp32), clips their global norm to <paramref name="maxNorm"/>
    /// (0: no clipping) without a host synchronisation, steps AdamW at <paramref name="learningRate"/>, copies
    /// the masters back into the weights and clears the gradients. Returns the norm before clipping, on the device.
    /// </summary>
    public Tensor Step(double learningRate, double maxNorm, Func<Tensor, bool>? proceed = null)
    {
        using var scope = NewDisposeScope();
        var optimized = masters ?? weights.Select(w => w.Weight).ToArray();
        if (masters is not null)
        {
            for (int i = 0; i < weights.Length; i++)
            {
                // Disposed at once: a live handle would keep the bf16 gradient's memory until the step ends.
                using var grad = weights[i].Weight.grad;
                masters[i].grad = grad?.to(ScalarType.Float32);
                weights[i].Weight.grad = null;
            }
        }
        var norm = GlobalNorm(optimized);
        if (proceed is not null && !proceed(norm))
        {
            foreach (var p in optimized)
                p.grad = null;
            foreach (var (_, weight) in weights)
                weight.grad = null;
            return norm.MoveToOuterDisposeScope();
        }
        if (maxNorm > 0)
        {
            // As torch's clip_grad_norm_: scale by min(1, max / (norm + 1e-6)), computed on the device.
            var coefficient = norm.Plus(1e-6).reciprocal().Times(maxNorm).AtMost(1.0);
            using (no_grad())
                foreach (var p in optimized)
                    p.grad?.mul_(coefficient);
        }
        foreach (var optimizer in adamW)
        {
            foreach (var group in optimizer.ParamGroups)
                group.LearningRate = learningRate;
            AdamWStep.Apply(optimizer);
        }
        using (no_grad())
        {
            if (masters is not null)
                for (int i = 0; i < weights.Length; i++)
                    weights[i].Weight.copy_(masters[i]);
        }
        foreach (var p in optimized)
            p.grad = null;
        return norm.MoveToOuterDisposeScope();
    }

    internal static Tensor GlobalNorm(IReadOnlyList<Parameter> parameters)
    {
        var norms = parameters.Where(p => p.grad is not null).Select(p => p.grad!.detach().to(ScalarType.Float32).norm()).ToArray();
        return norms.Length == 0 ? zeros(1, device: parameters[0].device).squeeze() : stack(norms).norm();
    }

    /// <summary>Writes AdamW's state (TorchSharp's format) to <paramref name="path"/>, flushed to disk.</summary>
    public void SaveState(string path)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            writer.Write(adamW.Length);
            foreach (var optimizer in adamW)
                optimizer.save_state_dict(writer);
        }
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Restores AdamW's state and, for bf16 training, the masters from <paramref name="masterWeights"/>.</summary>
    public void LoadState(string path, IReadOnlyDictionary<string, Tensor>? masterWeights)
    {
        using (var reader = new BinaryReader(File.OpenRead(path)))
        {
            string expected = $"AdamW's state for {adamW.Length} parameters in TorchSharp's format, as a checkpoint of this run writes it";
            try
            {
                int count = reader.ReadInt32();
                if (count != adamW.Length)
                    throw new InvalidDataException($"'{path}' holds optimizer state for {count} parameters; the model trains {adamW.Length}.");
                foreach (var optimizer in adamW)
                    optimizer.load_state_dict(reader);
            }
            catch (EndOfStreamException e)
            {
                throw new InvalidDataException($"'{path}' ends after {reader.BaseStream.Position} of the bytes it needs (truncated?); expected {expected}.", e);
            }
            catch (Exception e) when (e is ArgumentException or FormatException or IOException or InvalidOperationException or OverflowException)
            {
                throw new InvalidDataException($"'{path}' cannot be read as {expected}: {e.Message}", e);
            }
            if (reader.BaseStream.Position != reader.BaseStream.Length)
                throw new InvalidDataException(
                    $"'{path}' has {reader.BaseStream.Length - reader.BaseStream.Position} bytes after the state it should end with; expected {expected}.");
        }
        if (masters is null)
            return;
        if (masterWeights is null)
            throw new InvalidDataException("The checkpoint was written by fp32 training and has no master weights; resume with the same Precision.");
        using var _ = no_grad();
        for (int i = 0; i < weights.Length; i++)
        {
            if (!masterWeights.TryGetValue(weights[i].Name, out var stored))
                throw new InvalidDataException($"The checkpoint's master weights have no '{weights[i].Name}'.");
            masters[i].copy_(stored);
        }
    }

    public void Dispose()
    {
        foreach (var optimizer in adamW)
            optimizer.Dispose();
        if (masters is not null)
            foreach (var m in masters)
                m.Dispose();
    }
}
