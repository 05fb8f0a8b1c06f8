using Liger.Kernels.Runtime;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Liger.Kernels.Modules;
using Liger.Kernels.Ops;
using Microsoft.ML.Liger.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Liger.Benchmarks.Cpu;

/// <summary>
/// Memory of one training step (forward + backward) of a stack of Llama-style decoder layers on the CPU,
/// with and without <see cref="Recompute"/>. Not a BenchmarkDotNet run: BenchmarkDotNet measures
/// managed allocations only, and tensors live in the C heap. Two readings: live C-heap bytes when the
/// forward ends (glibc's mallinfo2, exact for tensor storage), and the peak resident set of the whole step
/// (VmHWM, reset before each step), with glibc told to map every block of 64 KiB or more on its own, so
/// that freed tensors leave the resident set at once and the peak follows live memory.
/// </summary>
internal static partial class RecomputeMemory
{
    internal static int Run(string[] args)
    {
        if (!OperatingSystem.IsLinux())
        {
            Console.Error.WriteLine("recompute-memory reads glibc and /proc statistics: Linux only");
            return 2;
        }
        int layers = Int(args, "--layers", 8), batch = Int(args, "--batch", 2), seq = Int(args, "--seq", 512);
        int hidden = Int(args, "--hidden", 512), heads = Int(args, "--heads", 8), inner = Int(args, "--inner", 1376);
        int repeats = Int(args, "--repeats", 3);
        Mallopt(MmapThreshold, 64 * 1024);
        CpuThreads.Pin();
        manual_seed(0);

        var stack = Enumerable.Range(0, layers).Select(_ => new DecoderLayer(hidden, heads, inner)).ToArray();
        var rotary = new LigerRotaryEmbedding(hidden / heads);
        var x = randn(batch, seq, hidden);
        var (cos, sin) = rotary.forward(x, Ranges.Int64(0, seq).unsqueeze(0).expand(batch, -1).contiguous());
        var weights = randn(batch, seq, hidden);
        Console.WriteLine($"{layers} decoder layers (RMSNorm, q/k/v/o, RoPE, causal SDPA, RMSNorm, SwiGLU MLP), " +
            $"batch {batch}, seq {seq}, hidden {hidden}, heads {heads}, intermediate {inner}, fp32, {get_num_threads()} threads");
        Console.WriteLine($"parameters: {stack.Sum(l => l.parameters().Sum(p => p.numel())) * 4 / 1048576.0:F1} MiB; " +
            $"one (B, T, hidden) tensor: {(long)batch * seq * hidden * 4 / 1048576.0:F1} MiB");
        Console.WriteLine("Each step starts with no gradients (zero_grad sets them to none), so every peak includes the parameters' gradients.");
        Console.WriteLine("| mode | live after forward (MiB) | peak live, sampled (MiB) | peak RSS of the step (MiB) | step time (ms) |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: |");

        foreach (bool checkpoint in new[] { false, true, false, true }.Take(2 * repeats))
        {
            foreach (var layer in stack)
                layer.zero_grad();
            GC.Collect();
            GC.WaitForPendingFinalizers();
            long rssBefore = Status("VmRSS:");
            File.WriteAllText("/proc/self/clear_refs", "5"); // resets VmHWM to the current resident set
            long liveBefore = LiveBytes(), liveAfterForward;
            using var sampler = new PeakSampler();
            var clock = Stopwatch.StartNew();
            using (var step = NewDisposeScope())
            {
                var h = x;
                foreach (var layer in stack)
                    h = checkpoint
                        ? Recompute.Apply(layer, xs => [layer.forward(xs[0], xs[1], xs[2])], h, cos, sin)[0]
                        : layer.forward(h, cos, sin);
                liveAfterForward = LiveBytes() - liveBefore;
                (h * weights).mean().backward();
            }
            clock.Stop();
            long peakLive = sampler.Stop() - liveBefore;
            long peakRss = Status("VmHWM:") - rssBefore;
            Console.WriteLine($"| {(checkpoint ? "checkpointed" : "plain")} | {liveAfterForward / 1048576.0:F1} | {peakLive / 1048576.0:F1} | " +
                $"{peakRss / 1048576.0:F1} | {clock.Elapsed.TotalMilliseconds:F0} |");
        }
        return 0;
    }

    /// <summary>A Llama decoder layer of Liger ops, as the model families build it.</summary>
    private sealed class DecoderLayer : nn.Module<Tensor, Tensor, Tensor, Tensor>
    {
#pragma warning disable IDE1006 // Hugging Face state-dict names
        public LigerRMSNorm input_layernorm, post_attention_layernorm;
        public Linear q_proj, k_proj, v_proj, o_proj;
        public LigerSwiGLUMLP mlp;
#pragma warning restore IDE1006
        private readonly long heads, headDim;

        public DecoderLayer(long hidden, long heads, long inner) : base(nameof(DecoderLayer))
        {
            (this.heads, headDim) = (heads, hidden / heads);
            input_layernorm = new LigerRMSNorm(hidden);
            post_attention_layernorm = new LigerRMSNorm(hidden);
            q_proj = nn.Linear(hidden, hidden, hasBias: false);
            k_proj = nn.Linear(hidden, hidden, hasBias: false);
            v_proj = nn.Linear(hidden, hidden, hasBias: false);
            o_proj = nn.Linear(hidden, hidden, hasBias: false);
            mlp = new LigerSwiGLUMLP(hidden, inner);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x, Tensor cos, Tensor sin)
        {
            using var scope = NewDisposeScope();
            long b = x.shape[0], t = x.shape[1];
            var h = input_layernorm.forward(x);
            Tensor Heads(Linear proj) => proj.forward(h).view(b, t, heads, headDim).transpose(1, 2);
            var (q, k) = LigerRotaryPosEmb.Apply(Heads(q_proj), Heads(k_proj), cos, sin);
            var attention = nn.functional.scaled_dot_product_attention(q, k, Heads(v_proj), is_casual: true);
            var attended = x.Plus(o_proj.forward(attention.transpose(1, 2).reshape(b, t, heads * headDim)));
            return (attended.Plus(mlp.forward(post_attention_layernorm.forward(attended)))).MoveToOuterDisposeScope();
        }
    }

    /// <summary>Polls the live C-heap bytes on a thread of its own and keeps the highest (a spike shorter than a poll can be missed).</summary>
    private sealed class PeakSampler : IDisposable
    {
        private readonly Thread thread;
        private volatile bool running = true;
        private long peak = LiveBytes();

        public PeakSampler()
        {
            thread = new Thread(() =>
            {
                while (running)
                {
                    peak = Math.Max(peak, LiveBytes());
                    Thread.Sleep(TimeSpan.FromMilliseconds(0.2));
                }
            }) { IsBackground = true };
            thread.Start();
        }

        public long Stop()
        {
            running = false;
            thread.Join();
            return Math.Max(peak, LiveBytes());
        }

        public void Dispose()
        {
            if (running)
                Stop();
        }
    }

    private static int Int(string[] args, string name, int fallback)
    {
        int at = Array.IndexOf(args, name);
        return at >= 0 && at + 1 < args.Length ? int.Parse(args[at + 1], CultureInfo.InvariantCulture) : fallback;
    }

    /// <summary>A /proc/self/status field in bytes (the file gives kB).</summary>
    private static long Status(string field)
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(field, StringComparison.Ordinal));
        return long.Parse(line[field.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
    }

    private const int MmapThreshold = -3; // M_MMAP_THRESHOLD in glibc's malloc.h

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int Mallopt(int parameter, int value);

    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo2
    {
        public nuint Arena, OrdBlks, SmBlks, HBlks, HBlkHd, UsmBlks, FsmBlks, UordBlks, FordBlks, KeepCost;
    }

    [LibraryImport("libc", EntryPoint = "mallinfo2")]
    private static partial MallInfo2 Mallinfo2();

    /// <summary>Bytes the C heap has handed out and not taken back: arena blocks in use plus mapped blocks.</summary>
    private static long LiveBytes()
    {
        var info = Mallinfo2();
        return (long)(info.UordBlks + info.HBlkHd);
    }
}
