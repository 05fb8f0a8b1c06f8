using System.Collections;
using System.Reflection;
using TorchSharp;

namespace Liger.Kernels.Runtime;

/// <summary>
/// Frees a copy TorchSharp's custom autograd functions keep of every output.
/// </summary>
/// <remarks>
/// TorchSharp 0.107's <c>Function.apply</c> stores <c>torch.empty_like(output)</c> for each output on the
/// graph node, for the life of the node, only so that it can build zero gradients for outputs that
/// receive none ("materialize grads"). For a memory-lean kernel that is a second output-sized buffer
/// held until backward (one per RMSNorm, per layer). Our ops turn materialisation off (their backward
/// handles an undefined gradient itself) and, right after <c>apply</c>, dispose those buffers through
/// reflection on the node's private field. If a future TorchSharp renames the field, <see cref="Supported"/>
/// turns false (a test watches it) and the ops still work, holding the extra buffers.
/// </remarks>
// The one place allowed to reflect on TorchSharp's private fields (BannedSymbols.txt bans Type.GetField with BindingFlags).
#pragma warning disable RS0030
internal static class AutogradOutputCache
{
    private static readonly FieldInfo? NodeField =
        typeof(torch.autograd.AutogradContext).GetField("_node", BindingFlags.Instance | BindingFlags.NonPublic);

    [ThreadStatic] private static torch.autograd.AutogradContext? pending;

    /// <summary>True while the TorchSharp internals this relies on are where we expect them.</summary>
    internal static bool Supported => NodeField is not null;

    /// <summary>
    /// Call at the start of a Liger function's forward, with the function's name and the arguments of its
    /// <c>apply</c>: saves what a failed backward needs to refuse its gradients (<see cref="AutogradFailures"/>).
    /// </summary>
    internal static void Track(torch.autograd.AutogradContext context, string op, object[] vars)
    {
        BackwardLifetime.ForwardStarting();
        context.set_materialize_grads(false);
        context.save_data(AutogradSignature.Key, AutogradSignature.Of(op, vars));
        pending = context;
    }

    /// <summary>Call right after <c>apply</c> returns: disposes the node's cached copies of the outputs.</summary>
    internal static List<torch.Tensor> Release(List<torch.Tensor> outputs)
    {
        var context = pending;
        pending = null;
        LastReleasedCount = 0;
        if (context is null || NodeField?.GetValue(context) is not { } node)
            return outputs;
        var cacheField = node.GetType().GetField("_outputCache", BindingFlags.Instance | BindingFlags.NonPublic);
        if (cacheField?.GetValue(node) is IList cache)
        {
            for (int i = 0; i < cache.Count; i++)
            {
                if (cache[i] is torch.Tensor copy)
                {
                    copy.Dispose();
                    LastReleasedCount++;
                }
                cache[i] = null;
            }
        }
        return outputs;
    }

    /// <summary>How many cached output copies the last <see cref="Release"/> on this thread disposed (for tests).</summary>
    [ThreadStatic] internal static int LastReleasedCount;
}
