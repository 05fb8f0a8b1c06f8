using System.Net;
using System.Net.Sockets;
using Microsoft.ML.Liger.Distributed;

namespace Microsoft.ML.Liger.Tests.Distributed;

/// <summary>The TCP rendezvous that hands NCCL's unique id from rank 0 to the others, with threads as ranks.</summary>
[TestClass]
public sealed class RendezvousTests
{
    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    private static DistributedOptions Rank(int rank, int worldSize, int port, double timeoutSeconds = 20) => new()
    {
        Rank = rank, WorldSize = worldSize, MasterPort = port, RendezvousTimeout = TimeSpan.FromSeconds(timeoutSeconds),
    };

    [TestMethod]
    public void RankZerosId_ReachesEveryRank()
    {
        int port = FreePort(), worldSize = 4;
        var id = new byte[128];
        Random.Shared.NextBytes(id);
        int created = 0;
        // The others start first: they must wait for rank 0 to listen.
        var ranks = Enumerable.Range(0, worldSize).Reverse().Select(r => Task.Run(() => Rendezvous.Exchange(Rank(r, worldSize, port), () =>
        {
            Interlocked.Increment(ref created);
            return id;
        }))).ToArray();
        Assert.IsTrue(Task.WaitAll(ranks, TimeSpan.FromSeconds(30)), "every rank returned");
        foreach (var rank in ranks)
            CollectionAssert.AreEqual(id, rank.Result);
        Assert.AreEqual(1, created, "only rank 0 creates the id");
    }

    [TestMethod]
    public void NoRankZero_TimesOutNamingTheAddress()
    {
        int port = FreePort();
        var e = Assert.ThrowsExactly<TimeoutException>(() => Rendezvous.Exchange(Rank(1, 2, port, 1.5), () => throw new InvalidOperationException("only rank 0 creates")));
        StringAssert.Contains(e.Message, $"127.0.0.1:{port}");
        StringAssert.Contains(e.Message, "rank 1");
    }

    [TestMethod]
    public void MissingRanks_AreNamedByRankZero()
    {
        int port = FreePort();
        var joined = Task.Run(() => Rendezvous.Exchange(Rank(2, 3, port, 1.5), () => []));
        var e = Assert.ThrowsExactly<TimeoutException>(() => Rendezvous.Exchange(Rank(0, 3, port, 1.5), () => new byte[128]));
        StringAssert.Contains(e.Message, "rank(s) 1 of 3");
        StringAssert.Contains(e.Message, $"127.0.0.1:{port}");
        Assert.ThrowsExactly<AggregateException>(() => joined.Wait(TimeSpan.FromSeconds(10)), "the rank that came is not left hanging");
    }

    [TestMethod]
    public void DisagreeingWorldSize_IsRefusedOnBothSides()
    {
        int port = FreePort();
        var other = Task.Run(() => Rendezvous.Exchange(Rank(1, 3, port), () => []));
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => Rendezvous.Exchange(Rank(0, 2, port), () => new byte[128]));
        StringAssert.Contains(e.Message, "world size is 3");
        var refused = Assert.ThrowsExactly<AggregateException>(() => other.Wait(TimeSpan.FromSeconds(10)));
        StringAssert.Contains(refused.InnerException!.Message, "world size is 3, rank 0 says 2");
    }
}
