using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Runtime;

/// <summary>
/// Frees the managed tensor handles a TorchSharp custom backward leaves behind, so that GPU memory
/// does not wait for the .NET garbage collector.
/// </summary>
/// <remarks>
/// TorchSharp 0.107 wraps each incoming gradient and each unpacked saved tensor of a custom backward in a
/// new managed <c>Tensor</c> (one libtorch reference each) and never disposes them, nor the gradients the
/// backward returns after libtorch has copied them. Each handle keeps its storage alive until a garbage
/// collection that GPU memory pressure never triggers: FusedLinearCrossEntropy's backward, which returns
/// a lm_head-sized weight gradient, ran the H100 out of memory within 70 steps. Each Liger backward runs
/// in a dispose scope: its temporaries and saved-tensor handles are freed when it returns, and the handles
/// of the incoming and returned gradients (which libtorch reads after the call) are parked and freed at
/// the next Liger backward on the same thread. libtorch runs one device's backward on one thread, so a
/// parked handle is never freed before the call that returned it has finished.
/// </remarks>
internal static class BackwardLifetime
{
    [ThreadStatic] private static List<Tensor>? parked;

    /// <summary>
    /// Runs a backward body; see the class remarks. The body receives the incoming gradients made contiguous
    /// (libtorch hands any layout: stride 0 after sum() or expand, transposed, sliced), so no kernel or CPU path
    /// sees another layout, unless <paramref name="anyLayout"/> says the body reads (and checks) strides itself.
    /// It never throws: a failure is recorded and refused (<see cref="AutogradFailures"/>).
    /// </summary>
    internal static List<Tensor> Run(autograd.AutogradContext ctx, List<Tensor> incoming, Func<List<Tensor>, List<Tensor>> body,
        bool anyLayout = false) =>
        AutogradFailures.Guard(ctx, () =>
        {
            ReleaseParked();
            var park = parked ??= [];
            park.AddRange(incoming.Where(t => t is not null && !t.IsInvalid));
            List<Tensor> gradients;
            using (var scope = NewDisposeScope())
            {
                gradients = body(anyLayout ? incoming : incoming.Select(Contiguous).ToList());
                var returned = gradients.Where(t => t is not null && !t.IsInvalid).ToList();
                scope.Detach(returned);
                park.AddRange(returned);
            }
            return gradients;
        });

    /// <summary>The gradient itself when already contiguous (an in-place backward may then write into it), else a dense copy.</summary>
    private static Tensor Contiguous(Tensor gradient) =>
        gradient is null || gradient.IsInvalid || gradient.is_contiguous() ? gradient! : gradient.contiguous();

    [ThreadStatic] private static List<Tensor>? savedInForward;

    /// <summary>
    /// For a handle given to save_for_backward (which TorchSharp copies after the forward returns): freed
    /// at the next Liger forward on this thread, not at the next garbage collection.
    /// </summary>
    internal static Tensor SavedInForward(Tensor tensor)
    {
        (savedInForward ??= []).Add(tensor);
        return tensor;
    }

    /// <summary>Called at the start of every Liger forward (see <see cref="AutogradOutputCache.Track"/>).</summary>
    internal static void ForwardStarting()
    {
        if (savedInForward is null)
            return;
        foreach (var tensor in savedInForward)
            tensor.Dispose();
        savedInForward.Clear();
    }

    /// <summary>How many handles are parked on this thread (for tests).</summary>
    internal static int ParkedCount => parked?.Count ?? 0;

    private static void ReleaseParked()
    {
        if (parked is null)
            return;
        foreach (var tensor in parked)
            tensor.Dispose();
        parked.Clear();
    }
}
