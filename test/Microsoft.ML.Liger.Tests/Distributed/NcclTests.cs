using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Liger.Launch;
using Microsoft.ML.Liger.Tests.FineTuning;
using TorchSharp;

namespace Microsoft.ML.Liger.Tests.Distributed;

/// <summary>
/// The NCCL backend on the GPU host: the worker started by Liger.Launch, one rank per GPU, against the worker's own
/// single-process reference with the combined batch on cuda:0. Inconclusive without enough GPUs (or NCCL).
/// </summary>
[TestClass]
public sealed class NcclTests
{
    [TestMethod]
    [DataRow(1, 0), DataRow(1, 1), DataRow(2, 0), DataRow(2, 1)]
    public void NcclRanks_TrainLikeOneProcessWithTheCombinedBatch(int ranks, int zeroStage)
    {
        if (!torch.cuda.is_available() || torch.cuda.device_count() < ranks)
            Assert.Inconclusive($"needs {ranks} CUDA device(s): NCCL runs on the GPU host");
        var scenario = DataParallelTests.FreshScenario() with { ZeroStage = zeroStage };
        string reference = FineTuneFixtures.TempFolder("nccl-reference"), parallel = FineTuneFixtures.TempFolder("nccl");

        var single = Process.Start("dotnet", [MpiRunner.WorkerDll, .. scenario.ToArgs(), "--device", "cuda", "--reference", ranks.ToString(), "--out", reference])!;
        Assert.IsTrue(single.WaitForExit(TimeSpan.FromMinutes(3)) && single.ExitCode == 0, "the single-process reference ran");

        using var output = new StringWriter();
        var launch = new LaunchOptions(ranks, "127.0.0.1", FreePort(), ["dotnet", MpiRunner.WorkerDll, .. scenario.ToArgs(), "--device", "cuda", "--out", parallel]);
        int code = Launcher.Run(launch, output);
        Assert.AreEqual(0, code, output.ToString());

        var expected = DataParallelTests.Stored(reference, 0);
        for (int rank = 0; rank < ranks; rank++)
            foreach (var (name, weight) in DataParallelTests.Stored(parallel, rank))
                DataParallelTests.AssertClose(expected[name], weight, $"{name} on rank {rank} ({scenario})");
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }
}
