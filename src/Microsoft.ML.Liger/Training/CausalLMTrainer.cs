using System.Diagnostics;
using System.Security.Cryptography;
using Microsoft.ML.Liger.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Training;

/// <summary>
/// The training loop for a <see cref="CausalLM"/>: AdamW with warm-up and decay, gradient accumulation with the
/// loss normalised over the whole step's target tokens (so accumulation equals one bigger batch), global-norm
/// clipping, fp32 master weights for bf16 models, periodic evaluation, atomic checkpoints and exact resume.
/// The only host synchronisations in a step are at reports (losses are gathered on the device until then).
/// Deterministic for a seed on the CPU.
/// </summary>
public sealed class CausalLMTrainer
{
    private readonly CausalLM model;
    private readonly CausalLMTrainingOptions options;
    private readonly int padTokenId, eosTokenId;

    /// <param name="model">The model, on its training device and in its training dtype: fp32, or bf16 (trained with fp32 master weights).</param>
    /// <param name="options">Loop options (validated here).</param>
    /// <param name="padTokenId">Id that fills padding (never trained on).</param>
    /// <param name="eosTokenId">Id between packed examples.</param>
    public CausalLMTrainer(CausalLM model, CausalLMTrainingOptions options, int padTokenId, int eosTokenId)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var dtype = model.LmHeadWeight.dtype;
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"The model's weights are {dtype}; training runs in Float32 or BFloat16 (with fp32 master weights).", nameof(model));
        this.model = model;
        this.options = options;
        this.padTokenId = padTokenId;
        this.eosTokenId = eosTokenId;
    }

    /// <summary>Messages for a log (ML.NET's channel in the estimator).</summary>
    public Action<string>? Log { get; init; }

    /// <summary>Called with every report, before <see cref="CausalLMTrainingOptions.OnProgress"/> (the estimator's progress channel).</summary>
    public Action<TrainingProgress>? OnReport { get; init; }

    /// <summary>
    /// Writes files that belong in every checkpoint besides the model and trainer state (the tokenizer, metadata),
    /// given the staging folder and the run so far.
    /// </summary>
    public Action<string, TrainingResult>? WriteCheckpointExtras { get; init; }

    /// <summary>
    /// Trains on <paramref name="train"/>, evaluating on <paramref name="validation"/> when given. Throws
    /// <see cref="OperationCanceledException"/> on cancellation, after writing a checkpoint when a folder is set.
    /// </summary>
    public TrainingResult Train(IReadOnlyList<TokenizedExample> train, IReadOnlyList<TokenizedExample>? validation = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        var plan = new BatchPlan(train, options, padTokenId, eosTokenId);
        int total = plan.TotalSteps;
        bool bf16 = model.LmHeadWeight.dtype == ScalarType.BFloat16;
        var shape = TrainerState.ShapeOf(options, bf16 ? "bf16" : "fp32", Fingerprint(train), total);
        var device = model.LmHeadWeight.device;
        var meter = new MemoryMeter(device);
        using var optimizer = new TrainingOptimizer(model, options, masterWeights: bf16);

        var losses = new List<double>();
        var evals = new List<(int, double)>();
        long tokens = 0;
        int start = 0;
        string? lastCheckpoint = null;
        PrepareCheckpointFolder();
        if (options.ResumeFromCheckpoint && TrainingCheckpoints.Latest(options.CheckpointFolder!) is { } resumeFrom)
        {
            var state = Resume(resumeFrom, shape, optimizer);
            (start, tokens, lastCheckpoint) = (state.Step, state.TokensSeen, resumeFrom);
            losses.AddRange(state.StepLosses);
            evals.AddRange(state.EvalLosses.Select(e => (e.Step, e.Loss)));
            Log?.Invoke($"Resumed from {resumeFrom} at step {start} of {total}.");
        }

        bool wasTraining = model.training, wasCheckpointing = model.GradientCheckpointing;
        model.GradientCheckpointing = options.GradientCheckpointing;
        var clock = Stopwatch.StartNew();
        try
        {
            var pending = new List<Tensor>();
            Tensor? lastNorm = null;
            long intervalTokens = 0;
            var intervalClock = Stopwatch.StartNew();
            meter.Reset();
            double lr = 0;
            // Writes checkpoint `at` (steps done) unless it exists; the pending losses go in first.
            void Checkpoint(int at)
            {
                if (options.CheckpointFolder is null || lastCheckpoint is not null && StepOf(lastCheckpoint) == at)
                    return;
                Flush(pending, losses);
                var state = new TrainerState
                {
                    Step = at, TotalSteps = total, TokensSeen = tokens, StepLosses = [.. losses],
                    EvalLosses = evals.Select(e => new EvalRecord(e.Item1, e.Item2)).ToList(), RunShape = shape,
                };
                lastCheckpoint = TrainingCheckpoints.Write(options.CheckpointFolder, at, folder => WriteCheckpoint(folder, state, optimizer), options.CheckpointsToKeep);
                Log?.Invoke($"Checkpoint {lastCheckpoint}.");
            }

            for (int step = start; step < total; step++)
            {
                if (options.CancellationToken.IsCancellationRequested)
                {
                    Checkpoint(step);
                    options.CancellationToken.ThrowIfCancellationRequested();
                }
                model.train();
                var batches = plan.Step(step);
                long items = Math.Max(1, batches.Sum(b => (long)b.TargetTokens));
                Tensor stepLoss = zeros(1, dtype: ScalarType.Float32, device: device).squeeze();
                foreach (var batch in batches)
                {
                    using var scope = NewDisposeScope();
                    using var output = model.Forward(ToInput(batch, device, items));
                    output.Loss!.backward();
                    stepLoss.add_(output.Loss.detach().to(ScalarType.Float32));
                    intervalTokens += batch.InputTokens;
                    tokens += batch.InputTokens;
                }
                lr = LearningRates.At(step, total, options);
                lastNorm?.Dispose();
                lastNorm = optimizer.Step(lr, options.MaxGradientNorm);
                pending.Add(stepLoss);

                int done = step + 1;
                bool report = done % options.LoggingInterval == 0 || done == total;
                if (report)
                {
                    var recent = Flush(pending, losses);
                    double seconds = intervalClock.Elapsed.TotalSeconds;
                    Report(new TrainingProgress(done, total, plan.EpochAt(done), recent.Average(), lr, lastNorm.item<float>(),
                        intervalTokens / Math.Max(seconds, 1e-9), meter.Peak(), null));
                    intervalTokens = 0;
                    intervalClock.Restart();
                    meter.Reset();
                }
                bool epochEnd = done % plan.StepsPerEpoch == 0;
                if (validation is { Count: > 0 } && (options.EvalInterval > 0 ? done % options.EvalInterval == 0 : epochEnd) && done != total)
                    evals.Add((done, EvaluateAndReport(validation, done, total, plan)));
                if (options.CheckpointInterval > 0 && done % options.CheckpointInterval == 0 && done != total)
                    Checkpoint(done);
            }
            Flush(pending, losses);
            lastNorm?.Dispose();
            if (validation is { Count: > 0 } && (evals.Count == 0 || evals[^1].Item1 != total))
                evals.Add((total, EvaluateAndReport(validation, total, total, plan)));
            Checkpoint(total);
            return new TrainingResult(total, losses, evals, tokens, clock.Elapsed, lastCheckpoint);
        }
        finally
        {
            model.GradientCheckpointing = wasCheckpointing;
            model.train(wasTraining);
        }
    }

    /// <summary>Mean loss per target token of <paramref name="data"/> (padded batches in order, no gradients).</summary>
    public double Evaluate(IReadOnlyList<TokenizedExample> data)
    {
        ArgumentNullException.ThrowIfNull(data);
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            var device = model.LmHeadWeight.device;
            Tensor sum = zeros(1, dtype: ScalarType.Float64, device: device).squeeze();
            long count = 0;
            int taken = 0;
            foreach (var batch in BatchPlan.InOrder(data, options.BatchSize, options.MaxContextLength, padTokenId))
            {
                if (options.MaxEvalBatches is int max && taken++ >= max)
                    break;
                if (batch.TargetTokens == 0)
                    continue;
                using var scope = NewDisposeScope();
                // NumItemsInBatch = 1 makes the loss the sum over the batch's target tokens.
                using var output = model.Forward(ToInput(batch, device, numItems: 1));
                sum.add_(output.Loss!.to(ScalarType.Float64));
                count += batch.TargetTokens;
            }
            return count == 0 ? double.NaN : sum.item<double>() / count;
        }
        finally
        {
            model.train(wasTraining);
        }
    }

    private double EvaluateAndReport(IReadOnlyList<TokenizedExample> validation, int step, int total, BatchPlan plan)
    {
        double loss = Evaluate(validation);
        Report(new TrainingProgress(step, total, plan.EpochAt(step), double.NaN, double.NaN, double.NaN, 0, null, loss));
        return loss;
    }

    private void Report(TrainingProgress progress)
    {
        Log?.Invoke(progress.ToString());
        OnReport?.Invoke(progress);
        options.OnProgress?.Invoke(progress);
    }

    private static CausalLMInput ToInput(MicroBatch batch, Device device, long numItems)
    {
        long[] shape = [batch.Rows, batch.Length];
        return new CausalLMInput
        {
            InputIds = tensor(batch.InputIds, shape, device: device),
            Labels = tensor(batch.Labels, shape, device: device),
            // No mask when nothing is padded: attention then takes the causal fast path.
            AttentionMask = batch.HasPadding ? tensor(batch.AttentionMask, shape, device: device) : null,
            NumItemsInBatch = numItems,
        };
    }

    /// <summary>Moves the pending step losses to the host (one synchronisation) and appends them.</summary>
    private static List<double> Flush(List<Tensor> pending, List<double> losses)
    {
        if (pending.Count == 0)
            return [];
        using var stacked = stack(pending).to(ScalarType.Float64).cpu();
        var values = stacked.data<double>().ToList();
        foreach (var t in pending)
            t.Dispose();
        pending.Clear();
        losses.AddRange(values);
        return values;
    }

    private void PrepareCheckpointFolder()
    {
        if (options.CheckpointFolder is not { } folder || options.ResumeFromCheckpoint)
            return;
        if (TrainingCheckpoints.Latest(folder) is { } existing)
            throw new InvalidOperationException(
                $"Checkpoint folder '{folder}' already holds checkpoints of a run ('{Path.GetFileName(existing)}'); set " +
                $"{nameof(CausalLMTrainingOptions.ResumeFromCheckpoint)} = true to continue it, or choose an empty folder (nothing was overwritten).");
    }

    private void WriteCheckpoint(string folder, TrainerState state, TrainingOptimizer optimizer)
    {
        model.SavePretrained(folder);
        WriteCheckpointExtras?.Invoke(folder, new TrainingResult(state.Step, state.StepLosses,
            state.EvalLosses.Select(e => (e.Step, e.Loss)).ToList(), state.TokensSeen, TimeSpan.Zero, null));
        optimizer.SaveState(Path.Combine(folder, "optimizer.bin"));
        if (optimizer.MasterWeights is { } masters)
            SafetensorsWriter.Write(Path.Combine(folder, "master_weights.safetensors"),
                masters.Select(m => new TensorToSave(m.Name, m.Master, ScalarType.Float32)).ToList(),
                new Dictionary<string, string> { ["format"] = "pt" });
        // Written last: a checkpoint is a training checkpoint once its state is there.
        state.Save(folder);
    }

    private TrainerState Resume(string checkpoint, Dictionary<string, string> shape, TrainingOptimizer optimizer)
    {
        var state = TrainerState.Load(checkpoint);
        var differences = shape.Where(kv => !state.RunShape.TryGetValue(kv.Key, out var stored) || stored != kv.Value)
            .Select(kv => $"{kv.Key}: checkpoint {(state.RunShape.TryGetValue(kv.Key, out var s) ? s : "(none)")}, now {kv.Value}")
            .ToList();
        if (differences.Count > 0)
            throw new InvalidOperationException(
                $"Cannot resume from '{checkpoint}': the run differs from the one that wrote it, so it would not continue the same trajectory ({string.Join("; ", differences)}).");
        // A tied lm_head is the embedding (SavePretrained stores it once); an untied one loads like any weight.
        SafetensorsCheckpoint.Load(model, checkpoint, new CheckpointLoadOptions { IgnoredNames = model.Config.TieWordEmbeddings ? ["lm_head.weight"] : [] });
        string masterFile = Path.Combine(checkpoint, "master_weights.safetensors");
        var masters = File.Exists(masterFile) ? SafetensorsCheckpoint.ReadTensors(masterFile) : null;
        try
        {
            optimizer.LoadState(Path.Combine(checkpoint, "optimizer.bin"), masters);
        }
        finally
        {
            if (masters is not null)
                foreach (var t in masters.Values)
                    t.Dispose();
        }
        return state;
    }

    private static int StepOf(string checkpoint) => int.Parse(Path.GetFileName(checkpoint)[TrainingCheckpoints.Prefix.Length..]);

    /// <summary>A hash of the training tokens and prompt lengths: a resume must see the same data.</summary>
    private static string Fingerprint(IReadOnlyList<TokenizedExample> data)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> four = stackalloc byte[4];
        foreach (var example in data)
        {
            BitConverter.TryWriteBytes(four, example.PromptLength);
            hash.AppendData(four);
            BitConverter.TryWriteBytes(four, example.Tokens.Length);
            hash.AppendData(four);
            hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(example.Tokens.AsSpan()));
        }
        return Convert.ToHexString(hash.GetHashAndReset())[..16];
    }
}
