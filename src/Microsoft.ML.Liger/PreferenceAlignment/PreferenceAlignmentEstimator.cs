using Microsoft.ML.Data;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Training;
using Microsoft.ML.Runtime;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.PreferenceAlignment;

/// <summary>
/// Aligns a causal LM to preferences with ORPO, DPO, CPO, SimPO or KTO on an IDataView of prompts with chosen and
/// rejected responses (KTO: prompts, completions and Boolean labels): <c>mlContext.Liger().PreferenceAlignment(options).Fit(data)</c>
/// or <c>mlContext.Liger().Orpo(options).Fit(data)</c>. Runs the fine-tuning loop (same options, reports, checkpoints,
/// resume) on Liger's chunked fused-linear preference losses, and returns the same <see cref="CausalLMTransformer"/> as
/// fine-tuning, whose <see cref="CausalLMModelInfo.Alignment"/> records the alignment.
/// </summary>
public sealed class PreferenceAlignmentEstimator : IEstimator<CausalLMTransformer>
{
    private readonly LigerCatalog catalog;
    private readonly PreferenceAlignmentOptions options;

    internal PreferenceAlignmentEstimator(LigerCatalog catalog, PreferenceAlignmentOptions options, PreferenceAlgorithm algorithm)
    {
        this.catalog = catalog;
        this.options = options;
        Algorithm = algorithm;
    }

    /// <summary>The algorithm this estimator runs.</summary>
    public PreferenceAlgorithm Algorithm { get; }

    /// <summary>Test hook: called with the policy and the reference model (null when none or precomputed) before training and after it.</summary>
    internal Action<string, CausalLM, CausalLM?>? InspectModels { get; set; }

    private bool Paired => Algorithm != PreferenceAlgorithm.Kto;

    /// <summary>Checks the schema and options, tokenizes the rows, loads or builds the model and its reference, trains and returns the transformer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A column is missing or of the wrong type (named, with the option that names it).</exception>
    /// <exception cref="ArgumentException">An option is out of range or does not apply to the algorithm (named).</exception>
    /// <exception cref="OperationCanceledException">The options' token was cancelled (after a checkpoint, when a folder is set).</exception>
    public CausalLMTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        options.Validate(Algorithm);
        options.CheckFolders();
        CheckColumns(input.Schema, "input");
        if (options.ValidationSet is { } validationSet)
            CheckColumns(validationSet.Schema, nameof(options.ValidationSet));

        var host = ((IHostEnvironment)catalog.Context).Register("PreferenceAlignment");
        using var channel = host.Start(Algorithm.ToString());
        var saved = options.BaseModelPath is { } basePath && File.Exists(Path.Combine(basePath, CausalLMModelInfo.FileName))
            ? CausalLMModelInfo.Load(basePath)
            : null;
        var tokenizer = options.Tokenizer
            ?? (options.BaseModelPath is { } path ? CausalLMTokenizer.FromPretrained(path) : CausalLMTokenizer.Gpt2());
        if (saved?.ChatTemplate is { } chat && options.Tokenizer is null)
            tokenizer.ChatTemplate = ChatTemplate.FromRoles(chat);
        if (saved is not null && saved.UseChatTemplate != options.UseChatTemplate)
            channel.Warning(MessageSensitivity.None,
                $"The base model was trained with UseChatTemplate = {saved.UseChatTemplate}, this run has {options.UseChatTemplate}: its prompts will look unlike the ones it learnt from.");
        var encoder = new ExampleEncoder(tokenizer, options.UseChatTemplate, options.SystemPrompt);
        var preferenceEncoder = new PreferenceEncoder(encoder, options.MaxContextLength, options.MaxPromptLength);
        var train = Read(input, preferenceEncoder, "input", channel);
        var validation = options.ValidationSet is null ? null : Read(options.ValidationSet, preferenceEncoder, nameof(options.ValidationSet), channel);
        if (train.Count == 0)
            throw new ArgumentException("The training data has no rows.", nameof(input));

        var device = Distributed.DistributedDevice.Of(ModelSetup.ResolveDevice(options.Device, catalog), options.Device, options.Distributed);
        var dtype = ModelSetup.ResolvePrecision(options.Precision, device);
        var model = ModelSetup.Build(options.BaseModelPath, options.Architecture, options.ArchitectureOverrides, tokenizer, options.Kernels, options.Seed, device, dtype);
        ReferenceLogProbs? reference = null;
        try
        {
            ModelSetup.CheckVocabulary(model, tokenizer);
            TrainingLoop.CheckContextLength(model, options.MaxContextLength);
            var settings = PreferenceLossSettings.From(options, Algorithm, model.FinalLogitSoftcap);
            // Made before the loop, which loads a checkpoint's weights into the policy on resume: the reference is
            // always the starting weights (or its own folder), never a checkpoint's.
            if (settings.UsesReference)
                reference = new ReferenceLogProbs(BuildReference(model, settings, device, dtype), settings.Loss.AverageLogProb, Paired, options.BatchSize, encoder.PadTokenId);
            channel.Info(MessageSensitivity.None,
                $"{Algorithm} on {model.Config.ModelType} ({ModelSetup.Parameters(model) / 1e6:F1} M parameters) on {device}, {dtype}, kernels: {model.AppliedKernels}; " +
                $"{train.Count} {(Paired ? "pairs" : "completions")}; reference: {settings.ReferenceDescription ?? "none"}.");
            if (settings.PrecomputeReference)
            {
                reference!.Precompute(train, validation);
                channel.Info(MessageSensitivity.None, "Reference log-probs precomputed; the reference model is freed.");
            }
            InspectModels?.Invoke("start", model, reference?.Model);
            var info = Info(model, tokenizer, settings);
            var result = Train(host, channel, model, tokenizer, info, settings, reference, encoder.PadTokenId, train, validation, out var lastMetrics);
            InspectModels?.Invoke("end", model, reference?.Model);
            return new CausalLMTransformer(model, tokenizer, WithTraining(info, result, lastMetrics));
        }
        catch
        {
            model.Dispose();
            throw;
        }
        finally
        {
            reference?.Dispose();
        }
    }

    /// <summary>The input's columns plus the transformer's: the generated completion for prompts, loss and perplexity of the chosen response (KTO: the completion).</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        foreach (var (name, option, boolean) in Required())
        {
            var column = inputSchema.FirstOrDefault(c => c.Name == name);
            bool ok = column.Name is not null && column.Kind == SchemaShape.Column.VectorKind.Scalar
                      && (boolean ? column.ItemType is BooleanDataViewType : column.ItemType is TextDataViewType);
            if (!ok)
                throw new ArgumentOutOfRangeException(nameof(inputSchema),
                    $"Input column '{name}' ({option}) is missing or not {(boolean ? "Boolean" : "text")} (a scalar {(boolean ? "Boolean" : "string")} column is required for {Algorithm}).");
        }
        return AddedColumns.Append(catalog.Context, inputSchema, options.GeneratedColumnName, options.LossColumnName, options.PerplexityColumnName);
    }

    private IEnumerable<(string Name, string Option, bool Boolean)> Required() => Paired
        ?
        [
            (options.PromptColumnName, nameof(options.PromptColumnName), false),
            (options.ChosenColumnName, nameof(options.ChosenColumnName), false),
            (options.RejectedColumnName, nameof(options.RejectedColumnName), false),
        ]
        :
        [
            (options.PromptColumnName, nameof(options.PromptColumnName), false),
            (options.CompletionColumnName, nameof(options.CompletionColumnName), false),
            (options.LabelColumnName, nameof(options.LabelColumnName), true),
        ];

    private void CheckColumns(DataViewSchema schema, string what)
    {
        foreach (var (name, option, boolean) in Required())
        {
            var column = schema.GetColumnOrNull(name);
            if (column is null)
                throw new ArgumentOutOfRangeException(what,
                    $"The {what} data has no column '{name}' ({option}), which {Algorithm} reads; columns present: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => $"'{c.Name}'"))}.");
            var type = column.Value.Type;
            if (boolean ? type is not BooleanDataViewType : type is not TextDataViewType)
                throw new ArgumentOutOfRangeException(what,
                    $"Column '{name}' ({option}) of the {what} data must be {(boolean ? "Boolean" : "text (String)")}; it is {type}.");
        }
    }

    private List<PreferenceExample> Read(IDataView data, PreferenceEncoder encoder, string what, IChannel channel)
    {
        int emptyRows = 0, sameRows = 0;
        var required = Required().ToArray();
        var columns = required.Select(r => data.Schema[r.Name]).ToArray();
        var examples = new List<PreferenceExample>();
        using var cursor = data.GetRowCursor(columns);
        var text = columns.Take(Paired ? 3 : 2).Select(c => cursor.GetGetter<ReadOnlyMemory<char>>(c)).ToArray();
        var label = Paired ? null : cursor.GetGetter<bool>(columns[2]);
        var values = new ReadOnlyMemory<char>[text.Length];
        bool desirable = false;
        while (cursor.MoveNext())
        {
            for (int i = 0; i < text.Length; i++)
                text[i](ref values[i]);
            label?.Invoke(ref desirable);
            var example = Paired
                ? encoder.Pair(values[0].ToString(), values[1].ToString(), values[2].ToString())
                : encoder.Labeled(values[0].ToString(), values[1].ToString(), desirable);
            foreach (var (response, r) in new[] { (example.First, 1), (example.Second, 2) })
                if (response is not null && example.TargetsOf(response) < 1)
                    throw new ArgumentException(
                        $"Row {examples.Count} of the {what} data has nothing to score in '{required[r].Name}' ({required[r].Option}): the prompt is empty and the response is one token, which nothing predicts.", what);
            bool empty = values.Skip(1).Any(v => v.IsEmpty);
            emptyRows += empty ? 1 : 0;
            sameRows += !empty && Paired && example.First.AsSpan().SequenceEqual(example.Second) ? 1 : 0;
            examples.Add(example);
        }
        CheckSignal(examples.Count, emptyRows, sameRows, what, channel);
        var settings = PreferenceLossSettings.From(options, Algorithm, null);
        return !Paired && settings.EstimateKl ? PreferenceEncoder.WithKlCompletions(examples, options.MaxContextLength) : examples;
    }

    /// <summary>
    /// Refuses data in which no row carries a preference (every response empty, or chosen equal to rejected after
    /// tokenizing and cutting), naming the columns and the counts; warns with the counts when only some rows carry none.
    /// </summary>
    private void CheckSignal(int rows, int emptyRows, int sameRows, string what, IChannel channel)
    {
        var responses = Required().Skip(1).Where(r => !r.Boolean).Select(r => $"'{r.Name}' ({r.Option})");
        string columns = string.Join(" or ", responses);
        string counts = $"{emptyRows} with an empty or missing {columns}" + (Paired ? $", {sameRows} whose chosen and rejected responses are the same tokens within MaxContextLength = {options.MaxContextLength}" : "");
        if (rows == 0)
        {
            if (what != "input") // the training data's empty case is refused by Fit
                throw new ArgumentException($"The {what} data has no rows.", what);
            return;
        }
        if (emptyRows + sameRows == rows)
            throw new ArgumentException($"No row of the {what} data has a response to learn a preference from: of {rows} rows, {counts}.", what);
        if (emptyRows + sameRows > 0)
            channel.Warning(MessageSensitivity.None,
                $"{emptyRows + sameRows} of {rows} rows of the {what} data carry no preference: {counts}. They are trained on (an empty response at most its end-of-turn token) but teach little.");
    }

    private CausalLM BuildReference(CausalLM policy, PreferenceLossSettings settings, Device device, ScalarType dtype)
    {
        if (settings.ReferenceModelPath is not { } path)
            return policy.FrozenCopy();
        var reference = CausalLM.FromPretrained(path, new CausalLMOptions { Kernels = options.Kernels, DType = dtype, Device = device });
        if (reference.Config.VocabSize != policy.Config.VocabSize)
        {
            reference.Dispose();
            throw new ArgumentException(
                $"Option '{nameof(options.ReferenceModelPath)}' is a model with vocab_size {reference.Config.VocabSize}; the policy's is {policy.Config.VocabSize} (the same tokens must be scored).",
                nameof(options.ReferenceModelPath));
        }
        return reference.Frozen();
    }

    private CausalLMModelInfo Info(CausalLM model, CausalLMTokenizer tokenizer, PreferenceLossSettings settings) => CausalLMModelInfo.Describe(model, tokenizer, options) with
    {
        DataFormat = DataFormat.PromptResponse,
        PromptColumnName = options.PromptColumnName,
        ResponseColumnName = Paired ? options.ChosenColumnName : options.CompletionColumnName,
        CompletionColumnName = options.GeneratedColumnName,
        Alignment = settings.Info(options),
    };

    private TrainingResult Train(IHost host, IChannel channel, CausalLM model, CausalLMTokenizer tokenizer, CausalLMModelInfo info,
        PreferenceLossSettings settings, ReferenceLogProbs? reference, int padId, List<PreferenceExample> train, List<PreferenceExample>? validation,
        out IReadOnlyDictionary<string, double>? lastMetrics)
    {
        using var progressChannel = host.StartProgressChannel(Algorithm.ToString());
        TrainingProgress? last = null;
        progressChannel.SetHeader(new ProgressHeader(["loss", "learning rate", "rewards/accuracies", "rewards/margins", "tokens/s"], ["steps"]), entry =>
        {
            if (last is not { } p) return;
            entry.SetProgress(0, p.Step, p.TotalSteps);
            entry.SetMetric(0, p.Loss);
            entry.SetMetric(1, p.LearningRate);
            entry.SetMetric(2, p.Metrics?.GetValueOrDefault("rewards/accuracies", double.NaN) ?? double.NaN);
            entry.SetMetric(3, p.Metrics?.GetValueOrDefault("rewards/margins", double.NaN) ?? double.NaN);
            entry.SetMetric(4, p.TokensPerSecond);
        });
        IReadOnlyDictionary<string, double>? metrics = null;
        var loop = new TrainingLoop(model, options)
        {
            Log = message => channel.Info(MessageSensitivity.None, message),
            OnReport = p =>
            {
                if (double.IsNaN(p.Loss)) return;
                last = p;
                metrics = p.Metrics;
            },
            WriteCheckpointExtras = (folder, run) =>
            {
                tokenizer.SavePretrained(folder);
                WithTraining(info, run, metrics).Save(folder);
            },
        };
        var objective = new PreferenceObjective(model, settings, reference, validation, options, padId);
        var plan = new PreferenceBatchPlan(train, options, Paired, padId);
        var result = loop.Run(plan, objective, PreferenceEncoder.Fingerprint(train), settings.RunShape(options.MaxPromptLength));
        lastMetrics = metrics;
        return result;
    }

    private static CausalLMModelInfo WithTraining(CausalLMModelInfo info, TrainingResult run, IReadOnlyDictionary<string, double>? metrics) =>
        info.WithTraining(run) with { Alignment = info.Alignment! with { FinalMetrics = metrics } };
}
