using System.Reflection;
using System.Reflection.Emit;
using TorchSharp;
using static TorchSharp.torch;

// Lists the public TorchSharp methods that pass a temporary Scalar or Tensor to native code without keeping it alive,
// as BannedSymbols.txt lines (docs/design.md, "Temporaries TorchSharp does not keep alive"). TorchSharp frees a Scalar or
// Tensor in its finalizer; a temporary made inside a method (`add(t)` is `add(t, 1)`, `x * 0.5` is `x.mul(0.5)`,
// `square()` is `pow(2)`, `AdamW.step` makes six per parameter) is unreachable once its handle is read, so a garbage
// collection during the native call can free it while libtorch reads it. The scan reads each method's IL: a method
// that creates such a temporary and never calls Dispose is hazardous, and so is every method that calls a hazardous
// one. Usage: dotnet run --project build/TorchSharpTemporaries > generated.txt
var assembly = typeof(Scalar).Assembly;
var opCodes = typeof(OpCodes).GetFields().Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => o.Value);
const BindingFlags All = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

// A temporary is made by a conversion from a number (or array) or by Tensor.ToScalar; `eq`, `ge` and `gt` convert `false`
// only to return it for a null argument (never passed to native code), so they are not seeds.
static bool MakesTemporary(MethodBase m) =>
    (m.DeclaringType == typeof(Scalar) && m.Name == "op_Implicit")
    || (m.DeclaringType?.Name == "ScalarExtensionMethods" && m.Name == "ToScalar")
    || (m.DeclaringType == typeof(Tensor) && m.Name is "op_Implicit" or "ToScalar");
static bool ReturnsOnlyForNull(MethodBase m) => m.DeclaringType == typeof(Tensor) && m.Name is "eq" or "eq_" or "ge" or "ge_" or "gt" or "gt_";

var callers = new Dictionary<MethodBase, HashSet<MethodBase>>();
var seeds = new HashSet<MethodBase>();
Type[] types;
try { types = assembly.GetTypes(); }
catch (ReflectionTypeLoadException e) { types = e.Types.OfType<Type>().ToArray(); }   // types over optional dependencies
foreach (var type in types)
{
    MethodBase[] methods;
    try { methods = [.. type.GetMethods(All), .. type.GetConstructors(All)]; } catch (TypeLoadException) { continue; }
    foreach (var method in methods)
    {
        bool makes = false, disposes = false;
        foreach (var callee in Callees(method))
        {
            if (!callers.TryGetValue(callee, out var set))
                callers[callee] = set = [];
            set.Add(method);
            makes |= MakesTemporary(callee);
            disposes |= callee.Name == "Dispose" && (callee.DeclaringType == typeof(Scalar) || callee.DeclaringType == typeof(IDisposable));
        }
        if (makes && !disposes && !MakesTemporary(method) && method.DeclaringType?.Name != "ScalarExtensionMethods" && !ReturnsOnlyForNull(method))
            seeds.Add(method);
    }
}

var hazardous = new HashSet<MethodBase>(seeds);
var queue = new Queue<MethodBase>(seeds);
while (queue.TryDequeue(out var m))
    foreach (var caller in callers.GetValueOrDefault(m) ?? [])
        if (hazardous.Add(caller))
            queue.Enqueue(caller);

var lines = new SortedSet<string>(StringComparer.Ordinal);
foreach (var m in hazardous.Where(IsPublic))
{
    try { lines.Add(DocumentationId(m)); }
    catch (Exception e) when (e is TypeLoadException or FileNotFoundException) { }   // signatures over optional dependencies
}
foreach (var line in lines)
    Console.WriteLine(line);

IEnumerable<MethodBase> Callees(MethodBase method)
{
    byte[]? il;
    try { il = method.GetMethodBody()?.GetILAsByteArray(); } catch (BadImageFormatException) { yield break; }
    if (il is null)
        yield break;
    for (int i = 0; i < il.Length;)
    {
        var op = il[i] == 0xFE ? opCodes[(short)(0xFE00 | il[i + 1])] : opCodes[il[i]];
        i += op.Size;
        if (op.OperandType == OperandType.InlineMethod)
        {
            MethodBase? callee = null;
            try
            {
                callee = method.Module.ResolveMethod(BitConverter.ToInt32(il, i),
                    method.DeclaringType is { IsGenericType: true } t ? t.GetGenericArguments() : null,
                    method.IsGenericMethod ? method.GetGenericArguments() : null);
            }
            catch (Exception e) when (e is ArgumentException or TypeLoadException or FileNotFoundException or MissingMethodException) { }
            if (callee is not null)
                yield return callee;
        }
        i += op.OperandType switch
        {
            OperandType.InlineNone => 0,
            OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
            OperandType.InlineVar => 2,
            OperandType.InlineI8 or OperandType.InlineR => 8,
            OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, i),
            _ => 4,
        };
    }
}

static bool IsPublic(MethodBase m)
{
    for (var t = m.DeclaringType; t is not null; t = t.DeclaringType)
        if (!(t.IsPublic || t.IsNestedPublic))
            return false;
    return m.IsPublic;
}

// The documentation-comment ID that BannedSymbols.txt names a member by (properties by their accessor's property).
static string DocumentationId(MethodBase m)
{
    var owner = TypeId(m.DeclaringType!);
    if (m.IsSpecialName && (m.Name.StartsWith("get_") || m.Name.StartsWith("set_")) && m.GetParameters().Length == (m.Name[0] == 's' ? 1 : 0))
        return $"P:{owner}.{m.Name[4..]}";
    var parameters = m.GetParameters();
    var id = $"M:{owner}.{(m is ConstructorInfo ? "#ctor" : m.Name)}"
        + (m.IsGenericMethod ? $"``{m.GetGenericArguments().Length}" : "")
        + (parameters.Length > 0 ? $"({string.Join(",", parameters.Select(p => TypeId(p.ParameterType)))})" : "");
    return m.Name is "op_Implicit" or "op_Explicit" ? $"{id}~{TypeId(((MethodInfo)m).ReturnType)}" : id;
}

static string TypeId(Type t)
{
    if (t.IsByRef) return TypeId(t.GetElementType()!) + "@";
    if (t.IsArray) return TypeId(t.GetElementType()!) + "[]";
    if (t.IsPointer) return TypeId(t.GetElementType()!) + "*";
    if (t.IsGenericParameter) return (t.DeclaringMethod is null ? "`" : "``") + t.GenericParameterPosition;
    if (!t.IsGenericType) return (t.FullName ?? t.Name).Replace('+', '.');
    var name = t.GetGenericTypeDefinition().FullName!.Replace('+', '.');
    return $"{name[..name.IndexOf('`')]}{{{string.Join(",", t.GetGenericArguments().Select(TypeId))}}}";
}
