using Liger.Kernels.Kernels;
using Liger.Kernels.Ops;
using Liger.Kernels.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Liger.Kernels.Tests;

/// <summary>The runtime: where ops run, poisoning, views into larger storage, and devices it cannot serve.</summary>
[TestClass]
public sealed class RuntimeTests
{
    [TestMethod]
    public void Poison_IsOnForTheTestRun_AndFillsOutputsWithNaN()
    {
        using var scope = NewDisposeScope();
        Assert.IsTrue(Outputs.Poison, "the assembly set-up turns poisoning on");
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
        {
            var output = Outputs.EmptyLike(zeros([3, 7], dtype: dtype));
            Assert.AreEqual(21L, output.isnan().sum().item<long>(), $"every element of a fresh {dtype} output is NaN");
        }
    }

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void OpsReportThePathTheyRanOn(string path)
    {
        using var scope = NewDisposeScope();
        using var p = PathScope.Enter(path);
        var x = randn([2, 8], device: p.Device);
        _ = LigerRMSNormFunction.Apply(x, ones(8, device: p.Device));
        _ = LigerSiLUMulFunction.Apply(x, x.clone());
        var expected = new[] { ("rms_norm_forward", p.Expected), ("silu_mul_forward", p.Expected) };
        CollectionAssert.AreEqual(expected, p.Events.ToArray(), $"reports on path {path}");

        string description = LigerRuntime.Describe(x);
        string expectedText = path switch
        {
            TestPaths.Torch => "TorchSharp CPU path",
            TestPaths.Emulator => "ILGPU CPU accelerator",
            _ => "ILGPU CUDA kernels",
        };
        Assert.Contains(expectedText, description, $"Describe on path {path}");
    }

    [TestMethod]
    public void CpuExecution_IsRestoredByPathScopes()
    {
        var before = LigerRuntime.CpuExecution;
        using (PathScope.Enter(TestPaths.Emulator))
        {
            Assert.AreEqual(CpuExecution.IlgpuEmulator, LigerRuntime.CpuExecution);
            using (PathScope.Enter(TestPaths.Torch))
                Assert.AreEqual(CpuExecution.Torch, LigerRuntime.CpuExecution);
            Assert.AreEqual(CpuExecution.IlgpuEmulator, LigerRuntime.CpuExecution);
        }
        Assert.AreEqual(before, LigerRuntime.CpuExecution);
    }

    // ---- element codecs: the kernels' conversions must round as torch does (nearest, ties to even) ----

    [TestMethod]
    public void BFloat16Codec_RoundsLikeTorch() =>
        AssertCodecRoundsLikeTorch(ScalarType.BFloat16, v => new BFloat16Codec().Round(v));

    [TestMethod]
    public void Float16Codec_RoundsLikeTorch() =>
        AssertCodecRoundsLikeTorch(ScalarType.Float16, v => new Float16Codec().Round(v));

    /// <summary>
    /// Random values over many binades, values exactly halfway between two neighbours of the target type
    /// (ties) and a quarter of the way, subnormals of the target type and the overflow edge: the codec's
    /// fp32 → dtype → fp32 round trip must equal torch's .to(dtype).to(float32), bit for bit.
    /// </summary>
    private static void AssertCodecRoundsLikeTorch(ScalarType dtype, Func<float, float> round)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        var random = randn(4000) * exp2(randint(-20, 16, [4000]).to(ScalarType.Float32));
        // neighbours of the target type and points between them
        var grid = Inputs.Randn([1000], dtype, 4.0).to(ScalarType.Float32);
        var next = grid.to(dtype).to(ScalarType.Float32).nextafter(ScalarArithmetic.Full([1000], double.PositiveInfinity)).to(dtype).to(ScalarType.Float32);
        float[] specials = [0f, -0f, 1f, 65504f, 65520f, 65519.99f, 6.0e-8f, 3.0e-8f, 1e-6f, -1e-6f, 1e-40f, 3.3895314e38f, 1.0009765625f + 0.00048828125f];
        var values = cat([random, grid, (grid.Plus(next)).DividedBy(2), grid.Times(0.75f).Plus(next.Times(0.25f)), tensor(specials)]);
        var expected = values.to(dtype).to(ScalarType.Float32).data<float>().ToArray();
        var inputs = values.data<float>().ToArray();
        int mismatches = 0;
        string firstMismatch = "";
        for (int i = 0; i < inputs.Length; i++)
        {
            float actual = round(inputs[i]);
            if (BitConverter.SingleToInt32Bits(actual) != BitConverter.SingleToInt32Bits(expected[i]))
            {
                if (mismatches++ == 0)
                    firstMismatch = $"{inputs[i]:R} rounds to {actual:R}, torch gives {expected[i]:R}";
            }
        }
        Assert.AreEqual(0, mismatches, $"{dtype} codec: {mismatches} of {inputs.Length} values round differently from torch; first: {firstMismatch}. {Seeds.Describe(seed)}");
    }

    // ---- views that start inside a larger storage (the data pointer must include the storage offset) ----

    /// <summary>
    /// Rows: path, dtype, layout. "row37": x = big[1..] with 37 columns (scalar kernels); "row64": 64 columns,
    /// the view starts one row in, 16-byte aligned (vectorised kernels read through the view's pointer);
    /// "odd64": 64 columns but the view starts one element into a flat buffer, so its data is not 16-byte
    /// aligned and the ops must fall back to the scalar kernels.
    /// </summary>
    public static IEnumerable<object[]> ViewCases() =>
        from path in TestPaths.Names
        from dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 }
        from layout in new[] { "row37", "row64", "odd64" }
        select new object[] { path, dtype, layout };

    /// <summary>Columns and the element offsets (x/dy, weight) at which the views start.</summary>
    private static (long Cols, long Start, long WeightStart) Layout(string layout) => layout switch
    {
        "row37" => (37, 37, 3),
        "row64" => (64, 64, 8),
        "odd64" => (64, 1, 3),
        _ => throw new ArgumentException(layout, nameof(layout)),
    };

    /// <summary>A view of <paramref name="rows"/> x <paramref name="cols"/> elements starting at element <paramref name="start"/> of a flat buffer.</summary>
    private static Tensor ViewOf(Tensor flat, long start, long rows, long cols) => flat.narrow(0, start, rows * cols).view(rows, cols);

    [TestMethod]
    [DynamicData(nameof(ViewCases))]
    public void RmsNorm_OnViewsWithStorageOffset_EqualsFreshTensors(string path, ScalarType dtype, string layout)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        const long rows = 5;
        var (cols, start, weightStart) = Layout(layout);
        string context = Inputs.Describe(seed, path, dtype, layout, $"x, dy start at element {start}, weight at {weightStart}");
        long flat = start + rows * cols;
        var (xBig, wBig, gBig) = (Inputs.Randn([flat], dtype, 2.0), Inputs.Randn([weightStart + cols], dtype, 0.5, 1.0),
            Inputs.Randn([flat], dtype));

        using var p = PathScope.Enter(path);
        var bigX = p.On(xBig).requires_grad_(true);
        var bigW = p.On(wBig).requires_grad_(true);
        var bigG = p.On(gBig);
        var x = ViewOf(bigX, start, rows, cols);
        var w = bigW.narrow(0, weightStart, cols);
        var g = ViewOf(bigG, start, rows, cols);
        Assert.IsTrue(x.is_contiguous() && w.is_contiguous() && g.is_contiguous(), "precondition: contiguous views");
        Assert.AreEqual(start, x.storage_offset(), "precondition: x starts inside its storage");
        Assert.AreEqual(weightStart, w.storage_offset(), "precondition: weight starts inside its storage");
        var y = LigerRMSNormFunction.Apply(x, w, 1e-6, 0, RmsNormCastingMode.Llama);
        y.backward([g]);
        p.AssertRan("rms_norm_forward", "rms_norm_backward");

        // the same data as fresh tensors
        var (xFresh, wFresh, gFresh) = (ViewOf(xBig, start, rows, cols), wBig.narrow(0, weightStart, cols), ViewOf(gBig, start, rows, cols));
        var fresh = RmsNormTests.Run(path, xFresh, wFresh, gFresh, 1e-6, 0, RmsNormCastingMode.Llama, inPlace: false);
        var reference = References.RmsNorm(xFresh, wFresh, gFresh, 1e-6, 0);
        var (viewDx, viewDw) = (ViewOf(bigX.grad!, start, rows, cols), bigW.grad!.narrow(0, weightStart, cols));
        if (layout == "odd64")
        {
            // the misaligned views take the scalar kernels, the fresh (aligned) tensors the vectorised ones:
            // the same rounding, another fp32 summation order
            var same = Tolerance.SameRounding(dtype);
            TensorAssert.Close(y, fresh.Y, same, "y on views", context);
            TensorAssert.Close(viewDx, fresh.Dx, same, "dx on views", context, scale: reference.DxScale);
            TensorAssert.Close(viewDw, fresh.Dw, same, "dW on views", context, scale: reference.DwScale,
                termMagnitude: reference.DwTerms);
        }
        else
        {
            TensorAssert.BitwiseEqual(fresh.Y, y, "y on views", context);
            TensorAssert.BitwiseEqual(fresh.Dx, viewDx, "dx on views", context);
            TensorAssert.BitwiseEqual(fresh.Dw, viewDw, "dW on views", context);
        }
        TensorAssert.BitwiseEqual(zeros([start], dtype: dtype), bigX.grad!.narrow(0, 0, start), "gradient outside the view", context);
        TensorAssert.BitwiseEqual(gBig, bigG, "upstream gradient storage (out-of-place backward)", context);
        var tolerance = Tolerance.VersusFloat64(dtype);
        TensorAssert.Close(y, reference.Y, tolerance, "y", context);
        TensorAssert.Close(viewDx, reference.Dx, tolerance, "dx", context, scale: reference.DxScale);
        TensorAssert.Close(viewDw, reference.Dw, tolerance, "dW", context, scale: reference.DwScale,
            termMagnitude: reference.DwTerms);
    }

    [TestMethod]
    [DynamicData(nameof(ViewCases))]
    public void SwiGlu_OnViewsWithStorageOffset_EqualsFreshTensors(string path, ScalarType dtype, string layout)
    {
        using var scope = NewDisposeScope();
        long seed = Seeds.Fresh();
        const long rows = 5;
        var (cols, start, _) = Layout(layout);
        string context = Inputs.Describe(seed, path, dtype, layout, $"a starts at element {start}, b at {2 * start}, dc at {3 * start}");
        long n = rows * cols;
        var (aBig, bBig, cBig) = (Inputs.Randn([start + n], dtype, 3.0), Inputs.Randn([2 * start + n], dtype, 2.0),
            Inputs.Randn([3 * start + n], dtype));

        using var p = PathScope.Enter(path);
        var bigA = p.On(aBig).requires_grad_(true);
        var bigB = p.On(bBig).requires_grad_(true);
        var bigC = p.On(cBig);
        var (a, b, dc) = (ViewOf(bigA, start, rows, cols), ViewOf(bigB, 2 * start, rows, cols), ViewOf(bigC, 3 * start, rows, cols));
        Assert.AreEqual(start, a.storage_offset(), "precondition: a starts inside its storage");
        var c = LigerSiLUMulFunction.Apply(a, b);
        c.backward([dc]);
        p.AssertRan("silu_mul_forward", "silu_mul_backward");

        var (aFresh, bFresh, cFresh) = (ViewOf(aBig, start, rows, cols), ViewOf(bBig, 2 * start, rows, cols), ViewOf(cBig, 3 * start, rows, cols));
        var fresh = new SwiGluTests().Run(path, aFresh, bFresh, cFresh);
        TensorAssert.BitwiseEqual(fresh.C, c, "c on views", context);
        TensorAssert.BitwiseEqual(fresh.Da, ViewOf(bigA.grad!, start, rows, cols), "da on views", context);
        TensorAssert.BitwiseEqual(fresh.Db, ViewOf(bigB.grad!, 2 * start, rows, cols), "db on views", context);
        TensorAssert.BitwiseEqual(zeros([start], dtype: dtype), bigA.grad!.narrow(0, 0, start), "gradient outside the view", context);
        var reference = References.SwiGlu(aFresh, bFresh, cFresh);
        var tolerance = Tolerance.VersusFloat64(dtype);
        TensorAssert.Close(c, reference.C, tolerance, "c", context);
        TensorAssert.Close(fresh.Da, reference.Da, tolerance, "da", context);
        TensorAssert.Close(fresh.Db, reference.Db, tolerance, "db", context);
    }

    // ---- TorchSharp's per-output cache on custom autograd nodes ----

    [TestMethod]
    [DynamicData(nameof(TestPaths.All), typeof(TestPaths))]
    public void AutogradOutputCopies_AreReleasedAfterEachApply(string path)
    {
        using var scope = NewDisposeScope();
        Assert.IsTrue(AutogradOutputCache.Supported, "TorchSharp's AutogradContext._node field is where the ops expect it");
        using var p = PathScope.Enter(path);
        var x = randn([3, 16], device: p.Device, requires_grad: true);
        var w = randn([16], device: p.Device, requires_grad: true);
        var y = LigerRMSNormFunction.Apply(x, w);
        Assert.AreEqual(1, AutogradOutputCache.LastReleasedCount, "RMSNorm: the node's copy of its one output is disposed");
        var c = LigerSiLUMulFunction.Apply(y, x.Times(1));
        Assert.AreEqual(1, AutogradOutputCache.LastReleasedCount, "SwiGLU: the node's copy of its one output is disposed");
        // the graph still differentiates through both nodes once the copies are gone
        c.sum().backward();
        p.AssertRan("rms_norm_forward", "silu_mul_forward", "silu_mul_backward", "rms_norm_backward");
        TensorAssert.AssertFinite(x.grad!, "dx", path);
        TensorAssert.AssertFinite(w.grad!, "dW", path);
    }

    // ---- devices ----

    [TestMethod]
    public void CudaDevice_ThatDoesNotExist_ThrowsInvalidOperationExceptionNamingCuda()
    {
        // Without CUDA, device 0 does not exist; with CUDA, device 99 does not.
        int missing = TestPaths.CudaAvailable ? 99 : 0;
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => LigerRuntime.Cuda(missing));
        Assert.Contains("CUDA", e.Message);
        Assert.Contains(missing.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message);
        var negative = Assert.ThrowsExactly<InvalidOperationException>(() => LigerRuntime.Cuda(-1));
        Assert.Contains("CUDA", negative.Message);
    }

    [TestMethod]
    public void MetaTensors_AreRejectedWithTheArgumentName()
    {
        using var scope = NewDisposeScope();
        var x = empty([3, 8], device: META);
        var w = empty([8], device: META);
        Assert.AreEqual(DeviceType.META, x.device_type, "precondition: a meta tensor");
        var rms = Assert.ThrowsExactly<ArgumentException>(() => LigerRMSNormFunction.Apply(x, w));
        Assert.AreEqual("x", rms.ParamName);
        Assert.Contains("'x'", rms.Message);
        var swiglu = Assert.ThrowsExactly<ArgumentException>(() => LigerSiLUMulFunction.Apply(x, x.clone()));
        Assert.AreEqual("a", swiglu.ParamName);
        Assert.Contains("'a'", swiglu.Message);
        var direct = Assert.ThrowsExactly<ArgumentException>(() => LigerRuntime.KernelDeviceFor(x, "input"));
        Assert.AreEqual("input", direct.ParamName);
    }
}
