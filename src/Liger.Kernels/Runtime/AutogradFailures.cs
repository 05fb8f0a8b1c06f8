using System.Reflection;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Runtime;

/// <summary>
/// What a Liger autograd node's forward received, saved on its context: its name and, for each argument of
/// <c>apply</c>, the shape and dtype of a tensor (null for anything else). A failed backward needs it to hand
/// libtorch a gradient list of the shape TorchSharp checks, with a refused gradient at every tensor input.
/// </summary>
internal sealed record AutogradSignature(string Op, (long[] Shape, ScalarType Dtype)?[] Arguments)
{
    internal const string Key = "liger.signature";

    /// <summary>TorchSharp's rule (Node.ComputeVariableInput): a live tensor argument is an input of the node.</summary>
    internal static AutogradSignature Of(string op, object[] vars) =>
        new(op, vars.Select(v => v is Tensor t && !t.IsInvalid ? (t.shape, t.dtype) : ((long[], ScalarType)?)null).ToArray());
}

/// <summary>
/// Failure in a custom backward, turned from a process abort into an exception the caller of <c>backward()</c>
/// can catch.
/// </summary>
/// <remarks>
/// <para>TorchSharp 0.107 calls a custom Function's backward from libtorch's autograd engine through a native
/// callback (<c>CSharpNode::apply</c>); a .NET exception that leaves it cannot cross into native code and ends
/// the process (SIGABRT). Forwards are not at risk: <c>Function.apply</c> calls them from managed code, so their
/// exceptions reach the caller as thrown.</para>
/// <para>So every Liger backward runs inside <see cref="Guard"/>: an exception is caught, recorded, and the node
/// returns refused gradients instead, tensors on the meta device (no data) at every tensor input. libtorch's
/// output validation rejects them ("expected device cpu but got meta"), which fails the whole backward inside
/// libtorch; the engine carries the error to the thread that called <c>backward()</c>, where TorchSharp throws
/// an <see cref="ExternalException"/>. As that exception is thrown, a first-chance handler replaces libtorch's
/// message by the op's name and the recorded cause, and makes the recorded exception its inner exception (it is
/// an <see cref="ExternalException"/> still, the type TorchSharp users catch around <c>backward()</c>).</para>
/// <para>The handler is installed at the first failure and matches only TorchSharp's exception carrying a meta
/// device refusal while a failure is pending, so other exceptions pass untouched. A backward may run on libtorch's
/// device thread (CUDA) while its caller waits: failures are kept process-wide, the one recorded on the catching
/// thread first, otherwise the oldest. <c>torch.autograd.grad</c> cannot be made safe here: TorchSharp 0.107's
/// native <c>THSAutograd_grad</c> catches no libtorch error, so any failed backward under it (ours or libtorch's
/// own) aborts the process; <c>backward()</c> catches them.</para>
/// </remarks>
internal static class AutogradFailures
{
    private sealed record Failure(string Op, Exception Cause, int Thread);

    private static readonly object Gate = new();
    private static readonly List<Failure> Pending = [];
    private static int pendingCount;
    private static int installed;
    [ThreadStatic] private static bool enriching;

    // System.Exception's fields behind Message and InnerException (stable across .NET Core); if a runtime
    // renames them, Supported turns false (a test watches it) and the cause goes to Exception.Data only.
    // The second place allowed private-field reflection (BannedSymbols.txt): on the BCL's Exception, not TorchSharp.
#pragma warning disable RS0030
    private static readonly FieldInfo? MessageField = typeof(Exception).GetField("_message", BindingFlags.Instance | BindingFlags.NonPublic);
    private static readonly FieldInfo? InnerField = typeof(Exception).GetField("_innerException", BindingFlags.Instance | BindingFlags.NonPublic);
#pragma warning restore RS0030

    /// <summary>The key under which a surfaced exception's <see cref="Exception.Data"/> holds the recorded cause.</summary>
    internal const string DataKey = "Liger.BackwardFailure";

    /// <summary>True while the caller's exception can be given the cause's message and inner exception.</summary>
    internal static bool Supported => MessageField is not null && InnerField is not null;

    /// <summary>Failures recorded and not yet surfaced (for tests).</summary>
    internal static int PendingCount => Volatile.Read(ref pendingCount);

    /// <summary>
    /// Runs a backward body: returns its gradients, or, if it throws or returns a list TorchSharp would reject
    /// (wrong count, a gradient for a non-tensor argument), refused gradients after recording the cause.
    /// Never throws.
    /// </summary>
    internal static List<Tensor> Guard(autograd.AutogradContext ctx, Func<List<Tensor>> body)
    {
        AutogradSignature? signature = null;
        try
        {
            signature = ctx.get_data(AutogradSignature.Key) as AutogradSignature
                ?? throw new InvalidOperationException("The node's forward saved no signature (AutogradOutputCache.Track was not called).");
            var gradients = body();
            CheckShape(signature, gradients);
            return gradients;
        }
        catch (Exception exception)
        {
            Record(signature?.Op ?? "A Liger backward", exception);
            return Refused(signature);
        }
    }

    /// <summary>Records a backward's failure, to be surfaced where the caller's <c>backward()</c> throws.</summary>
    internal static void Record(string op, Exception cause)
    {
        if (Interlocked.Exchange(ref installed, 1) == 0)
            AppDomain.CurrentDomain.FirstChanceException += OnFirstChance;
        lock (Gate)
        {
            Pending.Add(new Failure(op, cause, Environment.CurrentManagedThreadId));
            // A failure whose refusal never reached a caller (no valid edge: libtorch ignored it) must not
            // stay forever to be pinned on a later one: keep the newest few.
            if (Pending.Count > 16)
                Pending.RemoveAt(0);
            Volatile.Write(ref pendingCount, Pending.Count);
        }
    }

    /// <summary>Gradients libtorch refuses: a meta-device tensor at every tensor argument, null elsewhere.</summary>
    private static List<Tensor> Refused(AutogradSignature? signature)
    {
        var gradients = new List<Tensor>();
        if (signature is null)
            return gradients; // unreachable for a tracked node; TorchSharp then reports the count mismatch
        foreach (var argument in signature.Arguments)
        {
            Tensor? refused = null;
            if (argument is { } a)
            {
                try
                {
                    // The meta device allocates nothing; the tensor's shape and dtype pass libtorch's first checks.
                    refused = empty(a.Shape, dtype: a.Dtype, device: META);
                }
                catch (Exception)
                {
                    // No refusal at this input; another input's may still fail the backward.
                }
            }
            gradients.Add(refused!);
        }
        return gradients;
    }

    /// <summary>Throws where TorchSharp would throw from its native callback (Node.ApplyFunc), naming the op.</summary>
    private static void CheckShape(AutogradSignature signature, List<Tensor> gradients)
    {
        int expected = signature.Arguments.Length;
        if (gradients is null)
            throw new InvalidOperationException($"{signature.Op} returned no gradient list.");
        for (int i = 0; i < gradients.Count; i++)
        {
            bool defined = gradients[i] is { IsInvalid: false };
            if (defined && (i >= expected || signature.Arguments[i] is null))
                throw new InvalidOperationException(
                    $"{signature.Op} returned a gradient at position {i}, which is not a tensor input of its forward.");
        }
        if (gradients.Count < expected)
            throw new InvalidOperationException($"{signature.Op} returned {gradients.Count} gradients for {expected} forward arguments.");
    }

    private static void OnFirstChance(object? sender, FirstChanceExceptionEventArgs args)
    {
        if (Volatile.Read(ref pendingCount) == 0 || enriching)
            return;
        if (args.Exception is not ExternalException external || external.GetType() != typeof(ExternalException)
            || !IsRefusal(external.Message) || external.Data.Contains(DataKey))
            return;
        enriching = true;
        try
        {
            Failure? failure;
            lock (Gate)
            {
                int thread = Environment.CurrentManagedThreadId;
                failure = Pending.FirstOrDefault(f => f.Thread == thread) ?? Pending.FirstOrDefault();
                if (failure is not null)
                    Pending.Remove(failure);
                Volatile.Write(ref pendingCount, Pending.Count);
            }
            if (failure is not null)
                Surface(external, failure);
        }
        catch (Exception)
        {
            // Never fail the throw this handler watches; the exception then keeps libtorch's message.
        }
        finally
        {
            enriching = false;
        }
    }

    /// <summary>
    /// libtorch's words for a refused gradient: "invalid gradient at index i - expected device cpu but got meta"
    /// (validate_outputs), or, for a 0-dim input it first tries to move, "Cannot copy out of meta tensor".
    /// </summary>
    private static bool IsRefusal(string message) =>
        message.Contains("but got meta", StringComparison.Ordinal) || message.Contains("out of meta tensor", StringComparison.Ordinal);

    private static void Surface(ExternalException external, Failure failure)
    {
        // libtorch's messages go on with a native backtrace: its first line says what happened.
        string libtorch = FirstLine(external.Message);
        external.Data[DataKey] = failure.Cause;
        if (!Supported)
            return;
        MessageField!.SetValue(external,
            $"{failure.Op} failed in the backward: {failure.Cause.GetType().FullName}: {FirstLine(failure.Cause.Message)} " +
            $"(the node refused its gradients, so libtorch stopped the backward: {libtorch}). " +
            "Gradients accumulated by this backward are incomplete: zero them before the next step.");
        InnerField!.SetValue(external, failure.Cause);
    }

    private static string FirstLine(string message) => message.Split('\n', 2)[0].Trim();
}
