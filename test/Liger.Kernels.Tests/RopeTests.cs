using System.Runtime.InteropServices;
using Liger.Kernels.Modules;
using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>
/// LigerRotaryPosEmb, RopeOp, RotaryEmbedding and LigerRotaryEmbedding against a float64 eager reference of
/// Hugging Face's apply_rotary_pos_emb, and against the eager formula in the same dtype, on every path.
/// </summary>
[TestClass]
public sealed class RopeTests
{
    private const string Forward = "rope_forward", Backward = "rope_backward";

    private static readonly ScalarType[] Dtypes = [ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16];

    /// <summary>Rows: path, shape "BxHqxHkvxTxD", cos form, dtype.</summary>
    public static IEnumerable<object[]> ReferenceCases()
    {
        foreach (var path in TestPaths.Names)
        {
            // D = 16, 64, 96, 128 have halves of whole 8-element chunks (the vectorised kernel for fp32 and
            // bf16); D = 2, 6, 24 take the scalar kernel. T odd, Hq != Hkv, B > 1 throughout.
            string[] shapes = TestPaths.IsSlow(path)
                ? ["1x1x1x1x2", "2x3x1x5x6", "2x2x2x3x16", "3x2x1x9x24", "1x4x2x7x64"]
                : ["1x1x1x1x2", "2x3x1x5x6", "2x2x2x3x16", "3x2x1x9x24", "1x4x2x7x64", "2x6x2x33x96", "2x8x2x129x128"];
            foreach (var shape in shapes)
                foreach (var cosForm in new[] { CosForm.Batch1, CosForm.BatchB, CosForm.TwoD })
                    foreach (var dtype in Dtypes)
                        yield return [path, shape, cosForm, dtype];
        }
    }

    /// <summary>Rows: path, dtype (float32 and bfloat16).</summary>
    public static IEnumerable<object[]> PathAndDtype() =>
        from path in TestPaths.Names
        from dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 }
        select new object[] { path, dtype };

    /// <summary>Rows: path, dtype, shape, rotary dim R &lt; D.</summary>
    public static IEnumerable<object[]> PartialCases() =>
        from path in TestPaths.Names
        from dtype in Dtypes
        from c in new (string Shape, int Rotary)[] { ("2x2x1x5x10", 4), ("1x3x1x4x80", 32), ("2x1x2x3x7", 6) }
        select new object[] { path, dtype, c.Shape, c.Rotary };

    /// <summary>Rows: path, dtype, in place (forward and backward) or not.</summary>
    public static IEnumerable<object[]> LayoutCases() =>
        from path in TestPaths.Names
        from dtype in Dtypes
        from inPlace in new[] { false, true }
        select new object[] { path, dtype, inPlace };

    /// <summary>The forms of cos and sin Hugging Face produces.</summary>
    public enum CosForm
    {
        /// <summary>(1, T, R): one row per position, shared by the batch.</summary>
        Batch1,
        /// <summary>(B, T, R): positions per sequence.</summary>
        BatchB,
        /// <summary>(T, R).</summary>
        TwoD,
    }

    [TestMethod]
    [DynamicData(nameof(ReferenceCases))]
    public void MatchesFloat64Reference(string path, string shape, CosForm cosForm, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var inputs = RandomInputs(Inputs.Shape(shape), dtype, cosForm);
        string context = Inputs.Describe(seed, path, shape, cosForm, dtype);

        var run = Run(path, inputs);
        AssertMatchesReference(run, inputs, context);
        Assert.AreEqual(dtype, run.QEmbed.dtype, $"q_embed dtype. {context}");
        AssertSameAsEager(path, run, inputs, context);

        if (path != TestPaths.Torch)
        {
            var torchRun = Run(TestPaths.Torch, inputs);
            var same = Tolerance.SameRounding(dtype);
            TensorAssert.Close(run.QEmbed, torchRun.QEmbed, same, "q_embed vs torch path", context);
            TensorAssert.Close(run.KEmbed, torchRun.KEmbed, same, "k_embed vs torch path", context);
            TensorAssert.Close(run.Dq, torchRun.Dq, same, "dq vs torch path", context);
            TensorAssert.Close(run.Dk, torchRun.Dk, same, "dk vs torch path", context);
        }
    }

    [TestMethod]
    [DynamicData(nameof(PartialCases))]
    public void PartialRotary_RotatesTheFirstDimsAndPassesTheRestThrough(string path, ScalarType dtype, string shape, int rotary)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var inputs = RandomInputs(Inputs.Shape(shape), dtype, CosForm.Batch1, rotary);
        foreach (bool inPlace in new[] { false, true })
        {
            string context = Inputs.Describe(seed, path, shape, dtype, $"R={rotary}", $"inPlace {inPlace}");
            var run = Run(path, inputs, inPlace, inPlaceBackward: inPlace);
            AssertMatchesReference(run, inputs, context);
            AssertSameAsEager(path, run, inputs, context);
            long headDim = inputs.Q.shape[3];
            TensorAssert.BitwiseEqual(inputs.Q.narrow(-1, rotary, headDim - rotary), run.QEmbed.narrow(-1, rotary, headDim - rotary),
                "q's pass-through dims", context);
            TensorAssert.BitwiseEqual(inputs.K.narrow(-1, rotary, headDim - rotary), run.KEmbed.narrow(-1, rotary, headDim - rotary),
                "k's pass-through dims", context);
            TensorAssert.BitwiseEqual(inputs.DqEmbed.narrow(-1, rotary, headDim - rotary), run.Dq.narrow(-1, rotary, headDim - rotary),
                "dq's pass-through dims (the upstream gradient)", context);
            TensorAssert.BitwiseEqual(inputs.DkEmbed.narrow(-1, rotary, headDim - rotary), run.Dk.narrow(-1, rotary, headDim - rotary),
                "dk's pass-through dims (the upstream gradient)", context);
        }
    }

    /// <summary>
    /// The attention layout: q = q_proj(x).view(B, T, H, D).transpose(1, 2), not contiguous, and an
    /// upstream gradient in yet another layout. Read and written where they lie; in place, the
    /// projection's buffer holds q_embed afterwards and the upstream gradient's buffer holds dq.
    /// </summary>
    [TestMethod]
    [DynamicData(nameof(LayoutCases))]
    public void TransposedProjectionViews_AreUsedWhereTheyLie(string path, ScalarType dtype, bool inPlace)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        const long B = 2, Hq = 4, Hkv = 2, T = 5, D = 16;
        var inputs = RandomInputs([B, Hq, Hkv, T, D], dtype, CosForm.BatchB);
        string context = Inputs.Describe(seed, path, dtype, $"inPlace {inPlace}", "transposed views");
        var reference = References.Rope(inputs.Q, inputs.K, inputs.Cos, inputs.Sin, inputs.DqEmbed, inputs.DkEmbed);
        var outOfPlace = Run(path, inputs);

        using var p = PathScope.Enter(path);
        // (B, T, H·D) leaves, as projection outputs; the clones are the private intermediates attention holds.
        var qLeaf = p.On(inputs.Q.transpose(1, 2).reshape(B, T, Hq * D)).requires_grad_(true);
        var kLeaf = p.On(inputs.K.transpose(1, 2).reshape(B, T, Hkv * D)).requires_grad_(true);
        var (qProj, kProj) = (qLeaf.clone(), kLeaf.clone());
        var q = qProj.view(B, T, Hq, D).transpose(1, 2);
        var k = kProj.view(B, T, Hkv, D).transpose(1, 2);
        Assert.IsFalse(q.is_contiguous(), "the test needs a non-contiguous q");
        // Upstream gradients laid out (B, T, H, D) physically, as a transposed view.
        var dq = p.On(inputs.DqEmbed.transpose(1, 2)).transpose(1, 2);
        var dk = p.On(inputs.DkEmbed.transpose(1, 2)).transpose(1, 2);
        var (dqBefore, dkBefore) = (dq.clone(), dk.clone());

        var (qe, ke) = LigerRotaryPosEmb.Apply(q, k, p.On(inputs.Cos), p.On(inputs.Sin), inPlace, inPlaceBackward: inPlace);
        autograd.backward([qe, ke], [dq, dk]);
        p.AssertRan(Forward, Backward);

        var tolerance = Tolerance.VersusFloat64(dtype);
        TensorAssert.Close(qe, reference.QEmbed, tolerance, "q_embed", context, scale: reference.QTerms, termMagnitude: reference.QTerms);
        TensorAssert.Close(ke, reference.KEmbed, tolerance, "k_embed", context, scale: reference.KTerms, termMagnitude: reference.KTerms);
        TensorAssert.BitwiseEqual(outOfPlace.QEmbed, qe.cpu(), "q_embed (transposed vs contiguous inputs)", context);
        TensorAssert.BitwiseEqual(outOfPlace.KEmbed, ke.cpu(), "k_embed (transposed vs contiguous inputs)", context);
        var dqLeaf = qLeaf.grad!.view(B, T, Hq, D).transpose(1, 2);
        var dkLeaf = kLeaf.grad!.view(B, T, Hkv, D).transpose(1, 2);
        TensorAssert.Close(dqLeaf, reference.Dq, tolerance, "dq", context, scale: reference.DqTerms, termMagnitude: reference.DqTerms);
        TensorAssert.Close(dkLeaf, reference.Dk, tolerance, "dk", context, scale: reference.DkTerms, termMagnitude: reference.DkTerms);
        TensorAssert.BitwiseEqual(outOfPlace.Dq, dqLeaf.cpu(), "dq (transposed vs contiguous inputs)", context);
        TensorAssert.BitwiseEqual(outOfPlace.Dk, dkLeaf.cpu(), "dk (transposed vs contiguous inputs)", context);

        if (inPlace)
        {
            Assert.AreEqual(q.Address(), qe.Address(), $"q_embed shares q's memory. {context}");
            Assert.AreEqual(k.Address(), ke.Address(), $"k_embed shares k's memory. {context}");
            TensorAssert.BitwiseEqual(qe, q, "q's buffer after the in-place forward (holds q_embed)", context);
            TensorAssert.BitwiseEqual(ke, k, "k's buffer after the in-place forward (holds k_embed)", context);
            TensorAssert.BitwiseEqual(dqLeaf, dq, "the upstream gradient's buffer after the in-place backward (holds dq)", context);
            TensorAssert.BitwiseEqual(dkLeaf, dk, "the upstream gradient's buffer after the in-place backward (holds dk)", context);
        }
        else
        {
            TensorAssert.BitwiseEqual(qLeaf, qProj, "q_proj's output after an out-of-place call", context);
            TensorAssert.BitwiseEqual(kLeaf, kProj, "k_proj's output after an out-of-place call", context);
            TensorAssert.BitwiseEqual(dqBefore, dq, "upstream gradient of q_embed after backward", context);
            TensorAssert.BitwiseEqual(dkBefore, dk, "upstream gradient of k_embed after backward", context);
        }
    }

    /// <summary>A Llama attention prologue: projections, views, in-place RoPE; gradients of x and the weights.</summary>
    [TestMethod]
    [DynamicData(nameof(PathAndDtype))]
    public void AttentionPrologue_InPlace_MatchesEagerFloat64Chain(string path, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        const long B = 2, T = 7, C = 24, Hq = 4, Hkv = 2, D = 16;
        string context = Inputs.Describe(seed, path, dtype, "attention prologue");
        var x = Inputs.Randn([B, T, C], dtype);
        var wq = Inputs.Randn([Hq * D, C], dtype, 0.2);
        var wk = Inputs.Randn([Hkv * D, C], dtype, 0.2);
        var positions = Ranges.Int64(0, T).unsqueeze(0).expand(B, T).contiguous().Plus(tensor(new long[] { 0, 3 }).unsqueeze(1));
        var dq = Inputs.Randn([B, Hq, T, D], dtype);
        var dk = Inputs.Randn([B, Hkv, T, D], dtype);

        using var p = PathScope.Enter(path);
        var (xd, wqd, wkd) = (p.On(x).requires_grad_(true), p.On(wq).requires_grad_(true), p.On(wk).requires_grad_(true));
        var (cos, sin) = RotaryEmbedding.CosSin(p.On(positions), D, 10000.0, dtype);
        var q = nn.functional.linear(xd, wqd).view(B, T, Hq, D).transpose(1, 2);
        var k = nn.functional.linear(xd, wkd).view(B, T, Hkv, D).transpose(1, 2);
        var (qe, ke) = LigerRotaryPosEmb.Apply(q, k, cos, sin, inPlace: true, inPlaceBackward: true);
        autograd.backward([qe, ke], [p.On(dq), p.On(dk)]);
        p.AssertRan(Forward, Backward);

        // float64 chain with the same cos and sin values
        var (x64, wq64, wk64) = (x.to(ScalarType.Float64).requires_grad_(true), wq.to(ScalarType.Float64).requires_grad_(true),
            wk.to(ScalarType.Float64).requires_grad_(true));
        var (c64, s64) = (cos.cpu().to(ScalarType.Float64).unsqueeze(1), sin.cpu().to(ScalarType.Float64).unsqueeze(1));
        var q64 = nn.functional.linear(x64, wq64).view(B, T, Hq, D).transpose(1, 2);
        var k64 = nn.functional.linear(x64, wk64).view(B, T, Hkv, D).transpose(1, 2);
        var qe64 = (q64 * c64).Plus(References.RotateHalf(q64) * s64);
        var ke64 = (k64 * c64).Plus(References.RotateHalf(k64) * s64);
        autograd.backward([qe64, ke64], [dq.to(ScalarType.Float64), dk.to(ScalarType.Float64)]);

        // The projections round to the dtype before RoPE: allow for matrix-product rounding (Σ|terms|).
        var xAbs = x64.detach().abs();
        var qTerms = (nn.functional.linear(xAbs, wq64.detach().abs()).view(B, T, Hq, D).transpose(1, 2) * (c64.abs().Plus(s64.abs()))).detach();
        var kTerms = (nn.functional.linear(xAbs, wk64.detach().abs()).view(B, T, Hkv, D).transpose(1, 2) * (c64.abs().Plus(s64.abs()))).detach();
        var tolerance = Tolerance.VersusFloat64(dtype);
        TensorAssert.Close(qe, qe64.detach(), tolerance, "q_embed", context, termMagnitude: qTerms);
        TensorAssert.Close(ke, ke64.detach(), tolerance, "k_embed", context, termMagnitude: kTerms);
        var dqAbs = (dq.to(ScalarType.Float64).abs() * (c64.abs().Plus(s64.abs()))).transpose(1, 2).reshape(B * T, Hq * D);
        var dkAbs = (dk.to(ScalarType.Float64).abs() * (c64.abs().Plus(s64.abs()))).transpose(1, 2).reshape(B * T, Hkv * D);
        var flatX = xAbs.reshape(B * T, C);
        TensorAssert.Close(wqd.grad!, wq64.grad!, tolerance, "dWq", context, termMagnitude: dqAbs.t().matmul(flatX));
        TensorAssert.Close(wkd.grad!, wk64.grad!, tolerance, "dWk", context, termMagnitude: dkAbs.t().matmul(flatX));
        var dxTerms = (dqAbs.matmul(wq64.detach().abs()).Plus(dkAbs.matmul(wk64.detach().abs()))).view(B, T, C);
        TensorAssert.Close(xd.grad!, x64.grad!, tolerance, "dx", context, termMagnitude: dxTerms);
    }

    // ---- in-place semantics ----

    [TestMethod]
    [DynamicData(nameof(PathAndDtype))]
    public void InPlace_WritesIntoQAndK_AndTheBackwardIntoTheGradients(string path, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        foreach (var shape in new[] { "2x3x1x5x6", "1x4x2x7x64" })
        {
            var inputs = RandomInputs(Inputs.Shape(shape), dtype, CosForm.Batch1);
            string context = Inputs.Describe(seed, path, shape, dtype, "in place");
            var outOfPlace = Run(path, inputs);

            using var p = PathScope.Enter(path);
            var (qLeaf, kLeaf) = (p.On(inputs.Q).requires_grad_(true), p.On(inputs.K).requires_grad_(true));
            var (q, k) = (qLeaf.clone(), kLeaf.clone());
            var (dq, dk) = (p.On(inputs.DqEmbed), p.On(inputs.DkEmbed));
            var (qe, ke) = LigerRotaryPosEmb.Apply(q, k, p.On(inputs.Cos), p.On(inputs.Sin), inPlace: true, inPlaceBackward: true);
            Assert.AreEqual(q.Address(), qe.Address(), $"q_embed is q's memory. {context}");
            Assert.AreEqual(k.Address(), ke.Address(), $"k_embed is k's memory. {context}");
            TensorAssert.BitwiseEqual(outOfPlace.QEmbed, q, "q after the in-place forward", context);
            TensorAssert.BitwiseEqual(outOfPlace.KEmbed, k, "k after the in-place forward", context);
            autograd.backward([qe, ke], [dq, dk]);
            p.AssertRan(Forward, Backward);
            TensorAssert.BitwiseEqual(outOfPlace.Dq, qLeaf.grad!, "dq (in place vs out of place)", context);
            TensorAssert.BitwiseEqual(outOfPlace.Dk, kLeaf.grad!, "dk (in place vs out of place)", context);
            TensorAssert.BitwiseEqual(outOfPlace.Dq, dq, "the upstream gradient of q_embed after the in-place backward", context);
            TensorAssert.BitwiseEqual(outOfPlace.Dk, dk, "the upstream gradient of k_embed after the in-place backward", context);
        }
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void OutOfPlace_LeavesInputsCosSinAndUpstreamUntouched(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var inputs = RandomInputs([2, 2, 1, 3, 16], ScalarType.BFloat16, CosForm.BatchB);
        string context = Inputs.Describe(seed, path, "out of place");
        using var p = PathScope.Enter(path);
        var (q, k) = (p.On(inputs.Q).requires_grad_(true), p.On(inputs.K).requires_grad_(true));
        var (cos, sin) = (p.On(inputs.Cos), p.On(inputs.Sin));
        var (dq, dk) = (p.On(inputs.DqEmbed), p.On(inputs.DkEmbed));
        var (qe, ke) = LigerRotaryPosEmb.Apply(q, k, cos, sin);
        autograd.backward([qe, ke], [dq, dk]);
        p.AssertRan(Forward, Backward);
        TensorAssert.BitwiseEqual(inputs.Q, q, "q", context);
        TensorAssert.BitwiseEqual(inputs.K, k, "k", context);
        TensorAssert.BitwiseEqual(inputs.Cos, cos, "cos", context);
        TensorAssert.BitwiseEqual(inputs.Sin, sin, "sin", context);
        TensorAssert.BitwiseEqual(inputs.DqEmbed, dq, "upstream gradient of q_embed", context);
        TensorAssert.BitwiseEqual(inputs.DkEmbed, dk, "upstream gradient of k_embed", context);
        Assert.AreNotEqual(q.Address(), qe.Address(), "q_embed is a new tensor");
    }

    /// <summary>In place, q's version counter moves: a node that saved q fails loudly instead of using rotated values.</summary>
    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void InPlace_OnATensorAnotherNodeSaved_FailsAtThatNodesBackward(string path)
    {
        using var scope = NewDisposeScope();
        using var p = PathScope.Enter(path);
        var leaf = randn(1, 2, 3, 8, device: p.Device).requires_grad_(true);
        var q = leaf.Times(1);
        var k = (leaf.Times(1)).narrow(1, 0, 1).contiguous();
        var squared = q * q; // saves q
        var cos = randn(3, 8, device: p.Device);
        var sin = randn(3, 8, device: p.Device);
        var (qe, ke) = LigerRotaryPosEmb.Apply(q, k, cos, sin, inPlace: true);
        var e = Assert.ThrowsExactly<ExternalException>(() => (squared.sum().Plus(qe.sum()).Plus(ke.sum())).backward());
        Assert.Contains("modified by an inplace operation", e.Message);
    }

    /// <summary>
    /// cos or sin requiring grad is refused (RoPE saves only them and gives them no gradient); under no_grad,
    /// or detached, the same tables are accepted and give the reference result.
    /// </summary>
    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void CosOrSinRequiringGrad_IsRefused_DetachedIsAccepted(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var inputs = RandomInputs([2, 2, 1, 3, 6], ScalarType.Float32, CosForm.BatchB);
        string context = Inputs.Describe(seed, path, "cos and sin require grad");
        var reference = References.Rope(inputs.Q, inputs.K, inputs.Cos, inputs.Sin, inputs.DqEmbed, inputs.DkEmbed);
        using var p = PathScope.Enter(path);
        var (q, k) = (p.On(inputs.Q).requires_grad_(true), p.On(inputs.K).requires_grad_(true));
        var (cos, sin) = (p.On(inputs.Cos).requires_grad_(true), p.On(inputs.Sin).requires_grad_(true));
        RmsNormTests.ExpectArgument<ArgumentException>("cos", () => LigerRotaryPosEmb.Apply(q, k, cos, sin.detach()), "cos requires grad");
        RmsNormTests.ExpectArgument<ArgumentException>("sin", () => LigerRotaryPosEmb.Apply(q, k, cos.detach(), sin), "sin requires grad");
        Assert.IsEmpty(p.Events, "no op may run on rejected arguments");

        var (qe, ke) = LigerRotaryPosEmb.Apply(q, k, cos.detach(), sin.detach());
        autograd.backward([qe, ke], [p.On(inputs.DqEmbed), p.On(inputs.DkEmbed)]);
        p.AssertRan(Forward, Backward);
        var tolerance = Tolerance.VersusFloat64(ScalarType.Float32);
        TensorAssert.Close(q.grad!, reference.Dq, tolerance, "dq", context, scale: reference.DqTerms, termMagnitude: reference.DqTerms);
        TensorAssert.Close(k.grad!, reference.Dk, tolerance, "dk", context, scale: reference.DkTerms, termMagnitude: reference.DkTerms);
        Assert.IsNull(cos.grad, "cos gets no gradient");

        // Under no_grad nothing is differentiated, so tables that require grad are fine.
        using (no_grad())
        {
            var (qe2, _) = LigerRotaryPosEmb.Apply(p.On(inputs.Q), p.On(inputs.K), cos, sin);
            TensorAssert.Close(qe2, reference.QEmbed, tolerance, "q_embed under no_grad", context, scale: reference.QTerms, termMagnitude: reference.QTerms);
        }
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void AnOutputOutsideTheLoss_GivesItsInputNoGradient(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var inputs = RandomInputs([1, 2, 2, 3, 16], ScalarType.Float32, CosForm.Batch1);
        string context = Inputs.Describe(seed, path, "one output in the loss");
        var reference = References.Rope(inputs.Q, inputs.K, inputs.Cos, inputs.Sin, inputs.DqEmbed, inputs.DkEmbed);
        var tolerance = Tolerance.VersusFloat64(ScalarType.Float32);
        foreach (bool useQ in new[] { true, false })
        {
            using var p = PathScope.Enter(path);
            var (q, k) = (p.On(inputs.Q).requires_grad_(true), p.On(inputs.K).requires_grad_(true));
            var (qe, ke) = LigerRotaryPosEmb.Apply(q, k, p.On(inputs.Cos), p.On(inputs.Sin));
            if (useQ)
                qe.backward([p.On(inputs.DqEmbed)]);
            else
                ke.backward([p.On(inputs.DkEmbed)]);
            p.AssertRan(Forward, Backward);
            var (used, unused) = useQ ? (q, k) : (k, q);
            Assert.IsNull(unused.grad, $"the input of the unused output gets no gradient. {context}");
            TensorAssert.Close(used.grad!, useQ ? reference.Dq : reference.Dk, tolerance, useQ ? "dq" : "dk", context,
                termMagnitude: useQ ? reference.DqTerms : reference.DkTerms);
        }
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void EmptyInputs_GiveEmptyOutputsAndGradients(string path)
    {
        using var scope = NewDisposeScope();
        using var p = PathScope.Enter(path);
        foreach (var (qShape, kShape, cosShape) in new (long[], long[], long[])[]
        {
            ([2, 3, 0, 8], [2, 1, 0, 8], [1, 0, 8]),   // T = 0
            ([0, 3, 4, 8], [0, 1, 4, 8], [1, 4, 8]),   // B = 0
        })
        {
            var q = empty(qShape, device: p.Device).requires_grad_(true);
            var k = empty(kShape, device: p.Device).requires_grad_(true);
            var (qe, ke) = LigerRotaryPosEmb.Apply(q, k, empty(cosShape, device: p.Device), empty(cosShape, device: p.Device));
            CollectionAssert.AreEqual(qShape, qe.shape);
            CollectionAssert.AreEqual(kShape, ke.shape);
            autograd.backward([qe, ke], [empty(qShape, device: p.Device), empty(kShape, device: p.Device)]);
            CollectionAssert.AreEqual(qShape, q.grad!.shape);
            CollectionAssert.AreEqual(kShape, k.grad!.shape);
        }
        p.AssertRan(Forward, Backward);
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void HostFunctions_MatchTheAutogradFunction(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var inputs = RandomInputs([2, 3, 1, 5, 24], ScalarType.BFloat16, CosForm.TwoD);
        string context = Inputs.Describe(seed, path, "host functions");
        var run = Run(path, inputs);
        using var p = PathScope.Enter(path);
        var (qe, ke) = RopeOp.Forward(p.On(inputs.Q), p.On(inputs.K), p.On(inputs.Cos), p.On(inputs.Sin), inPlace: false);
        var (dq, dk) = RopeOp.Backward(p.On(inputs.DqEmbed), p.On(inputs.DkEmbed), p.On(inputs.Cos), p.On(inputs.Sin), inPlace: false);
        var (dqOnly, dkNone) = RopeOp.Backward(p.On(inputs.DqEmbed), null, p.On(inputs.Cos), p.On(inputs.Sin), inPlace: false);
        p.AssertRan(Forward, Backward);
        TensorAssert.BitwiseEqual(run.QEmbed, qe, "q_embed (host vs autograd)", context);
        TensorAssert.BitwiseEqual(run.KEmbed, ke, "k_embed (host vs autograd)", context);
        TensorAssert.BitwiseEqual(run.Dq, dq!, "dq (host vs autograd)", context);
        TensorAssert.BitwiseEqual(run.Dk, dk!, "dk (host vs autograd)", context);
        TensorAssert.BitwiseEqual(run.Dq, dqOnly!, "dq without dk", context);
        Assert.IsNull(dkNone, "no gradient in, none out");
    }

    // ---- position ids: the cos and sin tables ----

    /// <summary>Rows: path, dtype, theta.</summary>
    public static IEnumerable<object[]> TableCases() =>
        from path in TestPaths.Names
        from dtype in Dtypes
        from theta in new[] { 10000.0, 500000.0 }
        select new object[] { path, dtype, theta };

    /// <summary>
    /// cos/sin from position ids against angles computed in float64. The tables follow Hugging Face's
    /// float32 arithmetic, whose angle pos·inv_freq carries about 2^-23 of its own size of rounding
    /// (inv_freq, then the product): the bound is that plus the dtype's rounding of the value.
    /// </summary>
    [TestMethod]
    [DynamicData(nameof(TableCases))]
    public void CosSin_FromPositionIds_MatchFloat64Angles(string path, ScalarType dtype, double theta)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        const long D = 64;
        using var p = PathScope.Enter(path);
        var positions = randint(0, 4096, [2, 9], dtype: ScalarType.Int64);
        string context = Inputs.Describe(seed, path, dtype, $"theta {theta}");
        var (cos, sin) = RotaryEmbedding.CosSin(p.On(positions), D, theta, dtype);
        CollectionAssert.AreEqual(new long[] { 2, 9, D }, cos.shape);
        Assert.AreEqual(dtype, cos.dtype);
        Assert.AreEqual(p.Device.type, cos.device.type);

        var i = Ranges.Int64(0, D, 2).to(ScalarType.Float64);
        var invFreq = pow(ScalarArithmetic.FullLike(i, theta), -(i.DividedBy(D)));
        var angles = positions.to(ScalarType.Float64).unsqueeze(-1) * invFreq;
        angles = cat([angles, angles], -1);
        // float32: pow (≤ 2 ulp on CUDA), reciprocal and product roundings on the angle; the value's own
        // rounding and the cos/sin implementation's error (≤ 2 ulp), with margin. 16-bit: one rounding.
        double unit = dtype switch { ScalarType.Float32 => 4e-7, ScalarType.BFloat16 => Math.Pow(2, -8), _ => Math.Pow(2, -11) };
        var bound = (angles.abs().Times(8).Times(Math.Pow(2, -24))).Plus(unit);
        foreach (var (actual, expected, name) in new[] { (cos, angles.cos(), "cos"), (sin, angles.sin(), "sin") })
        {
            var error = (actual.cpu().to(ScalarType.Float64) - expected).abs();
            long bad = (error > bound).sum().item<long>();
            Assert.AreEqual(0L, bad, $"{name}: {bad} elements off by more than 8·2^-24·|angle| + {unit:E1}; max error {error.max().item<double>():E3}. {context}");
        }

        // The 16-bit tables are the float32 ones rounded (Hugging Face computes in float32, then casts).
        var (cos32, sin32) = RotaryEmbedding.CosSin(p.On(positions), D, theta, ScalarType.Float32);
        TensorAssert.BitwiseEqual(cos32.to(dtype).cpu(), cos.cpu(), "cos = float32 cos cast", context);
        TensorAssert.BitwiseEqual(sin32.to(dtype).cpu(), sin.cpu(), "sin = float32 sin cast", context);
        // 1-D positions: one shared row set (1, T, R), equal to batch row 0's.
        var (cos1, _) = RotaryEmbedding.CosSin(p.On(positions[0]), D, theta, dtype);
        CollectionAssert.AreEqual(new long[] { 1, 9, D }, cos1.shape);
        TensorAssert.BitwiseEqual(cos[0].unsqueeze(0).cpu(), cos1.cpu(), "cos from 1-D positions", context);
    }

    /// <summary>Position ids through CosSin and RoPE: each (b, t) row rotated by its own angles, against float64 rotation.</summary>
    [TestMethod]
    [DynamicData(nameof(PathAndDtype))]
    public void PositionIds_PerSequence_RotateEachRowByItsAngles(string path, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        const long B = 2, Hq = 3, Hkv = 1, T = 5, D = 16;
        string context = Inputs.Describe(seed, path, dtype, "position ids");
        var positions = randint(0, 256, [B, T], dtype: ScalarType.Int64);
        var inputs = RandomInputs([B, Hq, Hkv, T, D], dtype, CosForm.BatchB);
        using (var p = PathScope.Enter(path))
        {
            var (cos, sin) = RotaryEmbedding.CosSin(p.On(positions), D, 10000.0, dtype);
            inputs = inputs with { Cos = cos.cpu(), Sin = sin.cpu() };
        }
        var run = Run(path, inputs);
        AssertMatchesReference(run, inputs, context);

        // Against float64 angles directly: the table's own error (see CosSin_...) adds to the rotation's.
        var i = Ranges.Int64(0, D, 2).to(ScalarType.Float64);
        var angles = positions.to(ScalarType.Float64).unsqueeze(-1) * pow(ScalarArithmetic.FullLike(i, 10000.0), -(i.DividedBy(D)));
        var c = cat([angles.cos(), angles.cos()], -1);
        var s = cat([angles.sin(), angles.sin()], -1);
        var exact = References.Rope(inputs.Q, inputs.K, c, s, inputs.DqEmbed, inputs.DkEmbed);
        // float32 angles below 256 rad are off by up to 256·2^-22 (see CosSin_...): that much more relative error.
        var t = Tolerance.VersusFloat64(dtype);
        double angleError = 256 * Math.Pow(2, -21);
        var loose = t with { NormRel = t.NormRel + angleError, Rtol = t.Rtol + angleError };
        TensorAssert.Close(run.QEmbed, exact.QEmbed, loose, "q_embed vs float64 angles", context, scale: exact.QTerms, termMagnitude: exact.QTerms);
        TensorAssert.Close(run.Dq, exact.Dq, loose, "dq vs float64 angles", context, scale: exact.DqTerms, termMagnitude: exact.DqTerms);
    }

    [TestMethod]
    public void RotaryEmbeddingModule_HoldsNoStateAndMatchesCosSin()
    {
        using var scope = NewDisposeScope();
        using var module = new LigerRotaryEmbedding(headDim: 32, theta: 500000.0);
        Assert.IsEmpty(module.state_dict(), "inv_freq is not persistent in Hugging Face's checkpoints");
        Assert.IsEmpty(module.parameters().ToList(), "no parameters");
        Assert.AreEqual(32L, module.RotaryDim);
        var positions = Ranges.Int64(0, 7).unsqueeze(0);
        foreach (var dtype in Dtypes)
        {
            var x = zeros(1, 7, 8, dtype: dtype);
            var (cos, sin) = module.forward(x, positions);
            var (expectedCos, expectedSin) = RotaryEmbedding.CosSin(positions, 32, 500000.0, dtype);
            TensorAssert.BitwiseEqual(expectedCos, cos, $"cos ({dtype})", "module");
            TensorAssert.BitwiseEqual(expectedSin, sin, $"sin ({dtype})", "module");
        }

        using var partial = new LigerRotaryEmbedding(headDim: 80, partialRotaryFactor: 0.4);
        Assert.AreEqual(32L, partial.RotaryDim);
        var (partialCos, _) = partial.forward(zeros(1), positions);
        CollectionAssert.AreEqual(new long[] { 1, 7, 32 }, partialCos.shape);

        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new LigerRotaryEmbedding(headDim: 1));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new LigerRotaryEmbedding(headDim: 10, partialRotaryFactor: 0.5));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new LigerRotaryEmbedding(headDim: 16, theta: -1));
        RmsNormTests.ExpectArgument<ArgumentException>("positionIds",
            () => RotaryEmbedding.CosSin(zeros(2, 3), 16), "float position ids");
        RmsNormTests.ExpectArgument<ArgumentException>("positionIds",
            () => RotaryEmbedding.CosSin(zeros([1, 2, 3], dtype: ScalarType.Int64), 16), "3-D position ids");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => RotaryEmbedding.CosSin(Ranges.Int64(0, 3), 7));
    }

    // ---- bad inputs ----

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void BadInputs_ThrowArgumentExceptionsNamingTheArgument(string path)
    {
        using var scope = NewDisposeScope();
        using var p = PathScope.Enter(path);
        var device = p.Device;
        var q = randn(2, 4, 3, 8, device: device);
        var k = randn(2, 2, 3, 8, device: device);
        var cos = randn(1, 3, 8, device: device);
        var sin = randn(1, 3, 8, device: device);
        void Expect(string argument, Func<object> call, string what) => RmsNormTests.ExpectArgument<ArgumentException>(argument, call, what);
        object Apply(Tensor q_, Tensor k_, Tensor c_, Tensor s_, bool inPlace = false) => LigerRotaryPosEmb.Apply(q_, k_, c_, s_, inPlace);

        Expect("q", () => Apply(randn(4, 3, 8, device: device), k, cos, sin), "3-D q");
        Expect("k", () => Apply(q, randn(2, 3, 8, device: device), cos, sin), "3-D k");
        Expect("q", () => Apply(q.to(ScalarType.Int64), k.to(ScalarType.Int64), cos, sin), "int64 q");
        Expect("q", () => Apply(q.to(ScalarType.Float64), k.to(ScalarType.Float64), cos, sin), "float64 q");
        Expect("k", () => Apply(q, k.to(ScalarType.BFloat16), cos, sin), "bf16 k for fp32 q");
        Expect("cos", () => Apply(q, k, cos.to(ScalarType.BFloat16), sin), "bf16 cos for fp32 q");
        Expect("sin", () => Apply(q, k, cos, sin.to(ScalarType.BFloat16)), "bf16 sin for fp32 q");
        Expect("k", () => Apply(q, randn(3, 2, 3, 8, device: device), cos, sin), "k of another batch");
        Expect("k", () => Apply(q, randn(2, 2, 4, 8, device: device), cos, sin), "k of another T");
        Expect("k", () => Apply(q, randn(2, 2, 3, 6, device: device), cos, sin), "k of another head_dim");
        Expect("cos", () => Apply(q, k, randn(1, 4, 8, device: device), randn(1, 4, 8, device: device)), "cos of another T");
        Expect("cos", () => Apply(q, k, randn(3, 3, 8, device: device), randn(3, 3, 8, device: device)), "cos batch 3 for B = 2");
        Expect("cos", () => Apply(q, k, randn(1, 1, 3, 8, device: device), randn(1, 1, 3, 8, device: device)), "4-D cos");
        Expect("cos", () => Apply(q, k, randn(1, 3, 10, device: device), randn(1, 3, 10, device: device)), "cos wider than head_dim");
        Expect("cos", () => Apply(q, k, randn(1, 3, 5, device: device), randn(1, 3, 5, device: device)), "odd rotary dim");
        Expect("cos", () => Apply(randn(2, 4, 3, 7, device: device), randn(2, 2, 3, 7, device: device),
            randn(1, 3, 7, device: device), randn(1, 3, 7, device: device)), "odd head_dim, all of it rotated");
        Expect("sin", () => Apply(q, k, cos, randn(1, 3, 6, device: device)), "sin of another shape");
        Expect("q", () => Apply(randn(2, 4, 3, 8, device: device).requires_grad_(true), k, cos, sin, inPlace: true), "in place on a leaf that requires grad");
        Expect("k", () => Apply(q, randn(2, 2, 8, 3, device: device).transpose(2, 3), cos, sin, inPlace: true), "in place, head_dim not contiguous");
        Expect("q", () => Apply(randn(2, 1, 3, 8, device: device).expand(2, 4, 3, 8), k, cos, sin, inPlace: true), "in place on overlapping memory");
        Expect("k", () => Apply(q, q, cos, sin, inPlace: true), "in place with k = q");
        RmsNormTests.ExpectArgument<ArgumentNullException>("q", () => Apply(null!, k, cos, sin), "null q");
        RmsNormTests.ExpectArgument<ArgumentNullException>("sin", () => Apply(q, k, cos, null!), "null sin");
        if (path == TestPaths.Cuda)
        {
            Expect("k", () => Apply(q, k.cpu(), cos, sin), "k on the CPU, q on CUDA");
            Expect("cos", () => Apply(q, k, cos.cpu(), sin), "cos on the CPU, q on CUDA");
        }
        Assert.IsEmpty(p.Events, "no op may run on rejected arguments");
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void StridedOutOfPlaceInputs_HeadDimNotContiguous_AreCopiedNotRejected(string path)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var inputs = RandomInputs([1, 2, 1, 3, 8], ScalarType.Float32, CosForm.Batch1);
        string context = Inputs.Describe(seed, path, "head_dim strided");
        var expected = Run(path, inputs);
        using var p = PathScope.Enter(path);
        var q = p.On(inputs.Q.transpose(2, 3)).transpose(2, 3).requires_grad_(true); // leaf, stride(3) = T
        var k = p.On(inputs.K);
        Assert.AreNotEqual(1L, q.stride(3));
        var (qe, _) = LigerRotaryPosEmb.Apply(q, k, p.On(inputs.Cos), p.On(inputs.Sin));
        qe.backward([p.On(inputs.DqEmbed)]);
        TensorAssert.BitwiseEqual(expected.QEmbed, qe, "q_embed", context);
        TensorAssert.BitwiseEqual(expected.Dq, q.grad!, "dq", context);
    }

    // ---- helpers ----

    /// <summary>Inputs of one case: q, k, cos, sin and the upstream gradients, on the CPU.</summary>
    internal sealed record Case(Tensor Q, Tensor K, Tensor Cos, Tensor Sin, Tensor DqEmbed, Tensor DkEmbed);

    internal sealed record Result(Tensor QEmbed, Tensor KEmbed, Tensor Dq, Tensor Dk);

    /// <summary>
    /// Shape [B, Hq, Hkv, T, D]. q, k, dy = randn; cos and sin independent randn (not a rotation, and halves
    /// that differ), so a kernel that assumed cos² + sin² = 1 or equal halves would fail.
    /// </summary>
    internal static Case RandomInputs(long[] shape, ScalarType dtype, CosForm cosForm, long rotary = 0)
    {
        var (b, hq, hkv, t, d) = (shape[0], shape[1], shape[2], shape[3], shape[4]);
        long r = rotary == 0 ? d : rotary;
        long[] tableShape = cosForm switch
        {
            CosForm.Batch1 => [1, t, r],
            CosForm.BatchB => [b, t, r],
            _ => [t, r],
        };
        return new Case(Inputs.Randn([b, hq, t, d], dtype), Inputs.Randn([b, hkv, t, d], dtype),
            Inputs.Randn(tableShape, dtype), Inputs.Randn(tableShape, dtype),
            Inputs.Randn([b, hq, t, d], dtype), Inputs.Randn([b, hkv, t, d], dtype));
    }

    /// <summary>Forward and backward of LigerRotaryPosEmb on <paramref name="path"/>; results on the CPU.</summary>
    internal static Result Run(string path, Case c, bool inPlace = false, bool inPlaceBackward = false)
    {
        using var p = PathScope.Enter(path);
        var q = p.On(c.Q).requires_grad_(true);
        var k = p.On(c.K).requires_grad_(true);
        // In place needs private intermediates, as q_proj's output is.
        var (qIn, kIn) = inPlace ? (q.clone(), k.clone()) : (q, k);
        var (qe, ke) = LigerRotaryPosEmb.Apply(qIn, kIn, p.On(c.Cos), p.On(c.Sin), inPlace, inPlaceBackward);
        autograd.backward([qe, ke], [p.On(c.DqEmbed), p.On(c.DkEmbed)]);
        p.AssertRan(Forward, Backward);
        return new Result(qe.detach().cpu(), ke.detach().cpu(), q.grad!.cpu(), k.grad!.cpu());
    }

    /// <summary>
    /// Hugging Face's formula run eagerly in the case's dtype on the path's device (autograd for the
    /// gradients): the rounding Liger reproduces.
    /// </summary>
    internal static Result Eager(string path, Case c)
    {
        var device = path == TestPaths.Cuda ? CUDA : CPU;
        // Fresh leaves: on the CPU, to() returns the case's own tensor, whose grad would accumulate across calls.
        var q = c.Q.detach().to(device).clone().requires_grad_(true);
        var k = c.K.detach().to(device).clone().requires_grad_(true);
        var cos = (c.Cos.dim() == 2 ? c.Cos.unsqueeze(0) : c.Cos).to(device).unsqueeze(1);
        var sin = (c.Sin.dim() == 2 ? c.Sin.unsqueeze(0) : c.Sin).to(device).unsqueeze(1);
        Tensor Embed(Tensor x)
        {
            long rotary = cos.shape[^1], headDim = x.shape[^1];
            var rot = x.narrow(-1, 0, rotary);
            var y = (rot * cos).Plus(References.RotateHalf(rot) * sin);
            return rotary == headDim ? y : cat([y, x.narrow(-1, rotary, headDim - rotary)], -1);
        }
        var (qe, ke) = (Embed(q), Embed(k));
        autograd.backward([qe, ke], [c.DqEmbed.to(device), c.DkEmbed.to(device)]);
        return new Result(qe.detach().cpu(), ke.detach().cpu(), q.grad!.cpu(), k.grad!.cpu());
    }

    /// <summary>
    /// Each element is a two-term sum (x·c ± x'·s), rounded per term: its error is relative to Σ|terms|, not to
    /// the result, so the terms are both the elementwise magnitude and the norm's scale (in a case of one
    /// position and one head, cancellation can make ‖expected‖ a small fraction of ‖terms‖).
    /// </summary>
    private static void AssertMatchesReference(Result run, Case c, string context)
    {
        var reference = References.Rope(c.Q, c.K, c.Cos, c.Sin, c.DqEmbed, c.DkEmbed);
        var tolerance = Tolerance.VersusFloat64(c.Q.dtype);
        TensorAssert.Close(run.QEmbed, reference.QEmbed, tolerance, "q_embed", context, scale: reference.QTerms, termMagnitude: reference.QTerms);
        TensorAssert.Close(run.KEmbed, reference.KEmbed, tolerance, "k_embed", context, scale: reference.KTerms, termMagnitude: reference.KTerms);
        TensorAssert.Close(run.Dq, reference.Dq, tolerance, "dq", context, scale: reference.DqTerms, termMagnitude: reference.DqTerms);
        TensorAssert.Close(run.Dk, reference.Dk, tolerance, "dk", context, scale: reference.DkTerms, termMagnitude: reference.DkTerms);
    }

    /// <summary>
    /// Against eager torch in the same dtype: bit for bit on the CPU (the torch path and the emulated kernels
    /// round exactly where eager rounds); on CUDA, eager's kernels and ours may differ in a rounding tie.
    /// </summary>
    private static void AssertSameAsEager(string path, Result run, Case c, string context)
    {
        var eager = Eager(path, c);
        if (path == TestPaths.Cuda)
        {
            var same = Tolerance.SameRounding(c.Q.dtype);
            TensorAssert.Close(run.QEmbed, eager.QEmbed, same, "q_embed vs eager", context);
            TensorAssert.Close(run.KEmbed, eager.KEmbed, same, "k_embed vs eager", context);
            TensorAssert.Close(run.Dq, eager.Dq, same, "dq vs eager", context);
            TensorAssert.Close(run.Dk, eager.Dk, same, "dk vs eager", context);
            return;
        }
        TensorAssert.BitwiseEqual(eager.QEmbed, run.QEmbed, "q_embed vs eager", context);
        TensorAssert.BitwiseEqual(eager.KEmbed, run.KEmbed, "k_embed vs eager", context);
        TensorAssert.BitwiseEqual(eager.Dq, run.Dq, "dq vs eager", context);
        TensorAssert.BitwiseEqual(eager.Dk, run.Dk, "dk vs eager", context);
    }
}

/// <summary>Where a tensor's first element lies (to tell shared memory from a copy).</summary>
internal static class TensorAddress
{
    internal static IntPtr Address(this Tensor tensor) => TorchInterop.DataPointer(tensor);
}
