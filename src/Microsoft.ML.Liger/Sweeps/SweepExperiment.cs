using System.Diagnostics;
using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Sweeps.Tuners;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Liger.Sweeps;

/// <summary>
/// A sweep of short fine-tuning trials over a search space, shaped like AutoML's <c>AutoMLExperiment</c>:
/// <c>mlContext.Liger().CreateSweep(options).SetDataset(train, validation).SetSearchSpace(space).SetMaxTrials(12).RunAsync()</c>.
/// </summary>
/// <remarks>
/// <para>Each trial fine-tunes a fresh model (the base options' seed, so every trial starts from the same weights and data
/// order) for <see cref="SetStepsPerTrial"/> optimizer steps, on a copy of the base options with the trial's point applied.
/// The copy's <c>MaxSteps</c> is the steps per trial, it evaluates only at the end, logs at least four times, and it writes
/// checkpoints only when the base options name a folder (then into a trial-N subfolder).</para>
/// <para>A trial that runs out of memory (CUDA or host) is <see cref="TrialStatus.Infeasible"/>; one that throws anything else
/// is <see cref="TrialStatus.Failed"/>; the sweep goes on after both, the first trial included.</para>
/// <para>Budgets: no new trial starts once <see cref="SetMaxTrials"/> trials have run (points the cost-aware tuner skips do not
/// count) or <see cref="SetTrainingTimeInSeconds"/> have passed; a trial already running finishes. The sweep also ends when
/// the tuner has no point left.</para>
/// <para>Cancellation stops the running trial between optimizer steps; it is recorded <see cref="TrialStatus.Cancelled"/> and
/// <see cref="RunAsync"/> returns the trials so far rather than throwing.</para>
/// </remarks>
public sealed class SweepExperiment
{
    private const int DefaultPointsPerRange = 3;

    private readonly LigerCatalog catalog;
    private readonly FineTuneCausalLMOptions baseOptions;
    private ISearchSpace space;
    private Action<IReadOnlyDictionary<string, object>, FineTuneCausalLMOptions> apply;
    private Func<ITuner> tuner;
    private IDataView? train;
    private IDataView? validation;
    private int maxTrials = int.MaxValue;
    private TimeSpan? timeBudget;
    private int stepsPerTrial = 20;
    private string? outputFolder;
    private bool endless; // the random tuner over a continuous range never runs out of points

    internal SweepExperiment(LigerCatalog catalog, FineTuneCausalLMOptions baseOptions)
    {
        this.catalog = catalog;
        this.baseOptions = baseOptions;
        space = new SearchSpace<FineTuneCausalLMSearchSpace>();
        apply = FineTuneApply(new SearchSpace<FineTuneCausalLMSearchSpace>());
        tuner = () => new CostAwareTuner(space, DefaultPointsPerRange);
    }

    /// <summary>Raised on the sweep's thread after each trial is recorded (and, with an output folder, saved).</summary>
    public event EventHandler<TrialResult>? TrialCompleted;

    /// <summary>The trial itself: a fine-tuning run by default; tests put failures and fakes here.</summary>
    internal Func<TrialContext, TrialMetrics> TrialRunner { get; set; } = FineTuneTrial.Run;

    /// <summary>Sweeps <paramref name="space"/>; <paramref name="apply"/> writes a point into a trial's copy of the options.</summary>
    public SweepExperiment SetSearchSpace<T>(SearchSpace<T> space, Action<T, FineTuneCausalLMOptions> apply)
        where T : class, new()
    {
        ArgumentNullException.ThrowIfNull(space);
        ArgumentNullException.ThrowIfNull(apply);
        var clash = space.Dimensions.Select(d => d.Name).Intersect(["Id", "Parameters", "Status", "EvalLoss", "TokensPerSecond", "PeakMemoryBytes", "DurationSeconds", "Error", "IsBest"]).FirstOrDefault();
        if (clash is not null)
            throw new ArgumentException($"{typeof(T).Name}.{clash}: a parameter cannot share its name with a result column; rename the property.", nameof(space));
        this.space = space;
        this.apply = (point, options) => apply(space.Create(point), options);
        return this;
    }

    /// <summary>Sweeps a <see cref="FineTuneCausalLMSearchSpace"/>: each point sets the options of the same names (Liger: the kernels on or off).</summary>
    public SweepExperiment SetSearchSpace(SearchSpace<FineTuneCausalLMSearchSpace> space)
    {
        ArgumentNullException.ThrowIfNull(space);
        this.space = space;
        apply = FineTuneApply(space);
        return this;
    }

    private Action<IReadOnlyDictionary<string, object>, FineTuneCausalLMOptions> FineTuneApply(SearchSpace<FineTuneCausalLMSearchSpace> space) =>
        (point, options) => FineTuneCausalLMSearchSpace.Apply(space.Create(point), options, baseOptions.Kernels);

    /// <summary>The training rows, and held-out rows for each trial's eval loss (null: the base options' validation set, if any;
    /// without one the eval loss is the last training step's loss).</summary>
    public SweepExperiment SetDataset(IDataView train, IDataView? validation = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        this.train = train;
        this.validation = validation;
        return this;
    }

    /// <summary>Runs at most <paramref name="maxTrials"/> trials. Default: no limit (the tuner or the time budget ends the sweep).</summary>
    public SweepExperiment SetMaxTrials(int maxTrials)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxTrials, 1);
        this.maxTrials = maxTrials;
        return this;
    }

    /// <summary>Starts no trial after <paramref name="seconds"/> seconds of sweeping (a running trial finishes). Default: no limit.</summary>
    public SweepExperiment SetTrainingTimeInSeconds(int seconds)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(seconds, 1);
        timeBudget = TimeSpan.FromSeconds(seconds);
        return this;
    }

    /// <summary>Optimizer steps per trial (the trial's <c>MaxSteps</c>). Default 20.</summary>
    public SweepExperiment SetStepsPerTrial(int steps)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(steps, 1);
        stepsPerTrial = steps;
        return this;
    }

    /// <summary>Tries every grid point once, in grid order (<see cref="SearchSpace{T}.Grid"/>).</summary>
    public SweepExperiment SetGridSearchTuner(int pointsPerRange = DefaultPointsPerRange)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pointsPerRange, 1);
        tuner = () => new GridSearchTuner(space, pointsPerRange);
        endless = false;
        return this;
    }

    /// <summary>Tries random points, each once, from a generator seeded with <paramref name="seed"/> (null: the base options' <c>Seed</c>).</summary>
    public SweepExperiment SetRandomSearchTuner(int? seed = null)
    {
        tuner = () => new RandomSearchTuner(space, seed ?? baseOptions.Seed);
        endless = true;
        return this;
    }

    /// <summary>
    /// The default tuner: the grid from the cheapest estimated point upward, skipping the points an out-of-memory trial proves
    /// cannot fit (recorded <see cref="TrialStatus.Infeasible"/> without running). Cost: tokens per step
    /// (BatchSize · GradientAccumulationSteps · MaxContextLength, a third more with gradient checkpointing), then memory
    /// (more without Liger). Infeasible: no smaller context or batch than an out-of-memory point, checkpointing and Liger on
    /// only where it had them on, everything else but learning rate and accumulation equal. docs/sweeps.md has the details.
    /// </summary>
    public SweepExperiment SetCostAwareTuner() => SetCostAwareTuner(DefaultPointsPerRange);

    /// <summary><see cref="SetCostAwareTuner()"/> with <paramref name="pointsPerRange"/> grid points per range dimension.</summary>
    public SweepExperiment SetCostAwareTuner(int pointsPerRange)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pointsPerRange, 1);
        tuner = () => new CostAwareTuner(space, pointsPerRange);
        endless = false;
        return this;
    }

    /// <summary>Writes trials.csv and trials.json to <paramref name="folder"/> after every trial (each replaced whole, never half written).</summary>
    public SweepExperiment SetOutputFolder(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        outputFolder = folder;
        return this;
    }

    /// <summary>
    /// Runs the sweep on a background thread. Cancelling <paramref name="cancellationToken"/> (or the base options' token) stops
    /// the running trial, records it <see cref="TrialStatus.Cancelled"/> and returns the trials so far: the task does not throw
    /// for cancellation.
    /// </summary>
    /// <exception cref="InvalidOperationException">No dataset was set, or the base options are invalid.</exception>
    public Task<SweepResult> RunAsync(CancellationToken cancellationToken = default)
    {
        if (train is null)
            throw new InvalidOperationException($"Call {nameof(SetDataset)} before {nameof(RunAsync)}: the sweep has no training data.");
        if (endless && maxTrials == int.MaxValue && timeBudget is null && space.Dimensions.Any(d => d.IsRange && d.ValueType == typeof(double)))
            throw new InvalidOperationException(
                $"Random search over a continuous range never runs out of points: call {nameof(SetMaxTrials)} or {nameof(SetTrainingTimeInSeconds)}.");
        baseOptions.Validate();
        // Folders fail now, not after the first trial (whose checkpoints go under the base folder, and whose results go to the output).
        baseOptions.CheckFolders();
        if (outputFolder is not null)
            Training.WritableFolder.Check(outputFolder, nameof(SetOutputFolder));
        var run = new SweepRun(this, train, validation ?? baseOptions.ValidationSet, tuner(), cancellationToken);
        return Task.Run(run.Execute, CancellationToken.None);
    }

    /// <summary>One execution of the sweep, with the settings as they were when it started.</summary>
    private sealed class SweepRun(SweepExperiment sweep, IDataView train, IDataView? validation, ITuner tuner, CancellationToken token)
    {
        private readonly ISearchSpace space = sweep.space;
        private readonly Action<IReadOnlyDictionary<string, object>, FineTuneCausalLMOptions> apply = sweep.apply;
        private readonly Func<TrialContext, TrialMetrics> runner = sweep.TrialRunner;
        private readonly int maxTrials = sweep.maxTrials, steps = sweep.stepsPerTrial;
        private readonly TimeSpan? budget = sweep.timeBudget;
        private readonly string? output = sweep.outputFolder;
        private readonly List<TrialResult> trials = [];

        public SweepResult Execute()
        {
            using var cancel = CancellationTokenSource.CreateLinkedTokenSource(token, sweep.baseOptions.CancellationToken);
            var host = ((IHostEnvironment)sweep.catalog.Context).Register("LigerSweep");
            using var channel = host.Start("Sweep");
            var clock = Stopwatch.StartNew();
            int ran = 0;
            while (!cancel.IsCancellationRequested && ran < maxTrials && !(clock.Elapsed >= budget))
            {
                if (tuner.Propose(trials) is not { } proposal)
                    break;
                int id = trials.Count + 1;
                TrialResult trial;
                if (proposal.InfeasibleBecause is { } reason)
                {
                    trial = new TrialResult(id, proposal.Parameters, TrialStatus.Infeasible, null, null, null, TimeSpan.Zero, reason);
                }
                else
                {
                    trial = RunTrial(id, proposal.Parameters, cancel.Token);
                    ran++;
                }
                Record(trial, channel);
                if (trial.Status == TrialStatus.Cancelled)
                    break;
            }
            return Result();
        }

        private TrialResult RunTrial(int id, IReadOnlyDictionary<string, object> point, CancellationToken cancellation)
        {
            var clock = Stopwatch.StartNew();
            try
            {
                var options = TrialOptions(id, point, cancellation);
                var metrics = runner(new TrialContext(id, point, options, train, sweep.catalog));
                return new TrialResult(id, point, TrialStatus.Completed, metrics.EvalLoss, metrics.TokensPerSecond, metrics.PeakMemoryBytes, clock.Elapsed, null);
            }
            catch (Exception e) when (cancellation.IsCancellationRequested && e is OperationCanceledException)
            {
                return new TrialResult(id, point, TrialStatus.Cancelled, null, null, null, clock.Elapsed, "Cancelled while training.");
            }
            catch (Exception e) when (OutOfMemory.Is(e))
            {
                var elapsed = clock.Elapsed;
                OutOfMemory.Release();
                return new TrialResult(id, point, TrialStatus.Infeasible, null, null, null, elapsed, $"Out of memory: {Describe(e)}");
            }
            catch (Exception e)
            {
                return new TrialResult(id, point, TrialStatus.Failed, null, null, null, clock.Elapsed, Describe(e));
            }
        }

        private FineTuneCausalLMOptions TrialOptions(int id, IReadOnlyDictionary<string, object> point, CancellationToken cancellation)
        {
            var options = sweep.baseOptions.Copy();
            apply(point, options);
            options.MaxSteps = steps;
            options.EvalInterval = steps; // evaluate once, at the end (an epoch end inside a short trial would add more)
            options.LoggingInterval = Math.Clamp(steps / 4, 1, Math.Max(1, sweep.baseOptions.LoggingInterval));
            options.ValidationSet = validation;
            options.CheckpointFolder = sweep.baseOptions.CheckpointFolder is { } folder ? Path.Combine(folder, $"trial-{id}") : null;
            options.ResumeFromCheckpoint = false;
            options.CancellationToken = cancellation;
            return options;
        }

        private void Record(TrialResult trial, IChannel channel)
        {
            trials.Add(trial);
            channel.Info(MessageSensitivity.None, $"Trial {trial.Id} ({string.Join(", ", trial.Parameters.Select(p => $"{p.Key} = {SearchDimension.Format(p.Value)}"))}): " +
                $"{trial.Status}{(trial.EvalLoss is double l ? $", eval loss {l:F4}" : "")}{(trial.TokensPerSecond is double s ? $", {s:F0} tokens/s" : "")}" +
                $"{(trial.Error is { } e ? $" ({e})" : "")}.");
            if (output is not null)
            {
                var result = Result();
                result.SaveCsv(Path.Combine(output, "trials.csv"));
                result.SaveJson(Path.Combine(output, "trials.json"));
            }
            sweep.TrialCompleted?.Invoke(sweep, trial);
        }

        private SweepResult Result() => new(space.Dimensions.Select(d => d.Name).ToList(), trials.ToList());

        private static string Describe(Exception e)
        {
            var inner = e is AggregateException { InnerExceptions.Count: 1 } a ? a.InnerExceptions[0] : e;
            return $"{inner.GetType().Name}: {inner.Message}";
        }
    }
}
