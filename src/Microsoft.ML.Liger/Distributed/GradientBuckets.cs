using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Distributed;

/// <summary>
/// Sums the trainable parameters' gradients over the ranks after the backward pass, a flat bucket at a time (PyTorch
/// DDP's bucketing: one collective per ~<see cref="DistributedOptions.BucketMegabytes"/> MB instead of one per tensor,
/// and never more than one bucket of extra memory). Buckets hold one dtype and device each, in the parameters' order,
/// which every rank shares. Each bucket also sums one flag per parameter (whether the rank has a gradient for it), so a
/// parameter that no rank's batch reached keeps no gradient, as in a single-process run (the optimizer then skips it)
/// while one that only some ranks reached gets the sum. The flags are read on the host only by a rank that lacks a
/// gradient (an empty share of a short last batch, an expert no row of its share was routed to): otherwise nothing waits.
/// </summary>
internal sealed class GradientBuckets
{
    private readonly Collectives collectives;
    private readonly List<Parameter[]> buckets = [];

    public GradientBuckets(IEnumerable<Parameter> parameters, Collectives collectives, double bucketMegabytes)
    {
        this.collectives = collectives;
        long cap = Math.Max(1, (long)(bucketMegabytes * 1024 * 1024));
        foreach (var group in parameters.GroupBy(p => (p.dtype, p.device.ToString())))
        {
            var bucket = new List<Parameter>();
            long bytes = 0;
            foreach (var p in group)
            {
                long size = p.numel() * p.element_size();
                if (bucket.Count > 0 && bytes + size > cap)
                {
                    buckets.Add([.. bucket]);
                    bucket.Clear();
                    bytes = 0;
                }
                bucket.Add(p);
                bytes += size;
            }
            if (bucket.Count > 0)
                buckets.Add([.. bucket]);
        }
    }

    /// <summary>Buckets (for tests and logs).</summary>
    public int Count => buckets.Count;

    /// <summary>Replaces every gradient with its sum over the ranks (queued on the device's stream: no host synchronisation on a GPU).</summary>
    public void AllReduce()
    {
        foreach (var bucket in buckets)
        {
            using var scope = NewDisposeScope();
            var first = bucket[0];
            var parts = new List<Tensor>(bucket.Length + 1);
            var flags = new float[bucket.Length];
            for (int i = 0; i < bucket.Length; i++)
            {
                var grad = bucket[i].grad;
                flags[i] = grad is null ? 0 : 1;
                parts.Add(grad is null ? zeros(bucket[i].numel(), dtype: first.dtype, device: first.device) : grad.detach().reshape(-1));
            }
            // Made on the device by fills, not copied from the host: a copy from pageable memory would wait for the
            // device's queue (the previous bucket's all-reduce) once per bucket.
            var flagTensor = ones(bucket.Length, dtype: first.dtype, device: first.device);
            for (int i = 0; i < bucket.Length; i++)
                if (flags[i] == 0)
                    flagTensor[i].zero_();
            parts.Add(flagTensor);
            using var flat = cat(parts, 0);
            collectives.AllReduce(flat);
            float[]? reached = null;
            if (flags.Contains(0))
            {
                using var sums = flat.narrow(0, flat.numel() - bucket.Length, bucket.Length).to(ScalarType.Float32).cpu();
                reached = sums.data<float>().ToArray();
            }
            long offset = 0;
            using var _ = no_grad();
            for (int i = 0; i < bucket.Length; i++)
            {
                var p = bucket[i];
                long n = p.numel();
                var sum = flat.narrow(0, offset, n).view(p.shape);
                if (p.grad is { } grad)
                    grad.copy_(sum);
                else if (reached![i] > 0)
                    p.grad = sum.clone();
                offset += n;
            }
        }
    }
}
