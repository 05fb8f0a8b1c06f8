using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Models.Weights;

/// <summary>
/// Copies a weights folder into a module's state-dict tensors: first every header is read and every name, shape
/// and dtype checked (so a bad weights folder leaves the module untouched), then tensors are read one at a time,
/// file by file, so host memory beyond the module stays near one tensor.
/// </summary>
internal static class WeightLoader
{
    private const int CopyBufferBytes = 1 << 20;

    public static WeightLoadResult Load(nn.Module model, string folder, WeightLoadOptions options)
    {
        var ignoredNames = new NamePatterns(options.IgnoredNames, nameof(WeightLoadOptions.IgnoredNames));
        if (options.DType is { } requested && !SafetensorsDType.IsFloatingPoint(requested))
            throw new ArgumentException(
                $"WeightLoadOptions.DType must be a floating-point type (Float16, BFloat16, Float32, Float64), not {requested}.",
                nameof(options));

        var stored = WeightFiles.ReadTensors(folder);
        var moduleTensors = model.state_dict();
        // Found before any dtype conversion, which unties them.
        var sameTensorAs = SameTensor.Group(moduleTensors);

        var ignored = stored.Keys.Where(ignoredNames.Matches).ToList();
        var toLoad = stored.Keys.Where(name => !ignoredNames.Matches(name) && moduleTensors.ContainsKey(name)).ToList();
        var unexpected = stored.Keys.Where(name => !ignoredNames.Matches(name) && !moduleTensors.ContainsKey(name)).ToList();
        var loadedSet = toLoad.ToHashSet(StringComparer.Ordinal);
        var filledByAlias = moduleTensors.Keys
            .Where(name => !loadedSet.Contains(name) && sameTensorAs[name].Any(loadedSet.Contains)).ToList();
        var missing = moduleTensors.Keys.Where(name => !loadedSet.Contains(name) && !filledByAlias.Contains(name)).ToList();

        var mismatches = toLoad
            .Select(name => Mismatch(name, stored[name], moduleTensors[name], options.DType))
            .OfType<string>().ToList();
        if (mismatches.Count > 0 || (options.Strict && (missing.Count > 0 || unexpected.Count > 0)))
            throw new WeightMismatchException(folder,
                options.Strict ? missing : [], options.Strict ? unexpected : [], mismatches);

        if (options.DType is { } dtype && moduleTensors.Values.Any(t => SafetensorsDType.IsFloatingPoint(t.dtype) && t.dtype != dtype))
        {
            model.to(dtype);
            // Conversion replaces the tensors (and unties shared ones), so look them up again.
            moduleTensors = model.state_dict();
        }

        CopyIn(toLoad, stored, moduleTensors, sameTensorAs, loadedSet);
        return new WeightLoadResult([.. toLoad, .. filledByAlias], missing, unexpected, ignored);
    }

    private static string? Mismatch(string name, StoredTensor stored, Tensor target, ScalarType? requested)
    {
        var entry = stored.Entry;
        if (!entry.Shape.SequenceEqual(target.shape))
            return $"'{name}': the module expects shape [{string.Join(", ", target.shape)}], the weights have [{string.Join(", ", entry.Shape)}]";
        if (SafetensorsDType.ToScalarType(entry.DType) is not { } storedType)
            return $"'{name}': stored as {entry.DType}, which cannot be loaded (supported: {SafetensorsDType.Supported})";
        var targetType = requested is { } r && SafetensorsDType.IsFloatingPoint(target.dtype) ? r : target.dtype;
        if (SafetensorsDType.IsFloatingPoint(storedType) && !SafetensorsDType.IsFloatingPoint(targetType))
            return $"'{name}': stored as {entry.DType} (floating point), the module's tensor is {targetType}";
        // Floating-point weights convert between widths as torch does; anything else must be stored as the module
        // holds it: an I32 header over a weight is a wrong header, and converting its integers would hide that.
        if (!SafetensorsDType.IsFloatingPoint(storedType) && storedType != targetType)
            return $"'{name}': the header of '{stored.File.Path}' gives dtype {entry.DType}, the module's tensor is {targetType} (only floating-point types convert into each other)";
        return null;
    }

    private static void CopyIn(
        List<string> toLoad, Dictionary<string, StoredTensor> stored, Dictionary<string, Tensor> moduleTensors,
        Dictionary<string, List<string>> sameTensorAs, HashSet<string> loadedSet)
    {
        using var noGrad = no_grad();
        foreach (var file in toLoad.GroupBy(name => stored[name].File))
        {
            using var stream = new FileStream(file.Key.Path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
            foreach (var name in file.OrderBy(n => stored[n].Entry.Begin))
            {
                var entry = stored[name].Entry;
                stream.Position = file.Key.DataStart + entry.Begin;
                var target = moduleTensors[name];
                ReadInto(stream, entry, target);

                // A tied tensor untied by a dtype conversion gets the same values.
                foreach (var alias in sameTensorAs[name].Where(a => !loadedSet.Contains(a)))
                    if (!SameTensor.Key(moduleTensors[alias]).Equals(SameTensor.Key(target)))
                        moduleTensors[alias].copy_(target);
            }
        }
    }

    private static void ReadInto(Stream stream, SafetensorsEntry entry, Tensor target)
    {
        if (entry.ByteLength == 0)
            return;
        var storedType = SafetensorsDType.ToScalarType(entry.DType)!.Value;
        // Same type and CPU memory laid out as stored: read straight into the module's tensor, no staging copy.
        if (target.device_type == DeviceType.CPU && target.dtype == storedType && target.is_contiguous())
        {
            target.ReadBytesFromStream(stream, CopyBufferBytes);
            return;
        }
        using var staging = empty(entry.Shape, storedType);
        staging.ReadBytesFromStream(stream, CopyBufferBytes);
        target.copy_(staging);
    }
}
