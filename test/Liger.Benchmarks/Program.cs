// Liger benchmark app.
//   dotnet run -c Release --project test/Liger.Benchmarks -- cpu [BenchmarkDotNet args]   CPU: Liger's TorchSharp path vs eager
//   Liger.Benchmarks.dll gpu [--out DIR] [--only NAME] [--iters N]                       CUDA: kernels vs eager TorchSharp, one run
//   Liger.Benchmarks.dll fit [--out DIR] [--arch llama-3.2-1b] [--contexts 1024,2048] [--batch 4] ...  CUDA: CausalLMTrainer, Liger vs eager, one run
//   Liger.Benchmarks.dll prefs [--out DIR] [--small] [--batch 16] [--seq 1024] ...       preference losses, Liger vs eager: check, time, memory
//   Liger.Benchmarks.dll sweep [--out DIR] [--small] [--contexts 2048,4096] [--checkpointing on|off|both] ...  the sweep API: largest context that fits, Liger vs eager
//   Liger.Benchmarks.dll recompute-memory [--layers 8] [--batch 2] [--seq 512] ...      CPU memory of a step, with and without checkpointing
using BenchmarkDotNet.Running;
using Liger.Benchmarks.Cpu;
using Liger.Benchmarks.Gpu;

string mode = args.Length > 0 ? args[0] : "help";
switch (mode)
{
    case "cpu":
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args[1..]);
        return 0;
    case "ptx":
        return PtxDump.Run(args[1..]);
    case "gpu":
        return GpuBenchmark.Run(args[1..]);
    case "fit":
        return FitBenchmark.Run(args[1..]);
    case "prefs":
        return PreferenceBenchmark.Run(args[1..]);
    case "sweep":
        return SweepBenchmark.Run(args[1..]);
    case "recompute-memory":
        return RecomputeMemory.Run(args[1..]);
    default:
        Console.WriteLine("usage: Liger.Benchmarks cpu [BenchmarkDotNet args] | gpu [--out DIR] [--only NAME] [--iters N] | fit [--out DIR] [--arch NAME] [--device cuda|cpu] [--dtype bf16|fp32] [--batch N] [--contexts N,N] [--warmup N] [--steps N] [--seed N] | prefs [--out DIR] [--device cuda|cpu] [--dtype bf16|fp32] [--small] [--batch ROWS] [--seq N] [--hidden N] [--vocab N] [--iters N] [--warmup N] [--only NAME] [--seed N] [--no-check] [--check-only] | sweep [--out DIR] [--small] [--arch NAME] [--device cuda|cpu] [--contexts N,N] [--batch N] [--steps N] [--checkpointing on|off|both] [--seconds N] [--seed N] | recompute-memory [--layers N] [--batch N] [--seq N] [--hidden N] [--heads N] [--inner N] [--repeats N]");
        return mode == "help" ? 0 : 2;
}

public partial class Program;
