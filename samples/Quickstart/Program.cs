// Quickstart: Liger's RMSNorm, SwiGLU MLP and fused linear cross-entropy, forward and backward, on whatever device is present.
//   dotnet run --project samples/Quickstart            (CPU: TorchSharp path)
//   dotnet run --project samples/Quickstart -- --emulate   (CPU: the ILGPU kernels on ILGPU's GPU emulator)
using Liger.Kernels.Modules;
using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

if (args.Contains("--emulate"))
    LigerRuntime.CpuExecution = CpuExecution.IlgpuEmulator;
LigerRuntime.OpExecuted += (op, path) => Console.WriteLine($"  ran {op,-20} on {path}");

var device = cuda.is_available() ? CUDA : CPU;
manual_seed(0);
const int batch = 2, seq = 16, hidden = 64, intermediate = 172;
Console.WriteLine($"Liger for .NET quickstart on {device.type}: {LigerRuntime.Describe(zeros(1, device: device))}");

// A pre-norm MLP block, as in a Llama decoder layer: h + mlp(norm(h)).
var norm = new LigerRMSNorm(hidden, eps: 1e-6, device: device);
var mlp = new LigerSwiGLUMLP(hidden, intermediate, device: device);
var h = randn(batch, seq, hidden, device: device, requires_grad: true);

Console.WriteLine("forward:");
var output = h.Plus(mlp.forward(norm.forward(h)));
var loss = output.Squared().mean();
Console.WriteLine($"  loss = {loss.item<float>():F6}");

Console.WriteLine("backward:");
loss.backward();
Console.WriteLine($"  |dL/dh|           = {h.grad!.norm().item<float>():F6}");
Console.WriteLine($"  |dL/dnorm.weight| = {norm.weight.grad!.norm().item<float>():F6}");
Console.WriteLine($"  |dL/dgate_proj|   = {mlp.gate_proj.weight.grad!.norm().item<float>():F6}");

// The same block in eager TorchSharp ops, for comparison.
using (no_grad())
{
    var xf = h.detach();
    var normed = xf * rsqrt(xf.Squared().mean([-1L], keepdim: true).Plus(1e-6)) * norm.weight;
    var eager = xf.Plus(mlp.down_proj.forward(nn.functional.silu(mlp.gate_proj.forward(normed)) * mlp.up_proj.forward(normed)));
    Console.WriteLine($"max |liger - eager| forward = {(output - eager).abs().max().item<float>():E2}");
}

// lm_head and the loss fused: the logits of all tokens are never held at once (here a vocabulary of
// 1000 in chunks of 8 tokens), and the gradients of the hidden states and of lm_head's weight come out.
const int vocab = 1000;
var lmHead = nn.Linear(hidden, vocab, hasBias: false, device: device);
var labels = randint(0, vocab, [batch, seq], device: device);
var flce = new LigerFusedLinearCrossEntropyLoss(new FusedLinearCrossEntropyOptions { ChunkBytes = 8 * vocab * 4 });
var states = randn(batch, seq, hidden, device: device, requires_grad: true);
Console.WriteLine("fused linear cross-entropy forward and backward:");
var ce = flce.forward(states, lmHead.weight!, labels);
ce.backward();
Console.WriteLine($"  loss = {ce.item<float>():F6} (ln {vocab} = {Math.Log(vocab):F6} for a random head)");
Console.WriteLine($"  |dL/dhidden|      = {states.grad!.norm().item<float>():F6}");
Console.WriteLine($"  |dL/dlm_head|     = {lmHead.weight!.grad!.norm().item<float>():F6}");
using (no_grad())
{
    var eager = nn.functional.cross_entropy(lmHead.forward(states).view(-1, vocab), labels.view(-1));
    Console.WriteLine($"max |liger - eager| loss = {(ce - eager).abs().item<float>():E2}");
}
