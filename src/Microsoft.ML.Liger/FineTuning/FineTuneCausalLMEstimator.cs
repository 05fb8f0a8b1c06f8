using Microsoft.ML.Data;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Training;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.FineTuning;

/// <summary>
/// Fine-tunes (or trains from scratch) a causal LM on an IDataView of text, or of prompts and responses:
/// <c>mlContext.Liger().FineTuneCausalLM(options).Fit(data)</c>. Reports progress on ML.NET's progress
/// channel and log (and <see cref="CausalLMTrainingOptions.OnProgress"/>), and returns a <see cref="CausalLMTransformer"/>.
/// </summary>
public sealed class FineTuneCausalLMEstimator : IEstimator<CausalLMTransformer>
{
    private readonly LigerCatalog catalog;
    private readonly FineTuneCausalLMOptions options;

    internal FineTuneCausalLMEstimator(LigerCatalog catalog, FineTuneCausalLMOptions options)
    {
        this.catalog = catalog;
        this.options = options;
    }

    /// <summary>Checks the schema, tokenizes the rows, builds or loads the model, trains it and returns the transformer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A column is missing or not text (named, with the option that names it).</exception>
    /// <exception cref="OperationCanceledException">The options' token was cancelled (after a checkpoint, when a folder is set).</exception>
    public CausalLMTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        options.Validate();
        options.CheckFolders();
        var format = ResolveFormat(input.Schema, "input");
        if (options.ValidationSet is { } validationSet)
            CheckColumns(validationSet.Schema, format, nameof(options.ValidationSet));

        var host = ((IHostEnvironment)catalog.Context).Register("LlmFineTune");
        using var channel = host.Start("FineTuneCausalLM");
        var tokenizer = options.Tokenizer
            ?? (options.BaseModelPath is { } path ? CausalLMTokenizer.FromPretrained(path) : CausalLMTokenizer.Gpt2());
        var encoder = new ExampleEncoder(tokenizer, options.UseChatTemplate, options.SystemPrompt);
        var (train, trainEmpty) = Read(input, format, encoder);
        CheckTargets(train, trainEmpty, format, "input", channel);
        List<TokenizedExample>? validation = null;
        if (options.ValidationSet is not null)
        {
            (validation, var validationEmpty) = Read(options.ValidationSet, format, encoder);
            CheckTargets(validation, validationEmpty, format, nameof(options.ValidationSet), channel);
        }

        var device = Distributed.DistributedDevice.Of(ModelSetup.ResolveDevice(options.Device, catalog), options.Device, options.Distributed);
        var dtype = ModelSetup.ResolvePrecision(options.Precision, device);
        var model = ModelSetup.Build(options.BaseModelPath, options.Architecture, options.ArchitectureOverrides, tokenizer, options.Kernels, options.Seed, device, dtype);
        try
        {
            ModelSetup.CheckVocabulary(model, tokenizer);
            TrainingLoop.CheckContextLength(model, options.MaxContextLength);
            channel.Info(MessageSensitivity.None, $"Fine-tuning {model.Config.ModelType} ({ModelSetup.Parameters(model) / 1e6:F1} M parameters) on {device}, {dtype}, kernels: {model.AppliedKernels}; " +
                         $"{train.Count} {format} rows ({train.Sum(e => (long)e.Tokens.Length)} tokens).");
            var info = Info(format, model, tokenizer);
            var result = Train(host, channel, model, tokenizer, info, encoder, train, validation);
            return new CausalLMTransformer(model, tokenizer, info.WithTraining(result));
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The input's columns plus the transformer's: completion for prompts, loss and perplexity for scored rows.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        bool HasText(string name) => inputSchema.FirstOrDefault(c => c.Name == name) is { Name: not null } c
                                    && c.Kind == SchemaShape.Column.VectorKind.Scalar && c.ItemType is TextDataViewType;
        var format = options.DataFormat;
        foreach (var (name, option) in Required(format == DataFormat.Auto
                     ? HasText(options.PromptColumnName) && HasText(options.ResponseColumnName) ? DataFormat.PromptResponse : DataFormat.Text
                     : format))
            if (!HasText(name))
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Input column '{name}' ({option}) is missing or not text (a scalar string column is required).");
        bool scored = format == DataFormat.PromptResponse || format == DataFormat.Auto && HasText(options.PromptColumnName) && HasText(options.ResponseColumnName)
            || HasText(options.TextColumnName);
        return AddedColumns.Append(catalog.Context, inputSchema,
            completion: HasText(options.PromptColumnName) ? options.CompletionColumnName : null,
            loss: scored ? options.LossColumnName : null,
            perplexity: scored ? options.PerplexityColumnName : null);
    }

    private DataFormat ResolveFormat(DataViewSchema schema, string what)
    {
        var format = options.DataFormat;
        if (format == DataFormat.Auto)
            format = schema.GetColumnOrNull(options.PromptColumnName) is not null && schema.GetColumnOrNull(options.ResponseColumnName) is not null
                ? DataFormat.PromptResponse
                : DataFormat.Text;
        if (format == DataFormat.Text && options.DataFormat == DataFormat.Auto && schema.GetColumnOrNull(options.TextColumnName) is null)
            throw new ArgumentOutOfRangeException(what,
                $"The {what} data has neither a text column '{options.TextColumnName}' ({nameof(options.TextColumnName)}) nor prompt and response columns " +
                $"'{options.PromptColumnName}' and '{options.ResponseColumnName}' ({nameof(options.PromptColumnName)}, {nameof(options.ResponseColumnName)}). " +
                $"Columns present: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => $"'{c.Name}' ({c.Type})"))}.");
        CheckColumns(schema, format, what);
        return format;
    }

    private void CheckColumns(DataViewSchema schema, DataFormat format, string what)
    {
        foreach (var (name, option) in Required(format))
        {
            var column = schema.GetColumnOrNull(name);
            if (column is null)
                throw new ArgumentOutOfRangeException(what,
                    $"The {what} data has no column '{name}' ({option}); columns present: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => $"'{c.Name}'"))}.");
            if (column.Value.Type is not TextDataViewType)
                throw new ArgumentOutOfRangeException(what,
                    $"Column '{name}' ({option}) of the {what} data must be text (String); it is {column.Value.Type}.");
        }
    }

    private IEnumerable<(string Name, string Option)> Required(DataFormat format) => format == DataFormat.PromptResponse
        ? [(options.PromptColumnName, nameof(options.PromptColumnName)), (options.ResponseColumnName, nameof(options.ResponseColumnName))]
        : [(options.TextColumnName, nameof(options.TextColumnName))];

    /// <summary>The rows as examples, and which rows have an empty (or missing) text or response.</summary>
    private (List<TokenizedExample> Examples, bool[] Empty) Read(IDataView data, DataFormat format, ExampleEncoder encoder)
    {
        var names = Required(format).Select(r => r.Name).ToArray();
        var columns = names.Select(n => data.Schema[n]).ToArray();
        var examples = new List<TokenizedExample>();
        var empty = new List<bool>();
        using var cursor = data.GetRowCursor(columns);
        var getters = columns.Select(c => cursor.GetGetter<ReadOnlyMemory<char>>(c)).ToArray();
        var values = new ReadOnlyMemory<char>[columns.Length];
        while (cursor.MoveNext())
        {
            for (int i = 0; i < getters.Length; i++)
                getters[i](ref values[i]);
            examples.Add(format == DataFormat.PromptResponse
                ? encoder.PromptResponse(values[0].ToString(), values[1].ToString())
                : encoder.Text(values[0].ToString()));
            empty.Add(values[^1].IsEmpty);
        }
        return (examples, [.. empty]);
    }

    /// <summary>
    /// Refuses data in which no row has a token to train on (every text or response empty, or cut away by
    /// MaxContextLength), naming the column and the counts; warns with the counts when only some rows have none.
    /// </summary>
    private void CheckTargets(List<TokenizedExample> examples, bool[] empty, DataFormat format, string what, IChannel channel)
    {
        var (column, option) = Required(format).Last();
        string target = format == DataFormat.PromptResponse ? "response" : "text";
        // What the batch plan trains on: tokens past each row's prompt (and past its first token) within MaxContextLength;
        // packing cuts nothing away.
        bool Fits(TokenizedExample e) => options.Packing
            ? e.TargetCount > 0
            : Math.Min(e.Tokens.Length, options.MaxContextLength) - Math.Max(1, e.PromptLength) > 0;
        int emptyRows = empty.Count(x => x);
        int cut = examples.Where((e, i) => !empty[i] && !Fits(e)).Count();
        int usable = examples.Count - emptyRows - cut;
        string counts = $"{emptyRows} with an empty or missing {target}, {cut} with no {target} token within MaxContextLength = {options.MaxContextLength}" +
                        (format == DataFormat.PromptResponse ? " (the prompt fills it)" : "");
        string where = $"column '{column}' ({option}) of the {what} data";
        if (usable == 0)
            throw new ArgumentException(
                examples.Count == 0
                    ? $"The {what} data has no rows."
                    : $"No row has a token to {(what == "input" ? "train" : "evaluate")} on in {where}: of {examples.Count} rows, {counts}.",
                what);
        if (emptyRows + cut > 0)
            channel.Warning(MessageSensitivity.None,
                $"{emptyRows + cut} of {examples.Count} rows have no {target} token to {(what == "input" ? "train" : "evaluate")} on in {where}: {counts}. " +
                "They add nothing (an empty row at most its end-of-sequence token).");
    }

    private CausalLMModelInfo Info(DataFormat format, CausalLM model, CausalLMTokenizer tokenizer) => CausalLMModelInfo.Describe(model, tokenizer, options) with
    {
        DataFormat = format,
        TextColumnName = options.TextColumnName,
        PromptColumnName = options.PromptColumnName,
        ResponseColumnName = options.ResponseColumnName,
        CompletionColumnName = options.CompletionColumnName,
    };

    private TrainingResult Train(IHost host, IChannel channel, CausalLM model, CausalLMTokenizer tokenizer, CausalLMModelInfo info,
        ExampleEncoder encoder, List<TokenizedExample> train, List<TokenizedExample>? validation)
    {
        using var progressChannel = host.StartProgressChannel("Fine-tuning");
        TrainingProgress? last = null;
        progressChannel.SetHeader(new ProgressHeader(["loss", "learning rate", "tokens/s", "peak MiB"], ["steps"]), entry =>
        {
            if (last is not { } p) return;
            entry.SetProgress(0, p.Step, p.TotalSteps);
            entry.SetMetric(0, p.Loss);
            entry.SetMetric(1, p.LearningRate);
            entry.SetMetric(2, p.TokensPerSecond);
            entry.SetMetric(3, p.PeakMemoryBytes is long b ? b / (1024.0 * 1024.0) : double.NaN);
        });
        var trainer = new CausalLMTrainer(model, options, encoder.PadTokenId, encoder.EndTokenId)
        {
            Log = message => channel.Info(MessageSensitivity.None, message),
            OnReport = p =>
            {
                if (!double.IsNaN(p.Loss)) last = p;
            },
            // Every checkpoint is a complete saved model: LoadCausalLM reads it.
            WriteCheckpointExtras = (folder, run) =>
            {
                tokenizer.SavePretrained(folder);
                info.WithTraining(run).Save(folder);
            },
        };
        return trainer.Train(train, validation);
    }
}
