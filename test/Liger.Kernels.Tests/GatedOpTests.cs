using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// The tests every gated op c = f(a) · b shares (SwiGLU, GeGLU): its function, host launch code and MLP
/// module against float64 eager references, on every path. A subclass names the op's pieces and may widen
/// how closely results must match (GeGLU's tanh form cancels where SwiGLU's silu does not).
/// </summary>
public abstract class GatedOpTests
{
    /// <summary>The names the op reports through <see cref="LigerRuntime.OpExecuted"/>.</summary>
    protected abstract string ForwardOp { get; }

    /// <inheritdoc cref="ForwardOp"/>
    protected abstract string BackwardOp { get; }

    /// <summary>The op's autograd function.</summary>
    protected abstract Tensor Apply(Tensor a, Tensor b, bool inPlaceBackward = false);

    /// <summary>The op's host functions, called without autograd.</summary>
    protected abstract Tensor HostForward(Tensor a, Tensor b);

    /// <inheritdoc cref="HostForward"/>
    protected abstract (Tensor Da, Tensor Db) HostBackward(Tensor dc, Tensor a, Tensor b);

    /// <summary>c, da and db in float64.</summary>
    protected abstract GatedReference Reference(Tensor a, Tensor b, Tensor dc);

    /// <summary>f of a float64 tensor, differentiable (the MLP reference).</summary>
    protected abstract Tensor Activation64(Tensor a64);

    /// <summary>The op's MLP module, with submodules gate_proj, up_proj and down_proj.</summary>
    protected abstract nn.Module<Tensor, Tensor> Mlp(long hidden, long intermediate, bool bias = false, ScalarType dtype = ScalarType.Float32, Device? device = null);

    /// <summary>Asserts the results (c may be null: not checked) against the float64 reference.</summary>
    protected virtual void AssertMatchesReference(Tensor? c, Tensor da, Tensor db, Tensor a, Tensor b, Tensor dc, ScalarType dtype, string context)
    {
        var reference = Reference(a, b, dc);
        var tolerance = Tolerance.VersusFloat64(dtype);
        if (c is not null)
            TensorAssert.Close(c, reference.C, tolerance, "c", context);
        TensorAssert.Close(da, reference.Da, tolerance, "da", context);
        TensorAssert.Close(db, reference.Db, tolerance, "db", context);
    }

    /// <summary>The elements of a where the kernels must round as eager torch does (null: all of them).</summary>
    protected virtual Tensor? RoundsLikeTorch(Tensor a) => null;

    /// <summary>Rows: path, shape, dtype.</summary>
    public static IEnumerable<object[]> ReferenceCases()
    {
        foreach (var path in TestPaths.Names)
        {
            // 3x40 and 4x2048 hold whole 8-element chunks (the vectorised kernels); the others are scalar.
            string[] shapes = TestPaths.IsSlow(path)
                ? ["1x1", "3x5", "3x40", "7x4097", "2x3x33", "4x2048"]
                : ["1x1", "3x5", "3x40", "7x4097", "2x3x33", "4x2048", "2x128x1376"];
            foreach (var shape in shapes)
                foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
                    yield return [path, shape, dtype];
        }
    }

    /// <summary>Rows: path, dtype, shape (scalar and vectorised kernels).</summary>
    public static IEnumerable<object[]> InPlaceCases() =>
        from path in TestPaths.Names
        from dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 }
        from shape in new[] { "3x37", "3x40" }
        select new object[] { path, dtype, shape };

    /// <summary>Rows: path, dtype.</summary>
    public static IEnumerable<object[]> PathAndDtype() =>
        from path in TestPaths.Names
        from dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 }
        select new object[] { path, dtype };

    [TestMethod]
    [DynamicData(nameof(ReferenceCases), typeof(GatedOpTests))]
    public void MatchesFloat64Reference(string path, string shape, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var (a, b, dc) = RandomInputs(Inputs.Shape(shape), dtype);
        string context = Inputs.Describe(seed, path, shape, dtype);

        var run = Run(path, a, b, dc);
        AssertMatchesReference(run.C, run.Da, run.Db, a, b, dc, dtype, context);
        Assert.AreEqual(dtype, run.C.dtype, $"c dtype. {context}");

        if (path != TestPaths.Torch)
        {
            var torchRun = Run(TestPaths.Torch, a, b, dc);
            var same = Tolerance.SameRounding(dtype);
            var where = RoundsLikeTorch(a);
            Tensor Compared(Tensor t) => where is null ? t : t.masked_select(where);
            TensorAssert.Close(Compared(run.C), Compared(torchRun.C), same, "c vs torch path", context);
            TensorAssert.Close(Compared(run.Da), Compared(torchRun.Da), same, "da vs torch path", context);
            TensorAssert.Close(Compared(run.Db), Compared(torchRun.Db), same, "db vs torch path", context);
        }
    }

    [TestMethod]
    [DynamicData(nameof(InPlaceCases), typeof(GatedOpTests))]
    public void InPlaceBackward_WritesDaAndDbIntoIntermediates(string path, ScalarType dtype, string shape)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var (a, b, dc) = RandomInputs(Inputs.Shape(shape), dtype);
        string context = Inputs.Describe(seed, path, shape, dtype, "inPlaceBackward");

        using var p = PathScope.Enter(path);
        var a0 = p.On(a).requires_grad_(true);
        var b0 = p.On(b).requires_grad_(true);
        // non-leaf intermediates, as gate_proj / up_proj outputs are in the MLP
        var gate = a0.clone();
        var up = b0.clone();
        var c = Apply(gate, up, inPlaceBackward: true);
        c.backward([p.On(dc)]);
        p.AssertRan(ForwardOp, BackwardOp);

        AssertMatchesReference(null, a0.grad!, b0.grad!, a, b, dc, dtype, context);
        TensorAssert.BitwiseEqual(a0.grad!, gate, "a's buffer after the in-place backward (holds da)", context);
        TensorAssert.BitwiseEqual(b0.grad!, up, "b's buffer after the in-place backward (holds db)", context);
    }

    [TestMethod]
    [DynamicData(nameof(InPlaceCases), typeof(GatedOpTests))]
    public void OutOfPlaceBackward_LeavesInputsUntouched(string path, ScalarType dtype, string shape)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var (a, b, dc) = RandomInputs(Inputs.Shape(shape), dtype);
        string context = Inputs.Describe(seed, path, shape, dtype);

        using var p = PathScope.Enter(path);
        var a0 = p.On(a).requires_grad_(true);
        var b0 = p.On(b).requires_grad_(true);
        var upstream = p.On(dc);
        var c = Apply(a0, b0);
        c.backward([upstream]);
        p.AssertRan(ForwardOp, BackwardOp);

        TensorAssert.BitwiseEqual(a, a0, "a after backward", context);
        TensorAssert.BitwiseEqual(b, b0, "b after backward", context);
        TensorAssert.BitwiseEqual(dc, upstream, "upstream gradient after backward", context);
        AssertMatchesReference(null, a0.grad!, b0.grad!, a, b, dc, dtype, context);
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void EmptyInput_GivesEmptyOutputAndGradients(string path)
    {
        using var scope = NewDisposeScope();
        using var p = PathScope.Enter(path);
        var a = empty([0, 5], device: p.Device).requires_grad_(true);
        var b = empty([0, 5], device: p.Device).requires_grad_(true);
        var c = Apply(a, b);
        CollectionAssert.AreEqual(new long[] { 0, 5 }, c.shape);
        c.backward([empty([0, 5], device: p.Device)]);
        p.AssertRan(ForwardOp, BackwardOp);
        CollectionAssert.AreEqual(new long[] { 0, 5 }, a.grad!.shape);
        CollectionAssert.AreEqual(new long[] { 0, 5 }, b.grad!.shape);
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void HostFunctions_MatchTheAutogradFunction(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var (a, b, dc) = RandomInputs([5, 29], ScalarType.BFloat16);
        string context = Inputs.Describe(seed, path, "5x29 bf16");
        using var p = PathScope.Enter(path);
        var c = HostForward(p.On(a), p.On(b));
        var (da, db) = HostBackward(p.On(dc), p.On(a), p.On(b));
        p.AssertRan(ForwardOp, BackwardOp);
        var run = Run(path, a, b, dc);
        TensorAssert.BitwiseEqual(run.C, c, "c (host vs autograd)", context);
        TensorAssert.BitwiseEqual(run.Da, da, "da (host vs autograd)", context);
        TensorAssert.BitwiseEqual(run.Db, db, "db (host vs autograd)", context);
    }

    // ---- the MLP module ----

    [TestMethod]
    public void Mlp_HasHuggingFaceSubmoduleAndStateDictNames()
    {
        using var scope = NewDisposeScope();
        using var mlp = Mlp(16, 40);
        CollectionAssert.AreEquivalent(new[] { "gate_proj", "up_proj", "down_proj" },
            mlp.named_children().Select(c => c.name).ToArray());
        var state = mlp.state_dict();
        CollectionAssert.AreEquivalent(new[] { "gate_proj.weight", "up_proj.weight", "down_proj.weight" }, state.Keys.ToArray());
        CollectionAssert.AreEqual(new long[] { 40, 16 }, state["gate_proj.weight"].shape);
        CollectionAssert.AreEqual(new long[] { 40, 16 }, state["up_proj.weight"].shape);
        CollectionAssert.AreEqual(new long[] { 16, 40 }, state["down_proj.weight"].shape);

        using var withBias = Mlp(16, 40, bias: true, dtype: ScalarType.BFloat16);
        CollectionAssert.AreEquivalent(
            new[] { "gate_proj.weight", "gate_proj.bias", "up_proj.weight", "up_proj.bias", "down_proj.weight", "down_proj.bias" },
            withBias.state_dict().Keys.ToArray());
        Assert.IsTrue(withBias.parameters().All(t => t.dtype == ScalarType.BFloat16), "parameters take the requested dtype");
    }

    [TestMethod]
    [DynamicData(nameof(PathAndDtype), typeof(GatedOpTests))]
    public void Mlp_ForwardAndBackward_MatchEagerMlpWithSameWeights(string path, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        const long hidden = 24, intermediate = 56;
        foreach (bool bias in new[] { false, true })
        {
            string context = Inputs.Describe(seed, path, dtype, $"bias {bias}", $"{hidden}->{intermediate}");
            using var p = PathScope.Enter(path);
            using var mlp = Mlp(hidden, intermediate, bias, dtype, p.Device);
            var x = Inputs.Randn([2, 3, hidden], dtype);
            var dy = Inputs.Randn([2, 3, hidden], dtype);
            var xd = p.On(x).requires_grad_(true);
            var y = mlp.forward(xd);
            y.backward([p.On(dy)]);
            p.AssertRan(ForwardOp, BackwardOp);

            // eager float64 MLP with the same weights
            var named = mlp.named_parameters().ToDictionary(n => n.name, n => n.parameter);
            var weights64 = named.ToDictionary(n => n.Key, n => n.Value.detach().cpu().to(ScalarType.Float64).requires_grad_(true));
            var x64 = x.to(ScalarType.Float64).requires_grad_(true);
            var dy64 = dy.to(ScalarType.Float64);
            Tensor Linear(string name, Tensor input) =>
                nn.functional.linear(input, weights64[name + ".weight"], bias ? weights64[name + ".bias"] : null);
            var gate = Linear("gate_proj", x64);
            var up = Linear("up_proj", x64);
            gate.retain_grad();
            up.retain_grad();
            var h = Activation64(gate) * up;
            var y64 = Linear("down_proj", h);
            y64.backward([dy64]);

            // Σ|terms| of each matrix product, for the elementwise bound (a low-precision product that sums
            // to near zero carries an error the size of its terms)
            var (wg, wu, wd) = (weights64["gate_proj.weight"].detach().abs(), weights64["up_proj.weight"].detach().abs(),
                weights64["down_proj.weight"].detach().abs());
            var (dGate, dUp) = (gate.grad!.abs().view(-1, intermediate), up.grad!.abs().view(-1, intermediate));
            var (xAbs, hAbs, dyAbs) = (x64.detach().abs().view(-1, hidden), h.detach().abs().view(-1, intermediate),
                dy64.abs().view(-1, hidden));
            var terms = new Dictionary<string, Tensor>
            {
                ["gate_proj.weight"] = dGate.t().matmul(xAbs),
                ["up_proj.weight"] = dUp.t().matmul(xAbs),
                ["down_proj.weight"] = dyAbs.t().matmul(hAbs),
                ["gate_proj.bias"] = dGate.sum([0L]),
                ["up_proj.bias"] = dUp.sum([0L]),
                ["down_proj.bias"] = dyAbs.sum([0L]),
            };
            var yTerms = hAbs.matmul(wd.t()).view(y64.shape);
            var dxTerms = (dGate.matmul(wg).Plus(dUp.matmul(wu))).view(x64.shape);

            var tolerance = Tolerance.VersusFloat64(dtype);
            TensorAssert.Close(y, y64, tolerance, "MLP output", context, termMagnitude: yTerms);
            TensorAssert.Close(xd.grad!, x64.grad!, tolerance, "MLP input gradient", context, termMagnitude: dxTerms);
            Assert.HasCount(bias ? 6 : 3, named, $"parameters. {context}");
            foreach (var (name, parameter) in named)
                TensorAssert.Close(parameter.grad!, weights64[name].grad!, tolerance, $"gradient of {name}", context,
                    termMagnitude: terms[name]);
        }
    }

    // ---- bad inputs ----

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void BadInputs_ThrowArgumentExceptionsNamingTheArgument(string path)
    {
        using var scope = NewDisposeScope();
        using var p = PathScope.Enter(path);
        var device = p.Device;
        var a = randn(4, 6, device: device);
        var b = randn(4, 6, device: device);

        RmsNormTests.ExpectArgument<ArgumentException>("b", () => Apply(a, randn(4, 7, device: device)), "b of another shape");
        RmsNormTests.ExpectArgument<ArgumentException>("b", () => Apply(a, randn(24, device: device)), "b with a's element count, another shape");
        RmsNormTests.ExpectArgument<ArgumentException>("a", () => Apply(a.to(ScalarType.Int64), b.to(ScalarType.Int64)), "int64 a");
        RmsNormTests.ExpectArgument<ArgumentException>("a", () => Apply(a.to(ScalarType.Float64), b.to(ScalarType.Float64)), "float64 a");
        RmsNormTests.ExpectArgument<ArgumentException>("b", () => Apply(a, b.to(ScalarType.BFloat16)), "bf16 b for fp32 a");
        RmsNormTests.ExpectArgument<ArgumentException>("a", () => Apply(randn(6, 4, device: device).t(), b), "transposed a");
        RmsNormTests.ExpectArgument<ArgumentException>("b", () => Apply(a, randn(6, 4, device: device).t()), "transposed b");
        RmsNormTests.ExpectArgument<ArgumentNullException>("a", () => Apply(null!, b), "null a");
        RmsNormTests.ExpectArgument<ArgumentNullException>("b", () => Apply(a, null!), "null b");
        if (path == TestPaths.Cuda)
            RmsNormTests.ExpectArgument<ArgumentException>("b", () => Apply(a, b.cpu()), "b on the CPU, a on CUDA");
        Assert.IsEmpty(p.Events, "no op may run on rejected arguments");
    }

    // ---- helpers ----

    internal sealed record Result(Tensor C, Tensor Da, Tensor Db);

    /// <summary>a = 3·randn (the activation's curved region and both tails), b = 2·randn, dc = randn.</summary>
    internal static (Tensor A, Tensor B, Tensor Dc) RandomInputs(long[] shape, ScalarType dtype) =>
        (Inputs.Randn(shape, dtype, 3.0), Inputs.Randn(shape, dtype, 2.0), Inputs.Randn(shape, dtype));

    /// <summary>Forward and backward of the op's function on <paramref name="path"/>; results on the CPU.</summary>
    internal Result Run(string path, Tensor a, Tensor b, Tensor dc)
    {
        using var p = PathScope.Enter(path);
        var ad = p.On(a).requires_grad_(true);
        var bd = p.On(b).requires_grad_(true);
        var c = Apply(ad, bd);
        c.backward([p.On(dc)]);
        p.AssertRan(ForwardOp, BackwardOp);
        return new Result(c.detach().cpu(), ad.grad!.cpu(), bd.grad!.cpu());
    }
}
