using System.Diagnostics;
using Liger.Launch;

namespace Microsoft.ML.Liger.Tests.Distributed;

/// <summary>Liger.Launch: torchrun's environment for each rank, rank-prefixed output, and a failure stopping the others.</summary>
[TestClass]
public sealed class LauncherTests
{
    [TestMethod]
    public void EachRank_GetsTorchrunsEnvironment_AndItsOutputIsPrefixed()
    {
        int ranks = Random.Shared.Next(2, 5), port = Random.Shared.Next(20000, 40000);
        var options = LaunchOptions.Parse(["--nproc-per-node", ranks.ToString(), "--master-addr", "10.1.2.3", $"--master-port={port}", "--",
            "sh", "-c", "echo \"$RANK $LOCAL_RANK $WORLD_SIZE $LOCAL_WORLD_SIZE $MASTER_ADDR $MASTER_PORT\""]);
        using var output = new StringWriter();
        Assert.AreEqual(0, Launcher.Run(options, output));
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Order().ToList();
        CollectionAssert.AreEqual(Enumerable.Range(0, ranks).Select(r => $"[rank {r}] {r} {r} {ranks} {ranks} 10.1.2.3 {port}").ToList(), lines);
    }

    [TestMethod]
    public void AFailingRank_StopsTheOthers_AndItsCodeIsReturned()
    {
        int code = Random.Shared.Next(3, 100);
        var options = LaunchOptions.Parse(["--nproc-per-node", "3", "--", "sh", "-c", $"if [ $RANK = 2 ]; then echo bye; exit {code}; fi; sleep 60"]);
        using var output = new StringWriter();
        var clock = Stopwatch.StartNew();
        Assert.AreEqual(code, Launcher.Run(options, output));
        Assert.IsLessThan(30, clock.Elapsed.TotalSeconds, "the sleeping ranks were stopped, not waited for");
        StringAssert.Contains(output.ToString(), "[rank 2] bye");
        StringAssert.Contains(output.ToString(), $"rank 2 exited with code {code}");
    }

    [TestMethod]
    [DataRow("--nproc-per-node", "0", "--nproc-per-node"), DataRow("--master-port", "70000", "--master-port"), DataRow("--bogus", "1", "--bogus")]
    public void BadArguments_AreNamed(string name, string value, string named)
    {
        var e = Assert.ThrowsExactly<ArgumentException>(() => LaunchOptions.Parse([name, value, "--", "true"]));
        Assert.AreEqual(named, e.ParamName);
        Assert.ThrowsExactly<ArgumentException>(() => LaunchOptions.Parse(["--nproc-per-node", "2"]), "no program");
    }
}
