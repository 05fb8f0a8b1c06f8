using Microsoft.ML.Data;
using Microsoft.ML.Liger.Models;
using Microsoft.ML.Liger.Models.Tokenization;
using Microsoft.ML.Liger.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger;

/// <summary>
/// A fine-tuned causal LM as an ML.NET transformer. <see cref="Transform"/> adds, lazily per row, a generated
/// completion column for prompts and per-row loss and perplexity columns for rows that hold targets (prompt and
/// response, or text). It is a row-to-row mapper, so <c>mlContext.Model.CreatePredictionEngine</c> works on it (alone
/// or at the end of a chain) and gives the same values as <see cref="Transform"/> for the same row. Persist it with
/// <see cref="Save"/> and <see cref="LigerCatalog.LoadCausalLM"/>: a Hugging Face folder (config.json, safetensors,
/// tokenizer) plus liger_model.json. ML.NET's <c>mlContext.Model.Save</c> cannot carry a TorchSharp model through its
/// public API, and says so.
/// </summary>
/// <remarks>
/// Thread safety: <see cref="Generate"/>, <see cref="Score"/>, <see cref="ScoreText"/>, <see cref="LogProbability"/> and
/// <see cref="Save"/> take one lock, so cursors and prediction engines on several threads may share one transformer;
/// their calls run one at a time (one model, one device). A prediction engine itself is not thread-safe (ML.NET's rule):
/// use one per thread, each made with <c>OwnsTransformer = false</c> so that disposing one leaves the model to the others.
/// </remarks>
public sealed class CausalLMTransformer : ITransformer, IDisposable
{
    private readonly object gate = new();
    private bool disposed;
    private readonly ExampleEncoder encoder;

    /// <summary>
    /// Wraps a model (for example one loaded with <see cref="CausalLM.FromPretrained"/>, before any training) for
    /// generation, scoring and <see cref="Transform"/>. The transformer then owns the model: <see cref="Dispose"/> frees it.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="tokenizer">Its tokenizer.</param>
    /// <param name="info">Columns and formats; null: prompt/response rows in the "Prompt" and "Response" columns, no chat template.</param>
    public CausalLMTransformer(CausalLM model, CausalLMTokenizer tokenizer, CausalLMModelInfo? info = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        info ??= new CausalLMModelInfo { DataFormat = DataFormat.PromptResponse, Kernels = model.Options.Kernels };
        if (info.DataFormat == DataFormat.Auto)
            throw new ArgumentException("info.DataFormat must be Text or PromptResponse (the format the rows are in), not Auto.", nameof(info));
        Model = model;
        Tokenizer = tokenizer;
        Info = info;
        if (info.ChatTemplate is { } chat)
            tokenizer.ChatTemplate = ChatTemplate.FromRoles(chat);
        encoder = new ExampleEncoder(tokenizer, info.UseChatTemplate, info.SystemPrompt);
    }

    /// <summary>The model (TorchSharp module): use it directly for anything the columns do not cover.</summary>
    public CausalLM Model { get; }

    /// <summary>The tokenizer.</summary>
    public CausalLMTokenizer Tokenizer { get; }

    /// <summary>Columns, formats and the training record.</summary>
    public CausalLMModelInfo Info { get; }

    /// <summary>True: each output row maps one input row (see <see cref="GetRowToRowMapper"/>).</summary>
    public bool IsRowToRowMapper => true;

    /// <summary>Generates the completion of one prompt (formatted as in training), as text.</summary>
    public string Generate(string prompt, GenerationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        // Tokenizing runs under the model's lock too: CausalLMTokenizer promises nothing about concurrent use, and it is cheap next to the model.
        lock (gate)
            return GenerateLocked(prompt, options);
    }

    private string GenerateLocked(string prompt, GenerationOptions? options)
    {
        var settings = (options ?? Info.Generation) with { StopTokenIds = encoder.StopTokenIds, PadTokenId = encoder.PadTokenId };
        int[] ids = encoder.Prompt(prompt);
        if (ids.Length == 0)
            throw new ArgumentException("The prompt gives no token to continue: it is empty, and the tokenizer adds no BOS token.", nameof(prompt));
        long positions = Model.Config.MaxPositionEmbeddings;
        if (ids.Length >= positions)
            throw new ArgumentException(
                $"The prompt is {ids.Length} tokens, which fills the model's max_position_embeddings = {positions}: no token can follow it. Shorten the prompt.", nameof(prompt));
        return InEvalMode(device =>
        {
            var input = tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length], device: device);
            var output = Model.Generate(input, null, settings).cpu();
            var generated = output[0].data<long>().Skip(ids.Length).Select(i => (int)i);
            return encoder.Decode(generated.TakeWhile(id => !settings.StopTokenIds!.Contains(id)));
        });
    }

    /// <summary>Mean loss per response token of <paramref name="response"/> after <paramref name="prompt"/> (NaN when nothing is scored).</summary>
    public double Score(string prompt, string response)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(response);
        lock (gate)
            return Loss(encoder.PromptResponse(prompt, response));
    }

    /// <summary>
    /// The log-probability of <paramref name="response"/> following <paramref name="prompt"/>, both formatted as in
    /// training (the response closed by EOS or the end-of-turn marker, which counts as one of its tokens): the sum over
    /// the response's tokens of log p(token | everything before it), or their mean when <paramref name="average"/>.
    /// Computed from the final hidden states with lm_head applied chunk by chunk (no logits kept). Compare two responses
    /// to one prompt for a preference margin. A sequence longer than <see cref="CausalLMModelInfo.MaxContextLength"/>
    /// (or than the model's max_position_embeddings) keeps its start; NaN when no response token fits.
    /// </summary>
    public double LogProbability(string prompt, string response, bool average = false)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(response);
        lock (gate)
            return LogProbabilityLocked(encoder.PromptResponse(prompt, response), average);
    }

    private double LogProbabilityLocked(Training.TokenizedExample example, bool average)
    {
        int length = ScoredLength(example);
        if (length - Math.Max(1, example.PromptLength) <= 0)
            return double.NaN;
        // Shifted targets: position t holds token t + 1 when that token belongs to the response.
        var targets = Enumerable.Range(0, length)
            .Select(t => t + 1 < length && t + 1 >= example.PromptLength ? (long)example.Tokens[t + 1] : -100L).ToArray();
        return InEvalMode(device =>
        {
            var input = new CausalLMInput { InputIds = tensor(example.Tokens.Take(length).Select(i => (long)i).ToArray(), [1, length], device: device) };
            using var logProbs = Model.SequenceLogProbs(input, tensor(targets, [1, length], device: device), average);
            return logProbs.to(ScalarType.Float64).item<double>();
        });
    }

    /// <summary>Mean loss per token of <paramref name="text"/>.</summary>
    public double ScoreText(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        lock (gate)
            return Loss(encoder.Text(text));
    }

    /// <summary>The tokens of <paramref name="example"/> that are scored: its start, within MaxContextLength and the model's positions.</summary>
    private int ScoredLength(Training.TokenizedExample example) =>
        (int)Math.Min(Math.Min(example.Tokens.Length, Info.MaxContextLength), Model.Config.MaxPositionEmbeddings);

    private double Loss(Training.TokenizedExample example)
    {
        int length = ScoredLength(example);
        if (length - Math.Max(1, example.PromptLength) <= 0)
            return double.NaN;
        var labels = example.Tokens.Take(length).Select((id, t) => t >= example.PromptLength ? (long)id : -100L).ToArray();
        return InEvalMode(device =>
        {
            using var output = Model.forward(new CausalLMInput
            {
                InputIds = tensor(example.Tokens.Take(length).Select(i => (long)i).ToArray(), [1, length], device: device),
                Labels = tensor(labels, [1, length], device: device),
            });
            return output.Loss!.to(ScalarType.Float64).item<double>();
        });
    }

    /// <summary>Runs <paramref name="body"/> on the model's device in eval mode without gradients, one caller at a
    /// time (cursors and prediction engines may share the transformer), restoring the model's mode after.</summary>
    private T InEvalMode<T>(Func<Device, T> body)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            using var scope = NewDisposeScope();
            bool wasTraining = Model.training;
            Model.eval();
            try
            {
                using var _ = no_grad();
                return body(Model.LmHeadWeight.device);
            }
            finally
            {
                Model.train(wasTraining);
            }
        }
    }

    /// <summary>The input's columns plus those added: the completion when the input has the prompt column, loss and
    /// perplexity when it has the columns scored (prompt and response, or text).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A column the transformer reads is not text, or the input has none of them (named).</exception>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        CheckInput(inputSchema);
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(inputSchema);
        foreach (var column in OutputColumns(name => inputSchema.GetColumnOrNull(name)?.Type is TextDataViewType))
            builder.AddColumn(column.Name, column.Type);
        return builder.ToSchema();
    }

    /// <inheritdoc/>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        ThrowIfDisposed();
        return new CausalLMDataView(this, input);
    }

    /// <summary>Maps single rows, as <c>mlContext.Model.CreatePredictionEngine</c> needs; the input is checked as in <see cref="GetOutputSchema"/>.</summary>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        ThrowIfDisposed();
        return new CausalLMRowMapper(this, inputSchema);
    }

    /// <summary>
    /// A column the transformer reads by name but that is not text is a mistake to report, not a column to skip; so is an
    /// input with none of them, to which nothing would be added (a prediction engine would then silently leave the
    /// output's fields at their defaults).
    /// </summary>
    private void CheckInput(DataViewSchema inputSchema)
    {
        foreach (var name in ScoredColumns.Prepend(Info.PromptColumnName).Distinct())
            if (inputSchema.GetColumnOrNull(name) is { } column && column.Type is not TextDataViewType)
                throw new ArgumentOutOfRangeException(nameof(inputSchema),
                    $"Input column '{name}' is {column.Type}, but CausalLMTransformer reads it as text (a scalar String column).");
        if (!OutputColumns(name => inputSchema.GetColumnOrNull(name) is not null).Any())
            throw new ArgumentOutOfRangeException(nameof(inputSchema),
                $"The input has none of the columns CausalLMTransformer reads: a text column '{Info.PromptColumnName}' (to generate " +
                $"'{Info.CompletionColumnName}'), or {string.Join(" and ", ScoredColumns.Select(c => $"'{c}'"))} (to score '{Info.LossColumnName}' " +
                $"and '{Info.PerplexityColumnName}'). Columns present: {string.Join(", ", inputSchema.Where(c => !c.IsHidden).Select(c => $"'{c.Name}'"))}.");
    }

    void ICanSaveModel.Save(ModelSaveContext ctx) =>
        throw new NotSupportedException(
            "mlContext.Model.Save cannot store a CausalLMTransformer: ML.NET's model-zip format is internal to ML.NET and cannot " +
            "carry a TorchSharp model. Save it with transformer.Save(folder) and load it with mlContext.Liger().LoadCausalLM(folder) " +
            "(a Hugging Face model folder plus liger_model.json).");

    /// <summary>
    /// Saves the model (config.json, model.safetensors), the tokenizer and liger_model.json into
    /// <paramref name="folder"/>. The folder is written beside its final place and swapped in whole, so an
    /// interrupted save leaves the previous contents.
    /// </summary>
    public void Save(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        lock (gate)
        {
            ThrowIfDisposed();
            AtomicFolder.Write(folder, WriteTo);
        }
    }

    internal void WriteTo(string folder)
    {
        Model.SavePretrained(folder);
        Tokenizer.SavePretrained(folder);
        Info.Save(folder);
    }

    /// <summary>Loads a folder written by <see cref="Save"/> (see <see cref="LigerCatalog.LoadCausalLM"/>).</summary>
    internal static CausalLMTransformer Load(string folder, Device device, LigerKernelOptions? kernels)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"Model folder '{folder}' does not exist.");
        var info = CausalLMModelInfo.Load(folder);
        var tokenizer = CausalLMTokenizer.FromPretrained(folder);
        TokenizerIds.CheckFitsModel(tokenizer, CausalLMConfig.Load(folder), folder);
        var model = CausalLM.FromPretrained(folder, new CausalLMOptions { Kernels = kernels ?? info.Kernels, Device = device });
        return new CausalLMTransformer(model, tokenizer, info);
    }

    /// <summary>The columns Transform adds for an input that has the columns <paramref name="hasText"/> says it has.</summary>
    internal IEnumerable<(string Name, DataViewType Type, OutputKind Kind)> OutputColumns(Func<string, bool> hasText)
    {
        if (hasText(Info.PromptColumnName))
            yield return (Info.CompletionColumnName, TextDataViewType.Instance, OutputKind.Completion);
        if (CanScore(hasText))
        {
            yield return (Info.LossColumnName, NumberDataViewType.Single, OutputKind.Loss);
            yield return (Info.PerplexityColumnName, NumberDataViewType.Single, OutputKind.Perplexity);
        }
    }

    internal bool CanScore(Func<string, bool> hasText) => ScoredColumns.All(hasText);

    /// <summary>The text columns a row's loss is computed from: prompt and response, or text.</summary>
    internal IReadOnlyList<string> ScoredColumns => Info.DataFormat == DataFormat.PromptResponse
        ? [Info.PromptColumnName, Info.ResponseColumnName]
        : [Info.TextColumnName];

    /// <summary>Loss of a row from its texts, by column name.</summary>
    internal double ScoreRow(Func<string, string> text) => Info.DataFormat == DataFormat.PromptResponse
        ? Score(text(Info.PromptColumnName), text(Info.ResponseColumnName))
        : ScoreText(text(Info.TextColumnName));

    /// <summary>
    /// Frees the model's tensors; later calls throw <see cref="ObjectDisposedException"/>. A prediction engine made from
    /// this transformer calls it when disposed, unless made with <c>new PredictionEngineOptions { OwnsTransformer = false }</c>
    /// (ML.NET's default is that the engine owns its transformer). Waits for a call in progress on another thread.
    /// </summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (disposed)
                return;
            disposed = true;
            Model.Dispose();
        }
    }

    /// <summary>TorchSharp's own message names no object; a disposed transformer is most often one a prediction engine owned.</summary>
    private void ThrowIfDisposed()
    {
        if (disposed)
            throw new ObjectDisposedException(nameof(CausalLMTransformer),
                "This CausalLMTransformer is disposed (its model's tensors are freed). A PredictionEngine disposes the transformer it was made " +
                "from when it is disposed itself, unless it was made with new PredictionEngineOptions { OwnsTransformer = false }.");
    }
}

/// <summary>What an added column holds.</summary>
internal enum OutputKind
{
    Completion,
    Loss,
    Perplexity,
}
