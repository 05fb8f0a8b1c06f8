using System.Reflection;
using Microsoft.ML.Liger.FineTuning;
using Microsoft.ML.Liger.Sweeps;

namespace Microsoft.ML.Liger.Tests.Sweeps;

/// <summary>Search spaces read from attributes: dimensions, defaults, grids, sampling, overrides, and malformed declarations named.</summary>
[TestClass]
public sealed class SearchSpaceTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void Attributes_BecomeDimensions_InDeclarationOrder_WithTheirTypesAndValues()
    {
        var space = new SearchSpace<MixedSpace>();
        CollectionAssert.AreEqual(new[] { "Width", "Scale", "Rate", "Depth", "Optimizer", "Flag", "Mixed" }, space.Dimensions.Select(d => d.Name).ToArray());
        var byName = space.Dimensions.ToDictionary(d => d.Name);
        CollectionAssert.AreEqual(new object[] { 3, 5, 7 }, byName["Width"].Choices!.ToArray());
        CollectionAssert.AreEqual(new object[] { 1.0, 2.5 }, byName["Mixed"].Choices!.ToArray(), "an int choice on a double property becomes a double");
        Assert.AreEqual(typeof(double), byName["Mixed"].ValueType);
        Assert.IsTrue(byName["Rate"].IsRange && byName["Rate"].LogBase);
        Assert.AreEqual(1e-6, byName["Rate"].Min);
        Assert.AreEqual(1e-1, byName["Rate"].Max);
        Assert.AreEqual(typeof(int), byName["Depth"].ValueType);
        Assert.IsFalse(byName["Scale"].LogBase);
        Assert.IsFalse(space.Dimensions.Any(d => d.Name == nameof(MixedSpace.NotSwept)), "a property without an attribute is no dimension");
    }

    [TestMethod]
    public void Default_KeepsInitialValuesInTheSpace_AndFallsBackOtherwise()
    {
        var value = new SearchSpace<MixedSpace>().Default;
        Assert.AreEqual(5, value.Width);
        Assert.AreEqual(1e-3, value.Rate);
        Assert.AreEqual("sgd, momentum", value.Optimizer);
        Assert.AreEqual(2.5, value.Mixed);
        Assert.AreEqual((0.25 + 4.0) / 2, value.Scale, 1e-12, "9.0 is outside [0.25, 4]: the middle");
        Assert.AreEqual(11, value.NotSwept);
    }

    [TestMethod]
    [DataRow(typeof(ChoiceOfDoublesOnInt), "Count", "Int32")]
    [DataRow(typeof(RangeOnBool), "Enabled", "Boolean")]
    [DataRow(typeof(LogRangeFromZero), "Rate", "min > 0")]
    [DataRow(typeof(ReversedRange), "Layers", "min < max")]
    [DataRow(typeof(EmptyChoice), "Heads", "at least one value")]
    [DataRow(typeof(RepeatedChoice), "Batch", "twice")]
    [DataRow(typeof(BothAttributes), "Steps", "both")]
    [DataRow(typeof(GetterOnly), "Frozen", "settable")]
    [DataRow(typeof(UnsupportedType), "Tokens", "Int64")]
    [DataRow(typeof(FractionalRangeOnInt), "Blocks", "integer ends")]
    [DataRow(typeof(StringInIntChoice), "Mode", "String")]
    public void MalformedDeclaration_Throws_NamingTheProperty(Type parameters, string property, string expected)
    {
        var error = Assert.ThrowsExactly<ArgumentException>(() => Construct(parameters));
        StringAssert.Contains(error.Message, $"{parameters.Name}.{property}");
        StringAssert.Contains(error.Message, expected);
        Assert.AreEqual(property, error.ParamName);
    }

    [TestMethod]
    public void Overrides_ReplaceOrAddDimensions_AndCheckTheirValues()
    {
        var original = new SearchSpace<MixedSpace>();
        var space = original.WithChoice(nameof(MixedSpace.Width), 11, 13).WithRange(nameof(MixedSpace.NotSwept), 1, 4);
        CollectionAssert.AreEqual(new object[] { 11, 13 }, space.Dimensions[0].Choices!.ToArray(), "replaced in place");
        Assert.AreEqual(nameof(MixedSpace.NotSwept), space.Dimensions[^1].Name, "added last");
        CollectionAssert.AreEqual(new object[] { 3, 5, 7 }, original.Dimensions[0].Choices!.ToArray(), "the original space is unchanged");

        var unknown = Assert.ThrowsExactly<ArgumentException>(() => original.WithChoice("Widht", 1));
        StringAssert.Contains(unknown.Message, "Widht");
        var wrongType = Assert.ThrowsExactly<ArgumentException>(() => original.WithChoice(nameof(MixedSpace.Flag), "yes"));
        StringAssert.Contains(wrongType.Message, "MixedSpace.Flag");
        var badRange = Assert.ThrowsExactly<ArgumentException>(() => original.WithRange(nameof(MixedSpace.Rate), -1.0, 1.0, logBase: true));
        StringAssert.Contains(badRange.Message, "MixedSpace.Rate");
    }

    [TestMethod]
    public void Grid_IsTheProductOfEachDimensionsValues_FirstDimensionSlowest_EachPointOnce()
    {
        int points = 4 + Random.Shared.Next(3); // 4 to 6 per range
        TestContext.WriteLine($"points per range {points}");
        var grid = new SearchSpace<MixedSpace>().Grid(points).ToList();

        // Independent reference: the values each dimension should contribute, and their product in nested-loop order.
        double[] Linear(double a, double b) => Enumerable.Range(0, points).Select(i => a + (b - a) * i / (points - 1)).ToArray();
        double[] Log(double a, double b) => Enumerable.Range(0, points).Select(i => Math.Pow(10, Math.Log10(a) + (Math.Log10(b) - Math.Log10(a)) * i / (points - 1))).ToArray();
        int[] depths = Linear(2, 9).Select(x => (int)Math.Round(x)).Distinct().ToArray();
        var expected = (from w in new[] { 3, 5, 7 }
                        from s in Linear(0.25, 4.0)
                        from r in Log(1e-6, 1e-1)
                        from d in depths
                        from o in new[] { "adam", "sgd, momentum" }
                        from f in new[] { false, true }
                        from m in new[] { 1.0, 2.5 }
                        select (w, s, r, d, o, f, m)).ToList();
        Assert.HasCount(expected.Count, grid);
        for (int i = 0; i < grid.Count; i++)
        {
            var (w, s, r, d, o, f, m) = expected[i];
            var g = grid[i];
            Assert.AreEqual(w, g.Width, $"point {i}");
            Assert.AreEqual(s, g.Scale, 1e-12 * s, $"point {i}");
            Assert.AreEqual(r, g.Rate, 1e-9 * r, $"point {i}");
            Assert.AreEqual((d, o, f, m), (g.Depth, g.Optimizer, g.Flag, g.Mixed), $"point {i}");
            Assert.AreEqual(11, g.NotSwept);
        }
        Assert.AreEqual(1e-6, grid.Min(g => g.Rate), "the ends are exact");
        Assert.AreEqual(4.0, grid.Max(g => g.Scale));
    }

    [TestMethod]
    public void Grid_OfAnIntegerRange_DropsRoundedRepeats_AndOnePointIsTheMiddle()
    {
        int low = 2 + Random.Shared.Next(5), high = low + 2;
        var space = new SearchSpace<MixedSpace>().WithRange(nameof(MixedSpace.Depth), low, high);
        var depths = space.Grid(9).Select(g => g.Depth).Distinct().ToArray();
        CollectionAssert.AreEqual(new[] { low, low + 1, high }, depths);
        Assert.AreEqual(space.Grid(9).Count(), space.Grid(9).Select(g => (g.Width, g.Scale, g.Rate, g.Depth, g.Optimizer, g.Flag, g.Mixed)).Distinct().Count(), "no point twice");

        var middle = new SearchSpace<MixedSpace>().Grid(1).Select(g => g.Rate).Distinct().Single();
        Assert.AreEqual(Math.Sqrt(1e-6 * 1e-1), middle, 1e-12, "one point of a log range: the geometric middle");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new SearchSpace<MixedSpace>().Grid(0).ToList());
    }

    [TestMethod]
    public void Sample_IsSeeded_AndStaysInTheSpace_LogRangesSpreadOverDecades()
    {
        int seed = Random.Shared.Next();
        TestContext.WriteLine($"seed {seed}");
        var space = new SearchSpace<MixedSpace>();
        var first = space.Sample(new Random(seed));
        var a = new Random(seed);
        var b = new Random(seed);
        var samples = Enumerable.Range(0, 4000).Select(_ => space.Sample(a)).ToList();
        var again = Enumerable.Range(0, 4000).Select(_ => space.Sample(b)).ToList();
        Assert.IsTrue(samples.Zip(again).All(p => Same(p.First, p.Second)), "the same seed gives the same points");
        Assert.IsTrue(Same(first, samples[0]));
        var other = new Random(seed + 1);
        Assert.IsFalse(samples.Take(20).Zip(Enumerable.Range(0, 20).Select(_ => space.Sample(other))).All(p => Same(p.First, p.Second)), "another seed, other points");

        Assert.IsTrue(samples.All(s => s.Width is 3 or 5 or 7 && s.Optimizer is "adam" or "sgd, momentum" && s.Mixed is 1.0 or 2.5));
        Assert.IsTrue(samples.All(s => s.Scale >= 0.25 && s.Scale <= 4.0 && s.Rate >= 1e-6 && s.Rate <= 1e-1 && s.Depth >= 2 && s.Depth <= 9));
        CollectionAssert.AreEquivalent(Enumerable.Range(2, 8).ToArray(), samples.Select(s => s.Depth).Distinct().ToArray(), "every integer of [2, 9] comes up");
        Assert.IsTrue(samples.All(s => s.NotSwept == 11));

        // Log-uniform: each of the five decades of [1e-6, 1e-1] holds a fifth (binomial sd ≈ 0.0063 at n = 4000; 5 sd allowed).
        for (int decade = -6; decade < -1; decade++)
        {
            double share = samples.Count(s => s.Rate >= Math.Pow(10, decade) && s.Rate < Math.Pow(10, decade + 1)) / (double)samples.Count;
            Assert.AreEqual(0.2, share, 0.032, $"decade 1e{decade}");
        }
        // Linear: the upper half of [0.25, 4] holds half.
        Assert.AreEqual(0.5, samples.Count(s => s.Scale > 2.125) / (double)samples.Count, 0.04);
    }

    [TestMethod]
    public void Create_RebuildsTheClassFromATrialsParameters_AndRefusesPointsOutsideTheSpace()
    {
        var space = new SearchSpace<MixedSpace>();
        var sample = space.Sample(new Random(Random.Shared.Next()));
        var point = space.Dimensions.ToDictionary(d => d.Name, d => typeof(MixedSpace).GetProperty(d.Name)!.GetValue(sample)!);
        Assert.IsTrue(Same(sample, space.Create(point)));

        point["Depth"] = 10;
        var error = Assert.ThrowsExactly<ArgumentException>(() => space.Create(point));
        StringAssert.Contains(error.Message, "MixedSpace.Depth");
        point.Remove("Depth");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => space.Create(point)).Message, "MixedSpace.Depth");
    }

    [TestMethod]
    public void FineTuneSearchSpace_DeclaresTheSixFineTuningOptions_AndItsDefaultsAreTheOptionsDefaults()
    {
        var space = new SearchSpace<FineTuneCausalLMSearchSpace>();
        CollectionAssert.AreEqual(
            new[] { "MaxContextLength", "BatchSize", "GradientAccumulationSteps", "LearningRate", "GradientCheckpointing", "Liger" },
            space.Dimensions.Select(d => d.Name).ToArray());
        var defaults = space.Default;
        var options = new FineTuneCausalLMOptions();
        Assert.AreEqual((options.MaxContextLength, options.BatchSize, options.GradientAccumulationSteps, options.LearningRate, options.GradientCheckpointing),
            (defaults.MaxContextLength, defaults.BatchSize, defaults.GradientAccumulationSteps, defaults.LearningRate, defaults.GradientCheckpointing));
        Assert.IsTrue(defaults.Liger);
        var rate = space.Dimensions.Single(d => d.Name == "LearningRate");
        Assert.IsTrue(rate.LogBase && rate.Min == 1e-5 && rate.Max == 1e-2);
    }

    private static bool Same(MixedSpace x, MixedSpace y) =>
        (x.Width, x.Scale, x.Rate, x.Depth, x.Optimizer, x.Flag, x.Mixed, x.NotSwept) == (y.Width, y.Scale, y.Rate, y.Depth, y.Optimizer, y.Flag, y.Mixed, y.NotSwept);

    private static object Construct(Type parameters)
    {
        try
        {
            return Activator.CreateInstance(typeof(SearchSpace<>).MakeGenericType(parameters))!;
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            throw e.InnerException;
        }
    }
}
