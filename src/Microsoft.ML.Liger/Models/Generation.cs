using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models;

/// <summary>How <see cref="Generation.Generate"/> picks tokens and when it stops.</summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens to add per sequence (fewer when the sequence reaches the model's max_position_embeddings, where generation stops).</summary>
    public int MaxNewTokens { get; init; } = 64;

    /// <summary>Sample from the (processed) distribution; false: greedy (argmax).</summary>
    public bool DoSample { get; init; }

    /// <summary>Logits are divided by this before sampling; must be positive.</summary>
    public double Temperature { get; init; } = 1.0;

    /// <summary>Keep only the k most likely tokens (0: off).</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of most likely tokens whose probability reaches this (1: off).</summary>
    public double TopP { get; init; } = 1.0;

    /// <summary>A sequence ends when it produces one of these (null: the config's eos_token_id).</summary>
    public IReadOnlyCollection<long>? StopTokenIds { get; init; }

    /// <summary>Written after a sequence has ended, while others go on (null: pad_token_id, else the first stop token).</summary>
    public long? PadTokenId { get; init; }

    /// <summary>Seed of the sampler (null: nondeterministic).</summary>
    public long? Seed { get; init; }

    /// <summary>Throws naming the first setting out of range, as <paramref name="owner"/> + its name (for example "Generation.TopP").</summary>
    internal void Validate(string owner = "")
    {
        if (MaxNewTokens < 0)
            throw new ArgumentOutOfRangeException(owner + nameof(MaxNewTokens), MaxNewTokens, $"'{owner}{nameof(MaxNewTokens)}' must be at least 0.");
        if (!(Temperature > 0) || double.IsInfinity(Temperature))
            throw new ArgumentOutOfRangeException(owner + nameof(Temperature), Temperature, $"'{owner}{nameof(Temperature)}' must be finite and positive.");
        if (TopK < 0)
            throw new ArgumentOutOfRangeException(owner + nameof(TopK), TopK, $"'{owner}{nameof(TopK)}' must be 0 (off) or positive.");
        if (!(TopP > 0 && TopP <= 1))
            throw new ArgumentOutOfRangeException(owner + nameof(TopP), TopP, $"'{owner}{nameof(TopP)}' must be in (0, 1].");
    }
}

/// <summary>Autoregressive decoding with a KV cache: greedy or sampled (temperature, top-k, top-p), with stop tokens.</summary>
public static class Generation
{
    /// <summary>
    /// Continues each prompt; returns (B, T + new) ids, prompts included. Prompts of different lengths are
    /// left-padded with <paramref name="attentionMask"/> marking real tokens: positions then count real
    /// tokens only, as Hugging Face's generate does.
    /// </summary>
    public static Tensor Generate(this CausalLM model, Tensor inputIds, Tensor? attentionMask = null, GenerationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new GenerationOptions();
        options.Validate();
        if (inputIds is null || inputIds.dim() != 2 || inputIds.dtype != ScalarType.Int64 || inputIds.shape[1] == 0)
            throw new ArgumentException("'inputIds' must be int64 of shape (B, T) with T ≥ 1.", nameof(inputIds));
        if (attentionMask is not null && !attentionMask.shape.SequenceEqual(inputIds.shape))
            throw new ArgumentException($"'{nameof(attentionMask)}' must have inputIds' shape [{string.Join(", ", inputIds.shape)}].", nameof(attentionMask));
        // Never past the positions the model is configured for: a prompt longer than that is refused, and generation stops there.
        long maxPositions = model.Config.MaxPositionEmbeddings;
        long longest = inputIds.shape[1];
        if (attentionMask is not null)
        {
            using var _ = NewDisposeScope();
            longest = attentionMask.to(ScalarType.Int64).sum(1).max().item<long>(); // left padding takes no position
        }
        if (longest > maxPositions)
            throw new ArgumentException(
                $"'{nameof(inputIds)}' holds {longest} positions, past the model's max_position_embeddings = {maxPositions}: shorten the prompt.", nameof(inputIds));
        int newTokens = (int)Math.Min(options.MaxNewTokens, maxPositions - longest);
        var stops = options.StopTokenIds ?? model.Config.EosTokenIds;
        // Ids reach the embedding lookup, where one outside the vocabulary is libtorch's "index out of range in
        // self" (or a device assert on CUDA): check them here, once, on the host (Generate syncs every step anyway).
        // config.json's pad_token_id counts only inside the vocabulary, as for the embedding's padding_idx.
        long vocab = model.Config.VocabSize;
        long? configPad = model.Config.PadTokenId is long p && p >= 0 && p < vocab ? p : null;
        // A stop id outside the vocabulary can never be generated, so it never becomes padding either.
        long pad = options.PadTokenId ?? configPad ?? stops.FirstOrDefault(id => id >= 0 && id < vocab);
        if (pad < 0 || pad >= vocab)
            throw new ArgumentOutOfRangeException(nameof(GenerationOptions.PadTokenId), pad,
                $"GenerationOptions.PadTokenId is {pad}, outside the model's vocabulary 0 to {vocab - 1} (config.json vocab_size {vocab}).");
        CheckIds(inputIds, vocab);
        var device = model.LmHeadWeight.device;
        var generator = options.Seed is long seed ? new Generator((ulong)seed, device) : null;

        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            using var cache = new KVCache(model.Layers.Count);
            using var scope = NewDisposeScope();
            var sequences = inputIds.to(device);
            var mask = (attentionMask ?? ones_like(inputIds)).to(ScalarType.Int64, device);
            var positions = mask.cumsum(1).Plus(-1L).AtLeast(0L);
            var unfinished = ones(sequences.shape[0], dtype: ScalarType.Bool, device: device);
            var stopIds = tensor(stops.ToArray(), dtype: ScalarType.Int64, device: device);
            var next = sequences;
            for (int step = 0; step < newTokens; step++)
            {
                using var output = model.forward(new CausalLMInput
                {
                    InputIds = next, AttentionMask = mask, PositionIds = positions, Cache = cache, ReturnLogits = true, LogitsToKeep = 1,
                });
                var logits = output.Logits![.., -1, ..].to(ScalarType.Float32);
                var token = options.DoSample ? Sample(logits, options, generator) : logits.argmax(-1);
                token = where(unfinished, token, ScalarArithmetic.FullLike(token, pad));
                sequences = cat([sequences, token.unsqueeze(1)], 1);
                if (stops.Count > 0)
                    unfinished = unfinished.logical_and(isin(token, stopIds).logical_not());
                if (!unfinished.any().item<bool>())
                    break;
                next = token.unsqueeze(1);
                mask = cat([mask, ones_like(next)], 1);
                positions = positions[.., -1].unsqueeze(1).Plus(1L);
            }
            return sequences.MoveToOuterDisposeScope();
        }
        finally
        {
            model.train(wasTraining);
            generator?.Dispose();
        }
    }

    private static void CheckIds(Tensor inputIds, long vocab)
    {
        using var host = inputIds.cpu();
        var ids = host.data<long>();
        long columns = inputIds.shape[1];
        for (long i = 0; i < ids.Count; i++)
            if (ids[i] < 0 || ids[i] >= vocab)
                throw new ArgumentOutOfRangeException(nameof(inputIds), ids[i],
                    $"'inputIds' holds id {ids[i]} at [{i / columns}, {i % columns}], outside the model's vocabulary 0 to {vocab - 1} (config.json vocab_size {vocab}).");
    }

    /// <summary>Temperature, then top-k, then top-p (Hugging Face's warper order), then one multinomial draw per row.</summary>
    internal static Tensor Sample(Tensor logits, GenerationOptions options, Generator? generator)
    {
        using var scope = NewDisposeScope();
        var scores = options.Temperature == 1.0 ? logits : logits.DividedBy(options.Temperature);
        if (options.TopK > 0 && options.TopK < scores.shape[^1])
        {
            var kth = scores.topk(options.TopK, -1).values[.., -1].unsqueeze(1);
            scores = scores.FilledWhere(scores < kth, double.NegativeInfinity);
        }
        if (options.TopP < 1.0)
        {
            // Drop the least likely tokens whose cumulative probability stays within 1 − top_p; the most
            // likely token always stays.
            var (sorted, order) = scores.sort(-1, descending: false);
            var cumulative = sorted.softmax(-1).cumsum(-1);
            var drop = cumulative.LessOrEqual(1 - options.TopP);
            drop[.., -1] = tensor(false);
            scores = scores.FilledWhere(drop.scatter(-1, order, drop), double.NegativeInfinity);
        }
        return scores.softmax(-1).multinomial(1, generator: generator).squeeze(-1).MoveToOuterDisposeScope();
    }
}
