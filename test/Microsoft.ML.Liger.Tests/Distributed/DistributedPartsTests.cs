using Liger.Kernels.Runtime;
using Microsoft.ML.Liger.Distributed;
using Microsoft.ML.Liger.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Liger.Tests.Distributed;

/// <summary>The data-parallel pieces on their own, in this process: options, sampler, partition, buckets, library errors.</summary>
[TestClass]
public sealed class DistributedPartsTests
{
    [TestMethod]
    public void FromEnvironment_ReadsTorchrunThenOpenMpiVariables()
    {
        var torchrun = new Dictionary<string, string> { ["RANK"] = "3", ["WORLD_SIZE"] = "4", ["LOCAL_RANK"] = "1", ["MASTER_ADDR"] = "10.0.0.2", ["MASTER_PORT"] = "29611",
            ["OMPI_COMM_WORLD_SIZE"] = "9" };
        var options = DistributedOptions.FromVariables(n => torchrun.GetValueOrDefault(n))!;
        Assert.AreEqual((3, 4, 1, "10.0.0.2", 29611, DistributedBackend.Auto),
            (options.Rank, options.WorldSize, options.LocalRank, options.MasterAddress, options.MasterPort, options.Backend), "torchrun's variables win");

        var mpi = new Dictionary<string, string> { ["OMPI_COMM_WORLD_RANK"] = "1", ["OMPI_COMM_WORLD_SIZE"] = "2", ["OMPI_COMM_WORLD_LOCAL_RANK"] = "1" };
        options = DistributedOptions.FromVariables(n => mpi.GetValueOrDefault(n))!;
        Assert.AreEqual((1, 2, 1, DistributedBackend.Mpi), (options.Rank, options.WorldSize, options.LocalRank, options.Backend));

        Assert.IsNull(DistributedOptions.FromVariables(_ => null), "no variables: a single-process run");
        var bad = Assert.ThrowsExactly<ArgumentException>(() => DistributedOptions.FromVariables(n => n == "WORLD_SIZE" ? "two" : null));
        StringAssert.Contains(bad.Message, "WORLD_SIZE");
        var noRank = Assert.ThrowsExactly<ArgumentException>(() => DistributedOptions.FromVariables(n => n == "WORLD_SIZE" ? "2" : null));
        Assert.AreEqual("RANK", noRank.ParamName);
    }

    [TestMethod]
    [DataRow(0, 0, "WorldSize"), DataRow(3, 3, "Rank"), DataRow(-1, 2, "Rank")]
    public void Validate_NamesBadRankOrWorldSize(int rank, int worldSize, string option)
    {
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new DistributedOptions { Rank = rank, WorldSize = worldSize }.Validate());
        Assert.AreEqual(option, e.ParamName);
        StringAssert.Contains(e.Message, option);
        var training = new CausalLMTrainingOptions { Distributed = new DistributedOptions { ZeroStage = 2 } };
        Assert.AreEqual("ZeroStage", Assert.ThrowsExactly<ArgumentOutOfRangeException>(training.Validate).ParamName, "the training options validate theirs");
    }

    [TestMethod]
    public void SamplerRows_PartitionEveryBatchInRankOrder()
    {
        var random = new Random();
        for (int trial = 0; trial < 200; trial++)
        {
            int rows = random.Next(0, 50), parts = random.Next(1, 9);
            int next = 0;
            for (int part = 0; part < parts; part++)
            {
                var (start, end) = DistributedSampler.Rows(rows, part, parts);
                Assert.AreEqual(next, start, $"{rows} rows in {parts}: part {part} starts where the last ended");
                Assert.IsTrue(end - start == rows / parts || end - start == rows / parts + 1, $"{rows} rows in {parts}: part {part} has {end - start}");
                next = end;
            }
            Assert.AreEqual(rows, next, "every row is taken");
        }
        Assert.AreEqual("part", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => DistributedSampler.Rows(4, 2, 2)).ParamName);
    }

    [TestMethod]
    [DataRow(false), DataRow(true)]
    public void PlanShards_HoldEachGlobalBatchsRowsOnce_WithTheirTargets(bool packing)
    {
        var random = new Random();
        var examples = Enumerable.Range(0, random.Next(20, 40)).Select(_ =>
            new TokenizedExample(Enumerable.Range(0, 2 + random.Next(15)).Select(_ => 2 + random.Next(60)).ToArray(), random.Next(3))).ToList();
        const int worldSize = 3;
        var options = new CausalLMTrainingOptions
        {
            BatchSize = 2, GradientAccumulationSteps = 2, MaxContextLength = 12, Packing = packing, Epochs = 2,
            Distributed = new DistributedOptions { WorldSize = worldSize },
        };
        var plan = new BatchPlan(examples, options, padId: 0, separatorId: 1);
        var single = new BatchPlan(examples, new CausalLMTrainingOptions { BatchSize = 6, GradientAccumulationSteps = 2, MaxContextLength = 12, Packing = packing, Epochs = 2 }, 0, 1);
        Assert.AreEqual(single.TotalSteps, plan.TotalSteps, "W ranks of batch B step like one of batch W·B");
        for (int step = 0; step < plan.TotalSteps; step++)
        {
            var batches = plan.Step(step);
            for (int b = 0; b < batches.Count; b++)
            {
                var global = batches[b];
                CollectionAssert.AreEqual(single.Step(step)[b].InputIds, global.InputIds, $"step {step}: the same global batch as one rank with W·B");
                var shards = Enumerable.Range(0, worldSize).Select(r => plan.Shard(global, r, worldSize)).ToList();
                Assert.AreEqual(global.Rows, shards.Sum(s => s?.Rows ?? 0), "the shards' rows add up to the batch's");
                Assert.AreEqual(global.TargetTokens, shards.Sum(s => s?.TargetTokens ?? 0), "and their target tokens");
                Assert.AreEqual(global.InputTokens, shards.Sum(s => s?.InputTokens ?? 0), "and their real tokens");
                int row = 0;
                foreach (var shard in shards.Where(s => s is not null))
                    for (int r = 0; r < shard!.Rows; r++, row++)
                    {
                        var expected = global.InputIds.Skip(row * global.Length).Take(global.Length).Where((_, t) => global.AttentionMask[row * global.Length + t] == 1);
                        var actual = shard.InputIds.Skip(r * shard.Length).Take(shard.Length).Where((_, t) => shard.AttentionMask[r * shard.Length + t] == 1);
                        CollectionAssert.AreEqual(expected.ToList(), actual.ToList(), $"step {step} batch {b}: global row {row} is the shards' row {row}, in rank order");
                    }
            }
        }
    }

    [TestMethod]
    public void ZeroPartition_BalancesElementsWithinOneParameter()
    {
        var random = new Random();
        for (int trial = 0; trial < 50; trial++)
        {
            var sizes = Enumerable.Range(0, random.Next(1, 40)).Select(_ => (long)random.Next(1, 5000)).ToArray();
            int ranks = random.Next(1, 6);
            var owners = ParameterPartition.Balance(sizes, ranks);
            CollectionAssert.AreEqual(owners, ParameterPartition.Balance(sizes, ranks), "the same split on every rank");
            var load = Enumerable.Range(0, ranks).Select(r => sizes.Where((_, i) => owners[i] == r).Sum()).ToArray();
            Assert.IsLessThanOrEqualTo(sizes.Max(), load.Max() - load.Min(), $"loads {string.Join(", ", load)}");
        }
    }

    [TestMethod]
    public void GradientBuckets_SumEveryGradient_KeepUnreachedOnesNull_AndRespectTheCap()
    {
        var parameters = new[] { 300, 7, 1000, 45 }.Select(n => new TorchSharp.Modules.Parameter(randn(n), requires_grad: true)).ToArray();
        var grads = parameters.Take(3).Select(p => randn(p.shape)).ToArray();
        for (int i = 0; i < 3; i++)
            parameters[i].grad = grads[i].clone();
        // Two ranks with the same gradients, and the last parameter reached by neither.
        var two = new ScaledCollectives(2);
        var buckets = new GradientBuckets(parameters, two, bucketMegabytes: 1200 * 4 / (1024.0 * 1024.0));
        Assert.AreEqual(2, buckets.Count, "buckets of at most 1200 floats: [300, 7] and [1000, 45]");
        buckets.AllReduce();
        for (int i = 0; i < 3; i++)
            Assert.IsTrue(parameters[i].grad!.allclose(grads[i].Times(2)), $"gradient {i} summed");
        Assert.IsNull(parameters[3].grad, "a parameter no rank reached keeps no gradient");
        Assert.AreEqual(2, two.Calls, "one collective per bucket");
    }

    [TestMethod]
    public void MissingLibraries_AreNamedWithHowToPointAtThem()
    {
        var nccl = Assert.ThrowsExactly<DllNotFoundException>(() => NcclLibrary.LoadFrom(["/nonexistent/libnccl.so.2"]));
        StringAssert.Contains(nccl.Message, "libnccl.so.2");
        StringAssert.Contains(nccl.Message, NcclLibrary.PathVariable);
        var mpi = Assert.ThrowsExactly<DllNotFoundException>(() => MpiLibrary.LoadFrom(["/nonexistent/libmpi.so.40"]));
        StringAssert.Contains(mpi.Message, "libmpi.so.40");
        StringAssert.Contains(mpi.Message, MpiLibrary.PathVariable);
        StringAssert.Contains(mpi.Message, "openmpi");
    }

    [TestMethod]
    public void NcclOnTheCpu_IsRefusedNamingTheDevice()
    {
        var e = Assert.ThrowsExactly<ArgumentException>(() => NcclCollectives.Create(new DistributedOptions { Backend = DistributedBackend.Nccl }, CPU));
        StringAssert.Contains(e.Message, "CUDA device");
        StringAssert.Contains(e.Message, "Mpi");
    }

    /// <summary>Stands in for <c>ranks</c> ranks that all hold this rank's tensors.</summary>
    private sealed class ScaledCollectives(int ranks) : Collectives
    {
        public int Calls { get; private set; }
        public override int Rank => 0;
        public override int WorldSize => ranks;
        public override DistributedBackend Backend => DistributedBackend.Mpi;

        public override void AllReduce(Tensor tensor, ReduceOperation operation = ReduceOperation.Sum)
        {
            Calls++;
            if (operation == ReduceOperation.Sum)
                tensor.TimesInPlace(ranks);
        }

        public override void Broadcast(Tensor tensor, int root) { }
        public override void Barrier() { }
        public override void Dispose() { }
    }
}
