using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Gpu;

/// <summary>
/// The size of a preference-loss batch, as Liger-Kernel's loss benchmarks count it: <see cref="Rows"/> is the first
/// dimension of the hidden states, so a paired loss sees Rows / 2 chosen then Rows / 2 rejected sequences, and KTO sees
/// Rows unpaired sequences.
/// </summary>
internal sealed record PreferenceShape(long Rows, long Length, long Size, long Vocab)
{
    public override string ToString() => $"B={Rows} T={Length} H={Size} V={Vocab}";
}

/// <summary>
/// The tensors one step of a preference loss reads: the policy's final hidden states and lm_head (trainable), shifted
/// targets with prompt and padding masked, and, where the loss takes them, a frozen reference model's hidden states and
/// lm_head, KTO's labels and its KL estimate.
/// </summary>
internal sealed class PreferenceInputs : IDisposable
{
    internal const long IgnoreIndex = -100;

    private PreferenceInputs(PreferenceShape shape, Tensor hidden, Tensor weight, Tensor? bias, Tensor target)
    {
        Shape = shape;
        Hidden = hidden;
        Weight = weight;
        Bias = bias;
        Target = target;
    }

    internal PreferenceShape Shape { get; }
    internal Tensor Hidden { get; }
    internal Tensor Weight { get; }
    internal Tensor? Bias { get; }
    internal Tensor Target { get; }
    internal Tensor? ReferenceHidden { get; private init; }
    internal Tensor? ReferenceWeight { get; private init; }
    internal Tensor? ReferenceBias { get; private init; }

    /// <summary>KTO: true for a desirable completion.</summary>
    internal Tensor? Labels { get; private init; }

    /// <summary>KTO: the detached KL estimate (a scalar).</summary>
    internal Tensor? Kl { get; private init; }

    /// <summary>What the loss differentiates: hidden, weight, and the bias when there is one.</summary>
    internal Tensor[] Trainable => Bias is null ? [Hidden, Weight] : [Hidden, Weight, Bias];

    private IEnumerable<Tensor> All => new[] { Hidden, Weight, Bias, Target, ReferenceHidden, ReferenceWeight, ReferenceBias, Labels, Kl }
        .OfType<Tensor>();

    /// <summary>Bytes of every input, which the memory figures beyond the inputs leave out.</summary>
    internal long Bytes => All.Sum(t => t.numel() * t.element_size());

    /// <summary>
    /// Random inputs. Paired rows share their prompt (chosen i and rejected i mask the same prefix); every row masks a
    /// prompt of 1 to T/4 positions, 0 to T/8 positions of padding and its last position (no next token there), so
    /// sequences have different target counts and averaged and summed log-probs differ. The reference model is the
    /// policy plus noise, as a reference that starts from the policy's weights has drifted a little, which keeps the
    /// log-ratios, and so the gradients, away from saturation.
    /// </summary>
    internal static PreferenceInputs Random(PreferenceShape shape, ScalarType dtype, Device device, bool paired, bool bias,
        bool reference, bool labels, Random random)
    {
        var (n, t, h, v) = (shape.Rows, shape.Length, shape.Size, shape.Vocab);
        using var scope = NewDisposeScope();
        var hidden = randn(n, t, h, dtype: dtype, device: device);
        var weight = (randn(v, h, dtype: ScalarType.Float32, device: device).DividedBy(Math.Sqrt(h))).to(dtype);
        var biasValue = bias ? (randn(v, dtype: ScalarType.Float32, device: device).Times(0.1)).to(dtype) : null;
        var target = randint(0, v, [n, t], dtype: ScalarType.Int64, device: device);
        target.FillWhereInPlace(Unpredicted(n, t, paired, random).to(device), IgnoreIndex);
        return new PreferenceInputs(shape, hidden.requires_grad_().MoveToOuterDisposeScope(), weight.requires_grad_().MoveToOuterDisposeScope(),
            biasValue?.requires_grad_().MoveToOuterDisposeScope(), target.MoveToOuterDisposeScope())
        {
            ReferenceHidden = reference ? (hidden.detach().Plus(randn_like(hidden).Times(0.1))).MoveToOuterDisposeScope() : null,
            ReferenceWeight = reference ? (weight.detach().Plus(randn_like(weight).Times(0.1 / Math.Sqrt(h)))).MoveToOuterDisposeScope() : null,
            ReferenceBias = reference && biasValue is not null ? (biasValue.detach().Plus(randn_like(biasValue).Times(0.01))).MoveToOuterDisposeScope() : null,
            Labels = labels ? RandomLabels(n, random).to(device).MoveToOuterDisposeScope() : null,
            Kl = labels ? (rand(1, dtype: ScalarType.Float32, device: device).Times(0.1)).squeeze().MoveToOuterDisposeScope() : null,
        };
    }

    /// <summary>(N, T) true where a position has no target: prompt, padding, the last position.</summary>
    private static Tensor Unpredicted(long n, long t, bool paired, Random random)
    {
        var mask = new bool[n * t];
        long units = paired ? n / 2 : n;
        var prompts = Enumerable.Range(0, (int)units).Select(_ => 1 + random.NextInt64(Math.Max(1, t / 4))).ToArray();
        for (long row = 0; row < n; row++)
        {
            long prompt = Math.Min(prompts[row % units], t - 1);
            long padding = random.NextInt64(t / 8 + 1);
            for (long p = 0; p < t; p++)
                mask[row * t + p] = p < prompt || p >= t - 1 - padding;
        }
        return tensor(mask, [n, t]);
    }

    /// <summary>Random desirable / undesirable labels, with at least one of each when there are two sequences or more.</summary>
    private static Tensor RandomLabels(long n, Random random)
    {
        var values = Enumerable.Range(0, (int)n).Select(_ => random.Next(2) == 1).ToArray();
        values[0] = true;
        if (n > 1)
            values[1] = false;
        return tensor(values);
    }

    public void Dispose()
    {
        foreach (var t in All)
            t.Dispose();
    }
}
