using System.Diagnostics;
using Microsoft.ML.Liger.Distributed;
using Microsoft.ML.Liger.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Training;

/// <summary>
/// The training loop every Liger trainer shares, whatever it optimises: AdamW with warm-up and decay, gradient
/// accumulation (the objective scales each micro-batch to its share of the step), global-norm clipping, fp32
/// master weights for bf16 models, periodic evaluation, atomic checkpoints and exact resume, cancellation.
/// The only host synchronisations in a step are at reports (losses and metrics are gathered on the device until
/// then). Deterministic for a seed on the CPU. With <see cref="CausalLMTrainingOptions.Distributed"/> set, the same loop
/// runs on every rank and <see cref="DataParallel"/> splits each micro-batch's rows and sums the gradients.
/// </summary>
internal sealed class TrainingLoop
{
    private readonly CausalLM model;
    private readonly CausalLMTrainingOptions options;
    private DataParallel? parallel;

    /// <param name="model">The trained model, fp32 or bf16 (validated here).</param>
    /// <param name="options">Loop options, already validated.</param>
    public TrainingLoop(CausalLM model, CausalLMTrainingOptions options)
    {
        var dtype = model.LmHeadWeight.dtype;
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"The model's weights are {dtype}; training runs in Float32 or BFloat16 (with fp32 master weights).", nameof(model));
        this.model = model;
        this.options = options;
    }

    /// <summary>Messages for a log.</summary>
    public Action<string>? Log { get; init; }

    /// <summary>Called with every report, before <see cref="CausalLMTrainingOptions.OnProgress"/>.</summary>
    public Action<TrainingProgress>? OnReport { get; init; }

    /// <summary>Writes the files every checkpoint holds besides the model and trainer state, given the staging folder and the run so far.</summary>
    public Action<string, TrainingResult>? WriteCheckpointExtras { get; init; }

    /// <summary>
    /// Trains through <paramref name="plan"/> on <paramref name="objective"/>. <paramref name="dataFingerprint"/> and
    /// <paramref name="runShape"/> (the objective's settings that fix the trajectory) are checked on resume.
    /// Throws <see cref="OperationCanceledException"/> on cancellation, after writing a checkpoint when a folder is set.
    /// </summary>
    public TrainingResult Run<TBatch>(ITrainingPlan<TBatch> plan, ITrainingObjective<TBatch> objective, string dataFingerprint,
        IReadOnlyDictionary<string, string>? runShape = null) where TBatch : class
    {
        int total = plan.TotalSteps;
        bool bf16 = model.LmHeadWeight.dtype == ScalarType.BFloat16;
        var shape = TrainerState.ShapeOf(options, bf16 ? "bf16" : "fp32", dataFingerprint, total);
        if (runShape is not null)
            foreach (var (key, value) in runShape)
                shape[key] = value;
        var device = model.LmHeadWeight.device;
        var meter = new MemoryMeter(device);
        var parallel = DataParallel.For(model, options);
        if (parallel is not null)
            foreach (var (key, value) in parallel.RunShape)
                shape[key] = value;
        using var optimizer = parallel?.CreateOptimizer(model, options, bf16) ?? new TrainingOptimizer(model, options, masterWeights: bf16);
        this.parallel = parallel;

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
        parallel?.BroadcastModel(model);

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
                Flush(pending, losses, parallel);
                var state = new TrainerState
                {
                    Step = at, TotalSteps = total, TokensSeen = tokens, StepLosses = [.. losses],
                    EvalLosses = evals.Select(e => new EvalRecord(e.Item1, e.Item2)).ToList(), RunShape = shape,
                };
                lastCheckpoint = parallel is null
                    ? TrainingCheckpoints.Write(options.CheckpointFolder, at, folder => WriteCheckpoint(folder, state, optimizer), options.CheckpointsToKeep)
                    : parallel.WriteCheckpoint(options.CheckpointFolder, at, options.CheckpointsToKeep, folder => WriteModel(folder, state), optimizer, state.Save);
                Log?.Invoke($"Checkpoint {lastCheckpoint}.");
            }

            for (int step = start; step < total; step++)
            {
                if (parallel is null ? options.CancellationToken.IsCancellationRequested : parallel.AnyCancelled(step, options))
                {
                    Checkpoint(step);
                    throw new OperationCanceledException(options.CancellationToken);
                }
                model.train();
                var batches = plan.Step(step);
                Tensor stepLoss = zeros(1, dtype: ScalarType.Float32, device: device).squeeze();
                foreach (var batch in batches)
                {
                    using var scope = NewDisposeScope();
                    // Each rank computes its rows' share of the whole step's loss (normalised over every rank's rows).
                    var mine = parallel is null ? batch : parallel.Shard(plan, batch);
                    if (mine is not null)
                        global::Liger.Kernels.Runtime.ScalarArithmetic.PlusInPlace(stepLoss, objective.Backward(mine, batches));
                    long inputs = objective.InputTokens(batch);
                    intervalTokens += inputs;
                    tokens += inputs;
                }
                parallel?.AllReduceGradients();
                lr = LearningRates.At(step, total, options);
                lastNorm?.Dispose();
                lastNorm = optimizer.Step(lr, options.MaxGradientNorm);
                pending.Add(stepLoss);

                int done = step + 1;
                bool report = done % options.LoggingInterval == 0 || done == total;
                if (report)
                {
                    var recent = Flush(pending, losses, parallel);
                    double seconds = intervalClock.Elapsed.TotalSeconds;
                    Report(new TrainingProgress(done, total, plan.EpochAt(done), recent.Average(), lr, lastNorm.item<float>(),
                        intervalTokens / Math.Max(seconds, 1e-9), meter.Peak(), null, objective.TakeMetrics()));
                    intervalTokens = 0;
                    intervalClock.Restart();
                    meter.Reset();
                }
                bool epochEnd = done % plan.StepsPerEpoch == 0;
                if (objective.HasValidation && (options.EvalInterval > 0 ? done % options.EvalInterval == 0 : epochEnd) && done != total)
                    evals.Add((done, EvaluateAndReport(objective, done, total, plan)));
                if (options.CheckpointInterval > 0 && done % options.CheckpointInterval == 0 && done != total)
                    Checkpoint(done);
            }
            Flush(pending, losses, parallel);
            lastNorm?.Dispose();
            if (objective.HasValidation && (evals.Count == 0 || evals[^1].Item1 != total))
                evals.Add((total, EvaluateAndReport(objective, total, total, plan)));
            Checkpoint(total);
            return new TrainingResult(total, losses, evals, tokens, clock.Elapsed, lastCheckpoint);
        }
        finally
        {
            model.GradientCheckpointing = wasCheckpointing;
            model.train(wasTraining);
        }
    }

    private double EvaluateAndReport<TBatch>(ITrainingObjective<TBatch> objective, int step, int total, ITrainingPlan<TBatch> plan)
    {
        var (loss, metrics) = objective.Evaluate();
        Report(new TrainingProgress(step, total, plan.EpochAt(step), double.NaN, double.NaN, double.NaN, 0, null, loss, metrics));
        return loss;
    }

    private void Report(TrainingProgress progress)
    {
        if (parallel is { IsRankZero: false })
            return;
        Log?.Invoke(progress.ToString());
        OnReport?.Invoke(progress);
        options.OnProgress?.Invoke(progress);
    }

    /// <summary>Moves the pending step losses to the host (one synchronisation; in a data-parallel run, summed over the ranks' shares first) and appends them.</summary>
    private static List<double> Flush(List<Tensor> pending, List<double> losses, DataParallel? parallel)
    {
        if (pending.Count == 0)
            return [];
        using var shares = stack(pending);
        parallel?.Sum(shares);
        using var stacked = shares.to(ScalarType.Float64).cpu();
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

    private void WriteCheckpoint(string folder, TrainerState state, ICheckpointedOptimizer optimizer)
    {
        WriteModel(folder, state);
        optimizer.Save(folder);
        // Written last: a checkpoint is a training checkpoint once its state is there.
        state.Save(folder);
    }

    private void WriteModel(string folder, TrainerState state)
    {
        model.SavePretrained(folder);
        WriteCheckpointExtras?.Invoke(folder, new TrainingResult(state.Step, state.StepLosses,
            state.EvalLosses.Select(e => (e.Step, e.Loss)).ToList(), state.TokensSeen, TimeSpan.Zero, null));
    }

    private TrainerState Resume(string checkpoint, Dictionary<string, string> shape, ICheckpointedOptimizer optimizer)
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
        optimizer.Load(checkpoint);
        return state;
    }

    private static int StepOf(string checkpoint) => int.Parse(Path.GetFileName(checkpoint)[TrainingCheckpoints.Prefix.Length..]);
}
