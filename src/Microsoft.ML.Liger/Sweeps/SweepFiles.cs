using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Microsoft.ML.Liger.Sweeps;

/// <summary>The CSV and JSON forms of a <see cref="SweepResult"/>, both read back to the same trials and parameter types.</summary>
internal static class SweepFiles
{
    private static readonly string[] MetricColumns = ["Status", "EvalLoss", "TokensPerSecond", "PeakMemoryBytes", "DurationSeconds", "Error"];
    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    public static string ToCsv(SweepResult result)
    {
        var text = new StringBuilder();
        text.Append(string.Join(',', new[] { "Id" }.Concat(result.ParameterNames).Concat(MetricColumns))).Append('\n');
        foreach (var t in result.Trials)
        {
            var cells = new List<string> { t.Id.ToString(Invariant) };
            cells.AddRange(result.ParameterNames.Select(n => CsvValue(t.Parameters[n])));
            cells.Add(t.Status.ToString());
            cells.Add(t.EvalLoss is double l ? CsvDouble(l) : "");
            cells.Add(t.TokensPerSecond is double s ? CsvDouble(s) : "");
            cells.Add(t.PeakMemoryBytes?.ToString(Invariant) ?? "");
            cells.Add(CsvDouble(t.Duration.Ticks / (double)TimeSpan.TicksPerSecond));
            cells.Add(t.Error is null ? "" : Quote(t.Error));
            text.Append(string.Join(',', cells)).Append('\n');
        }
        return text.ToString();
    }

    public static SweepResult FromCsv(string csv, string source)
    {
        var records = ParseCsv(csv, source);
        if (records.Count == 0)
            throw new InvalidDataException($"'{source}' is empty: a sweep CSV starts with a header line.");
        var header = records[0].Select(f => f.Text).ToArray();
        if (header.Length < 1 + MetricColumns.Length || header[0] != "Id" || !header[^MetricColumns.Length..].SequenceEqual(MetricColumns))
            throw new InvalidDataException(
                $"'{source}': the header must be Id, the parameters, then {string.Join(", ", MetricColumns)}; it is {string.Join(", ", header)}.");
        var names = header[1..^MetricColumns.Length];
        var rows = records.Skip(1).ToList();
        for (int r = 0; r < rows.Count; r++)
            if (rows[r].Count != header.Length)
                throw new InvalidDataException($"'{source}': record {r + 2} has {rows[r].Count} fields; the header has {header.Length}.");
        var parsers = names.Select((name, i) => ColumnParser(rows.Select(row => row[1 + i]).ToList())).ToArray();
        var trials = rows.Select((row, r) =>
        {
            string Where(int column) => $"'{source}', record {r + 2}, column {header[column]}";
            var parameters = names.Select((name, i) => (name, value: parsers[i](row[1 + i].Text))).ToDictionary(p => p.name, p => p.value);
            int m = 1 + names.Length;
            return new TrialResult(
                ParseInt(row[0].Text, Where(0)),
                parameters,
                Enum.TryParse<TrialStatus>(row[m].Text, out var status) && Enum.IsDefined(status)
                    ? status
                    : throw new InvalidDataException($"{Where(m)}: '{row[m].Text}' is not a trial status ({string.Join(", ", Enum.GetNames<TrialStatus>())})."),
                OptionalDouble(row[m + 1].Text, Where(m + 1)),
                OptionalDouble(row[m + 2].Text, Where(m + 2)),
                row[m + 3].Text.Length == 0 ? null : long.TryParse(row[m + 3].Text, NumberStyles.Integer, Invariant, out long b) ? b
                    : throw new InvalidDataException($"{Where(m + 3)}: '{row[m + 3].Text}' is not an integer."),
                Seconds(OptionalDouble(row[m + 4].Text, Where(m + 4)) ?? throw new InvalidDataException($"{Where(m + 4)}: missing.")),
                row[m + 5].Quoted || row[m + 5].Text.Length > 0 ? row[m + 5].Text : null);
        }).ToList();
        return new SweepResult(names, trials);
    }

    public static string ToJson(SweepResult result)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteStartArray("parameters");
            foreach (var name in result.ParameterNames)
            {
                json.WriteStartObject();
                json.WriteString("name", name);
                json.WriteString("type", result.Trials.Count > 0 ? TypeName(result.Trials[0].Parameters[name]) : "unknown");
                json.WriteEndObject();
            }
            json.WriteEndArray();
            if (result.BestTrial is { } best)
                json.WriteNumber("bestTrialId", best.Id);
            else
                json.WriteNull("bestTrialId");
            json.WriteStartArray("trials");
            foreach (var t in result.Trials)
            {
                json.WriteStartObject();
                json.WriteNumber("id", t.Id);
                json.WriteStartObject("parameters");
                foreach (var name in result.ParameterNames)
                {
                    switch (t.Parameters[name])
                    {
                        case int i: json.WriteNumber(name, i); break;
                        case double d: json.WriteNumber(name, d); break;
                        case bool b: json.WriteBoolean(name, b); break;
                        case var other: json.WriteString(name, other.ToString()); break;
                    }
                }
                json.WriteEndObject();
                json.WriteString("status", t.Status.ToString());
                WriteDouble(json, "evalLoss", t.EvalLoss);
                WriteDouble(json, "tokensPerSecond", t.TokensPerSecond);
                if (t.PeakMemoryBytes is long bytes)
                    json.WriteNumber("peakMemoryBytes", bytes);
                else
                    json.WriteNull("peakMemoryBytes");
                json.WriteNumber("durationSeconds", t.Duration.Ticks / (double)TimeSpan.TicksPerSecond);
                json.WriteString("error", t.Error);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    public static SweepResult FromJson(string text, string source)
    {
        try
        {
            using var document = JsonDocument.Parse(text);
            var root = document.RootElement;
            var types = Field(root, "parameters", source).EnumerateArray()
                .Select(p => (Name: Field(p, "name", source).GetString()!, Type: Field(p, "type", source).GetString()!)).ToList();
            var trials = Field(root, "trials", source).EnumerateArray().Select(t =>
            {
                int id = Field(t, "id", source).GetInt32();
                var values = Field(t, "parameters", source);
                var parameters = types.ToDictionary(p => p.Name, p => ReadValue(Field(values, p.Name, $"{source}, trial {id}"), p.Type, $"{source}, trial {id}, {p.Name}"));
                string statusText = Field(t, "status", source).GetString() ?? "";
                if (!Enum.TryParse<TrialStatus>(statusText, out var status) || !Enum.IsDefined(status))
                    throw new InvalidDataException($"'{source}', trial {id}: '{statusText}' is not a trial status.");
                var peak = Field(t, "peakMemoryBytes", source);
                return new TrialResult(id, parameters, status,
                    ReadDouble(Field(t, "evalLoss", source)),
                    ReadDouble(Field(t, "tokensPerSecond", source)),
                    peak.ValueKind == JsonValueKind.Null ? null : peak.GetInt64(),
                    Seconds(Field(t, "durationSeconds", source).GetDouble()),
                    Field(t, "error", source).GetString());
            }).ToList();
            return new SweepResult(types.Select(p => p.Name).ToList(), trials);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"'{source}' is not a sweep result written by SweepResult.SaveJson: {e.Message}", e);
        }
    }

    // Text always quoted: a quoted field reads back as text even when it looks like a number.
    private static string CsvValue(object value) => value switch
    {
        double d => CsvDouble(d),
        string s => Quote(s),
        _ => SearchDimension.Format(value),
    };

    // A double always shows it is one ("3.0", not "3"), so its column does not read back as integers.
    private static string CsvDouble(double value)
    {
        string text = value.ToString("R", Invariant);
        return text.AsSpan().IndexOfAny(".EeNI") >= 0 ? text : text + ".0";
    }

    private static string Quote(string text) => "\"" + text.Replace("\"", "\"\"") + "\"";

    /// <summary>Fields of each record (RFC 4180: quotes around fields, doubled inside, line breaks allowed inside), with whether each was quoted.</summary>
    private static List<List<(string Text, bool Quoted)>> ParseCsv(string csv, string source)
    {
        var records = new List<List<(string, bool)>>();
        var record = new List<(string, bool)>();
        var field = new StringBuilder();
        bool quoted = false, inQuotes = false;
        void EndField()
        {
            record.Add((field.ToString(), quoted));
            field.Clear();
            quoted = false;
        }
        for (int i = 0; i < csv.Length; i++)
        {
            char c = csv[i];
            if (inQuotes)
            {
                if (c != '"')
                    field.Append(c);
                else if (i + 1 < csv.Length && csv[i + 1] == '"')
                    field.Append(csv[++i]);
                else
                    inQuotes = false;
            }
            else if (c == ',')
                EndField();
            else if (c == '\n')
            {
                EndField();
                records.Add(record);
                record = [];
            }
            else if (c == '\r')
                continue;
            else if (c == '"' && field.Length == 0 && !quoted)
                inQuotes = quoted = true;
            else
                field.Append(c);
        }
        if (inQuotes)
            throw new InvalidDataException($"'{source}' ends inside a quoted field.");
        if (field.Length > 0 || quoted || record.Count > 0)
        {
            EndField();
            records.Add(record);
        }
        return records;
    }

    /// <summary>How to read one parameter column: text if any field was quoted, else bool, int or double if every field is one.</summary>
    private static Func<string, object> ColumnParser(List<(string Text, bool Quoted)> column)
    {
        if (column.Any(f => f.Quoted))
            return text => text;
        if (column.All(f => f.Text is "true" or "false"))
            return text => text == "true";
        if (column.All(f => int.TryParse(f.Text, NumberStyles.Integer, Invariant, out _)))
            return text => int.Parse(text, NumberStyles.Integer, Invariant);
        if (column.All(f => double.TryParse(f.Text, NumberStyles.Float, Invariant, out _)))
            return text => double.Parse(text, NumberStyles.Float, Invariant);
        return text => text;
    }

    private static int ParseInt(string text, string where) =>
        int.TryParse(text, NumberStyles.Integer, Invariant, out int value) ? value : throw new InvalidDataException($"{where}: '{text}' is not an integer.");

    private static double? OptionalDouble(string text, string where) =>
        text.Length == 0 ? null
        : double.TryParse(text, NumberStyles.Float, Invariant, out double value) ? value
        : throw new InvalidDataException($"{where}: '{text}' is not a number.");

    private static TimeSpan Seconds(double seconds) => TimeSpan.FromTicks((long)Math.Round(seconds * TimeSpan.TicksPerSecond));

    private static string TypeName(object value) => value switch
    {
        int => "int",
        double => "double",
        bool => "bool",
        _ => "string",
    };

    private static object ReadValue(JsonElement element, string type, string where) => type switch
    {
        "int" => element.GetInt32(),
        "double" => element.GetDouble(),
        "bool" => element.GetBoolean(),
        "string" => element.GetString() ?? throw new InvalidDataException($"'{where}' is null."),
        _ => throw new InvalidDataException($"'{where}': unknown parameter type '{type}' (int, double, bool or string)."),
    };

    // JSON has no NaN or infinities: those are written as strings (a diverged trial's loss is NaN).
    private static void WriteDouble(Utf8JsonWriter json, string name, double? value)
    {
        if (value is not double d)
            json.WriteNull(name);
        else if (double.IsFinite(d))
            json.WriteNumber(name, d);
        else
            json.WriteString(name, d.ToString("R", Invariant));
    }

    private static double? ReadDouble(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Null => null,
        JsonValueKind.String => double.Parse(element.GetString()!, NumberStyles.Float, Invariant),
        _ => element.GetDouble(),
    };

    private static JsonElement Field(JsonElement element, string name, string where) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value)
            ? value
            : throw new InvalidDataException($"'{where}': the field '{name}' is missing.");
}
