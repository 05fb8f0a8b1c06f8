using Liger.Kernels.Runtime;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Liger.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Training;

/// <summary>
/// The training loop every Liger trainer shares, whatever it optimises: AdamW with warm-up and decay, gradient
/// accumulation (the objective scales each micro-batch to its share of the step), global-norm clipping, fp32
/// master weights for bf16 models, periodic evaluation, atomic checkpoints and exact resume, cancellation.
/// The only host synchronisations in a step are at reports (losses and metrics are gathered on the device until
/// then), which is also where non-finite losses and gradient norms are caught (<see cref="TrainingDivergedException"/>;
/// <see cref="CausalLMTrainingOptions.SkipNonFiniteSteps"/> trades one flag read per step for skipping them instead). Deterministic for a seed on the CPU. With <see cref="CausalLMTrainingOptions.Distributed"/> set, the same loop
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
        CheckContextLength(model, options.MaxContextLength);
        this.model = model;
        this.options = options;
    }

    /// <summary>
    /// Refuses a MaxContextLength past the model's max_position_embeddings: training would put tokens at positions the model
    /// was not configured for (transformers' run_clm warns and clamps; Liger refuses, so a setting never silently does less).
    /// </summary>
    internal static void CheckContextLength(CausalLM model, int maxContextLength)
    {
        long positions = model.Config.MaxPositionEmbeddings;
        if (maxContextLength > positions)
            throw new ArgumentOutOfRangeException(nameof(CausalLMTrainingOptions.MaxContextLength), maxContextLength,
                $"Option '{nameof(CausalLMTrainingOptions.MaxContextLength)}' is {maxContextLength}, past the model's max_position_embeddings = {positions} " +
                $"(config.json): set it to at most {positions}, or raise max_position_embeddings (ArchitectureOverrides for a from-scratch model).");
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
        var skipped = new List<int>();
        long tokens = 0;
        int start = 0;
        string? lastCheckpoint = null;
        PrepareCheckpointFolder();
        if (options.ResumeFromCheckpoint && TrainingCheckpoints.Latest(options.CheckpointFolder!) is { } resumeFrom)
        {
            var state = Resume(resumeFrom, shape, optimizer, total);
            (start, tokens, lastCheckpoint) = (state.Step, state.TokensSeen, resumeFrom);
            losses.AddRange(state.StepLosses);
            evals.AddRange(state.EvalLosses.Select(e => (e.Step, e.Loss)));
            skipped.AddRange(state.SkippedSteps);
            Log?.Invoke($"Resumed from {resumeFrom} at step {start} of {total}.");
        }
        parallel?.BroadcastModel(model);

        bool wasTraining = model.training, wasCheckpointing = model.GradientCheckpointing;
        model.GradientCheckpointing = options.GradientCheckpointing;
        var clock = Stopwatch.StartNew();
        // Each step's loss share and gradient norm stay on the device until the next report, evaluation or checkpoint,
        // which moves them to the host in one synchronisation and checks them there (no extra synchronisation per step).
        var pending = new List<Tensor>();
        var pendingNorms = new List<Tensor>();
        try
        {
            long intervalTokens = 0;
            var intervalClock = Stopwatch.StartNew();
            meter.Reset();
            double lr = 0;

            // Moves the pending losses and norms to the host, appends the losses, and throws for the first non-finite one
            // of a step that was not skipped (before anything is written, so the last checkpoint stays the last good one).
            (double[] Losses, double[] Norms) Flush()
            {
                if (pending.Count == 0)
                    return ([], []);
                int first = losses.Count + 1;
                double[] all;
                using (var shares = stack(pending))
                {
                    parallel?.Sum(shares);
                    using var norms = stack(pendingNorms).to(ScalarType.Float32);
                    using var both = cat([shares, norms]).to(ScalarType.Float64).cpu();
                    all = both.data<double>().ToArray();
                }
                foreach (var t in pending.Concat(pendingNorms))
                    t.Dispose();
                pending.Clear();
                pendingNorms.Clear();
                int n = all.Length / 2;
                double[] values = all[..n], stepNorms = all[n..];
                for (int i = 0; i < n; i++)
                {
                    if (skipped.Contains(first + i))
                        continue;
                    if (!double.IsFinite(values[i]))
                        throw new TrainingDivergedException(first + i, total, "loss", values[i], lastCheckpoint);
                    if (!double.IsFinite(stepNorms[i]))
                        throw new TrainingDivergedException(first + i, total, "gradient norm", stepNorms[i], lastCheckpoint);
                }
                losses.AddRange(values);
                return (values, stepNorms);
            }

            // Writes checkpoint `at` (steps done) unless it exists; the pending losses are checked and go in first.
            void Checkpoint(int at)
            {
                if (options.CheckpointFolder is null || lastCheckpoint is not null && StepOf(lastCheckpoint) == at)
                    return;
                Flush();
                CheckWeights(at, total, lastCheckpoint);
                var state = new TrainerState
                {
                    Step = at, TotalSteps = total, TokensSeen = tokens, StepLosses = [.. losses],
                    EvalLosses = evals.Select(e => new EvalRecord(e.Item1, e.Item2)).ToList(), SkippedSteps = [.. skipped], RunShape = shape,
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
                        stepLoss.PlusInPlace(objective.Backward(mine, batches));
                    long inputs = objective.InputTokens(batch);
                    intervalTokens += inputs;
                    tokens += inputs;
                }
                parallel?.AllReduceGradients();
                lr = LearningRates.At(step, total, options);
                int done = step + 1;
                bool skip = false;
                var norm = optimizer.Step(lr, options.MaxGradientNorm, options.SkipNonFiniteSteps ? n => { skip = !Finite(stepLoss, n); return !skip; } : null);
                if (skip)
                {
                    skipped.Add(done);
                    if (parallel is not { IsRankZero: false })
                        Log?.Invoke($"Step {done} skipped: its loss or gradient norm is not finite ({nameof(CausalLMTrainingOptions.SkipNonFiniteSteps)}); {skipped.Count} skipped so far.");
                }
                pending.Add(stepLoss);
                pendingNorms.Add(norm);

                bool report = done % options.LoggingInterval == 0 || done == total;
                if (report)
                {
                    var (recent, norms) = Flush();
                    double seconds = intervalClock.Elapsed.TotalSeconds;
                    double mean = recent.Where(double.IsFinite).DefaultIfEmpty(double.NaN).Average();
                    Report(new TrainingProgress(done, total, plan.EpochAt(done), mean, lr, norms[^1],
                        intervalTokens / Math.Max(seconds, 1e-9), meter.Peak(), null, objective.TakeMetrics(), skipped.Count));
                    intervalTokens = 0;
                    intervalClock.Restart();
                    meter.Reset();
                }
                bool epochEnd = done % plan.StepsPerEpoch == 0;
                if (objective.HasValidation && (options.EvalInterval > 0 ? done % options.EvalInterval == 0 : epochEnd) && done != total)
                {
                    Flush(); // evaluation waits for the device anyway: check the steps first, so no report follows a diverged one
                    evals.Add((done, EvaluateAndReport(objective, done, total, plan)));
                }
                if (options.CheckpointInterval > 0 && done % options.CheckpointInterval == 0 && done != total)
                    Checkpoint(done);
            }
            Flush();
            CheckWeights(total, total, lastCheckpoint);
            if (objective.HasValidation && (evals.Count == 0 || evals[^1].Item1 != total))
                evals.Add((total, EvaluateAndReport(objective, total, total, plan)));
            Checkpoint(total);
            return new TrainingResult(total, losses, evals, tokens, clock.Elapsed, lastCheckpoint) { SkippedSteps = [.. skipped] };
        }
        finally
        {
            foreach (var t in pending.Concat(pendingNorms))
                t.Dispose();
            model.GradientCheckpointing = wasCheckpointing;
            model.train(wasTraining);
        }
    }

    /// <summary>
    /// Whether the step's loss share and gradient norm are finite, agreed by every rank (one flag summed over the ranks):
    /// the host reads it, one synchronisation per step, which only <see cref="CausalLMTrainingOptions.SkipNonFiniteSteps"/> pays.
    /// </summary>
    private bool Finite(Tensor loss, Tensor norm)
    {
        using var scope = NewDisposeScope();
        var bad = loss.isfinite().logical_and(norm.isfinite()).logical_not().to(ScalarType.Float32);
        parallel?.Sum(bad);
        return bad.item<float>() == 0;
    }

    /// <summary>Throws <see cref="TrainingDivergedException"/> when any weight is NaN or infinite after step <paramref name="step"/> (one reduction, one synchronisation).</summary>
    private void CheckWeights(int step, int total, string? lastCheckpoint)
    {
        using var scope = NewDisposeScope();
        var finite = stack(model.parameters().Select(p =>
        {
            using var each = p.isfinite(); // freed at once: a whole model's flags would otherwise live until the scope ends
            return each.all();
        }).ToArray()).all();
        if (!finite.item<bool>())
            throw new TrainingDivergedException(step, total, "weights", double.NaN, lastCheckpoint);
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

    private void PrepareCheckpointFolder()
    {
        options.CheckFolders();
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

    private TrainerState Resume(string checkpoint, Dictionary<string, string> shape, ICheckpointedOptimizer optimizer, int total)
    {
        var state = TrainerState.Load(checkpoint);
        var differences = TrainerState.Differences(state.RunShape, shape, options, state.Step, total);
        differences.AddRange(ConfigDifferences(checkpoint));
        if (differences.Count > 0)
            throw new InvalidOperationException(
                $"Cannot resume from '{checkpoint}': {differences.Count} option{(differences.Count == 1 ? "" : "s")} differ{(differences.Count == 1 ? "s" : "")} from the run that wrote it, " +
                $"so it would not continue the same trajectory: {string.Join("; ", differences)}. Resume with the checkpoint's values, or start a new run " +
                $"from the checkpoint folder as BaseModelPath (a checkpoint is a complete model; the optimizer state starts afresh). docs/fine-tuning.md lists what may change on resume.");
        // A tied lm_head is the embedding (SavePretrained stores it once); an untied one loads like any weight.
        SafetensorsWeights.Load(model, checkpoint, new WeightLoadOptions { IgnoredNames = model.Config.TieWordEmbeddings ? ["lm_head.weight"] : [] });
        optimizer.Load(checkpoint);
        return state;
    }

    /// <summary>The model's config.json fields that differ from the checkpoint's (BaseModelPath or ArchitectureOverrides changed), dtype aside (Precision is checked with the run shape).</summary>
    private List<string> ConfigDifferences(string checkpoint)
    {
        string path = Path.Combine(checkpoint, "config.json");
        JsonObject stored;
        try
        {
            stored = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"'{path}' must hold a JSON object.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not valid JSON (a checkpoint's model config was expected): {e.Message}", e);
        }
        var now = (JsonObject)JsonNode.Parse(model.Config.ToJson())!;
        string[] ignored = ["dtype", "torch_dtype"];
        return stored.Select(kv => kv.Key).Union(now.Select(kv => kv.Key)).Where(key => !ignored.Contains(key))
            .Where(key => !JsonNode.DeepEquals(stored[key], now[key]))
            .Select(key => $"config.json field '{key}' (BaseModelPath or ArchitectureOverrides): checkpoint {Json(stored[key])}, now {Json(now[key])}")
            .ToList();

        static string Json(JsonNode? node) => node is null ? "(none)" : node.ToJsonString();
    }

    private static int StepOf(string checkpoint) => int.Parse(Path.GetFileName(checkpoint)[TrainingCheckpoints.Prefix.Length..]);
}
