using Liger.Kernels.Modules;
using Liger.Kernels.Ops;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>LigerSiLUMulFunction, SwiGluOp and LigerSwiGLUMLP against float64 eager references, on every path (the tests are <see cref="GatedOpTests"/>').</summary>
[TestClass]
public sealed class SwiGluTests : GatedOpTests
{
    protected override string ForwardOp => "silu_mul_forward";
    protected override string BackwardOp => "silu_mul_backward";
    protected override Tensor Apply(Tensor a, Tensor b, bool inPlaceBackward = false) => LigerSiLUMulFunction.Apply(a, b, inPlaceBackward);
    protected override Tensor HostForward(Tensor a, Tensor b) => SwiGluOp.Forward(a, b);
    protected override (Tensor Da, Tensor Db) HostBackward(Tensor dc, Tensor a, Tensor b) => SwiGluOp.Backward(dc, a, b, inPlace: false);
    protected override GatedReference Reference(Tensor a, Tensor b, Tensor dc) => References.SwiGlu(a, b, dc);
    protected override Tensor Activation64(Tensor a64) => nn.functional.silu(a64);

    protected override nn.Module<Tensor, Tensor> Mlp(long hidden, long intermediate, bool bias = false, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        new LigerSwiGLUMLP(hidden, intermediate, bias, dtype, device);
}
