using System.Diagnostics;
using System.Reflection;
using Liger.Kernels.Runtime;
using TorchSharp;

namespace Liger.Kernels.Tests;

/// <summary>The start-up check: reading libtorch's version from each install layout, the messages, and this machine's libtorch.</summary>
[TestClass]
public sealed class TorchRuntimeCheckTests
{
    private static string NewFolder()
    {
        string folder = Path.Combine(Path.GetTempPath(), "liger-torchcheck-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        return folder;
    }

    private static string Library(string folder)
    {
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, "libtorch_cpu.so");
        File.WriteAllBytes(path, []);
        return path;
    }

    [TestMethod]
    public void Version_IsReadFromPythonTorch_LibtorchZip_AndNuGetFolders()
    {
        string root = NewFolder();
        try
        {
            // pip's torch: torch/lib/libtorch_cpu.so beside torch/version.py
            string pip = Library(Path.Combine(root, "site-packages", "torch", "lib"));
            File.WriteAllText(Path.Combine(root, "site-packages", "torch", "version.py"),
                "from typing import Optional\n__version__ = '2.11.0+cu130'\ndebug = False\ncuda: Optional[str] = '13.0'\nhip: Optional[str] = None\n");
            Assert.AreEqual(new LibTorchVersion("2.11.0+cu130", "13.0", Path.Combine(root, "site-packages", "torch", "version.py")), LibTorchVersion.Of(pip));

            string pipCpu = Library(Path.Combine(root, "cpu-env", "torch", "lib"));
            File.WriteAllText(Path.Combine(root, "cpu-env", "torch", "version.py"), "__version__ = '2.9.1+cpu'\ncuda: Optional[str] = None\n");
            Assert.AreEqual(("2.9.1+cpu", (string?)null), (LibTorchVersion.Of(pipCpu)!.Version, LibTorchVersion.Of(pipCpu)!.CudaVersion));

            // the libtorch zip: libtorch/lib/ beside libtorch/build-version
            string zip = Library(Path.Combine(root, "libtorch", "lib"));
            File.WriteAllText(Path.Combine(root, "libtorch", "build-version"), "2.10.0+cu128\n");
            Assert.AreEqual(("2.10.0+cu128", "12.8"), (LibTorchVersion.Of(zip)!.Version, LibTorchVersion.Of(zip)!.CudaVersion));

            // NuGet's global packages folder
            string cuda = Library(Path.Combine(root, "libtorch-cuda-12.8-linux-x64-part3-primary", "2.10.0", "runtimes", "linux-x64", "native"));
            Assert.AreEqual(("2.10.0", "12.8"), (LibTorchVersion.Of(cuda)!.Version, LibTorchVersion.Of(cuda)!.CudaVersion));
            string cpu = Library(Path.Combine(root, "libtorch-cpu-linux-x64", "2.7.1", "runtimes", "linux-x64", "native"));
            Assert.AreEqual(("2.7.1", (string?)null), (LibTorchVersion.Of(cpu)!.Version, LibTorchVersion.Of(cpu)!.CudaVersion));

            // nothing beside it tells
            Assert.IsNull(LibTorchVersion.Of(Library(Path.Combine(root, "opt", "lib"))));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [TestMethod]
    public void Version_OfAnAppsCopy_ComesFromTheDepsFile()
    {
        const string cuda = """
            {"targets": {".NETCoreApp,Version=v10.0": {
              "TorchSharp/0.107.0": {"native": {"runtimes/linux-x64/native/libLibTorchSharp.so": {}}},
              "libtorch-cuda-12.8-linux-x64-part2/2.10.0": {"native": {"runtimes/linux-x64/native/libtorch_cpu.so": {}}}
            }}}
            """;
        Assert.AreEqual(new LibTorchVersion("2.10.0", "12.8", "deps.json"), LibTorchVersion.FromDeps(cuda));
        // A portable (RID-agnostic) build lists natives under runtimeTargets; the package key is the same.
        const string cpu = """
            {"targets": {".NETCoreApp,Version=v10.0": {
              "libtorch-cpu-linux-x64/2.7.1": {"runtimeTargets": {"runtimes/linux-x64/native/libtorch_cpu.so": {"rid": "linux-x64", "assetType": "native"}}}
            }}}
            """;
        Assert.AreEqual(new LibTorchVersion("2.7.1", null, "deps.json"), LibTorchVersion.FromDeps(cpu));
        Assert.IsNull(LibTorchVersion.FromDeps("""{"targets": {"x": {"TorchSharp/0.107.0": {}}}}"""), "published with LigerTorchRuntime=none");
    }

    [TestMethod]
    public void VersionWarning_OnlyForAnotherMinor_AndNamesBothVersionsAndTheFix()
    {
        var host = new LibTorchVersion("2.11.0+cu130", "13.0", "/py/torch/version.py");
        string? warning = TorchRuntimeMessages.VersionWarning("0.107.0", "2.10.0", host, "/py/torch/lib/libtorch_cpu.so");
        Assert.IsNotNull(warning);
        foreach (string part in new[] { "TorchSharp 0.107.0", "libtorch 2.10.0", "2.11.0+cu130", "/py/torch/lib/libtorch_cpu.so", "PyTorch 2.10.x", "TorchSharp-cuda-linux 0.107.0" })
            StringAssert.Contains(warning, part);

        Assert.IsNull(TorchRuntimeMessages.VersionWarning("0.107.0", "2.10.0", host with { Version = "2.10.1+cu128" }, "x"), "a patch release is the same pairing");
        Assert.IsNull(TorchRuntimeMessages.VersionWarning("0.107.0", "2.10.0", null, null), "an unknown version is not a mismatch");
        Assert.IsNotNull(TorchRuntimeMessages.VersionWarning("0.107.0", "2.10.0", host with { Version = "3.10.0" }, "x"), "another major");
    }

    [TestMethod]
    public void LoadFailure_NamesTheCpuAndCudaPackages_AndTheLoadersReason()
    {
        // .NET's message as it came on Debian 12 without build/PatchLibTorchSharp.targets (paths shortened)
        const string dotnet = "Unable to load shared library 'LibTorchSharp' or one of its dependencies. In order to help diagnose loading problems, consider using a tool like strace.\n" +
            "/app/runtimes/linux-x64/native/LibTorchSharp.so: cannot open shared object file: No such file or directory\n" +
            "/lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.32' not found (required by /app/runtimes/linux-x64/native/libLibTorchSharp.so)\n" +
            "/dotnet/shared/Microsoft.NETCore.App/10.0.12/libLibTorchSharp.so: cannot open shared object file: No such file or directory\n" +
            "/app/libLibTorchSharp: cannot open shared object file: No such file or directory\n";
        string? reason = TorchRuntimeMessages.LoaderReason(dotnet);
        Assert.AreEqual("/lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.32' not found (required by /app/runtimes/linux-x64/native/libLibTorchSharp.so)", reason);

        string message = TorchRuntimeMessages.LoadFailure("0.107.0", "linux-x64", reason);
        foreach (string part in new[] { "TorchSharp 0.107.0", "GLIBCXX_3.4.32' not found", "newer libstdc++6", "PatchLibTorchSharp.targets" })
            StringAssert.Contains(message, part);
        Assert.IsFalse(message.Contains("TorchSharp-cpu", StringComparison.Ordinal), "the package is there: no package advice");

        // No native package at all: libLibTorchSharp.so loads nothing it needs.
        string missing = TorchRuntimeMessages.LoaderReason("Unable to load...\n/app/libLibTorchSharp.so: cannot open shared object file: No such file or directory\n" +
            "libtorch.so: cannot open shared object file: No such file or directory\n")!;
        Assert.AreEqual("libtorch.so: cannot open shared object file: No such file or directory", missing);
        string noPackage = TorchRuntimeMessages.LoadFailure("0.107.0", "linux-x64", missing);
        foreach (string part in new[] { "libtorch.so: cannot open", "TorchSharp-cpu 0.107.0", "libtorch-cpu-linux-x64", "TorchSharp-cuda-linux 0.107.0", "LD_LIBRARY_PATH" })
            StringAssert.Contains(noPackage, part);
        Assert.IsFalse(noPackage.Contains("libstdc++", StringComparison.Ordinal), "the libstdc++ advice only where the loader named GLIBCXX");
    }

    [TestMethod]
    public void CudaUnavailable_SaysWhichOfCpuLibTorch_NoDriver_NoDevice_OrIndex()
    {
        var cpu = new LibTorchVersion("2.10.0", null, "deps.json");
        var cu128 = new LibTorchVersion("2.10.0+cu128", "12.8", "build-version");
        string? Why(int index, LibTorchVersion v, CudaFacts f) => TorchRuntimeMessages.CudaUnavailable(index, "0.107.0", "2.10.0", v, "/lib/libtorch_cpu.so", f);

        Assert.IsNull(Why(1, cu128, new CudaFacts(2, true, true, 12080, null)));
        StringAssert.Contains(Why(2, cu128, new CudaFacts(2, true, true, 12080, "0,1")), "2 CUDA devices (cuda:0 to cuda:1), CUDA_VISIBLE_DEVICES is '0,1'");

        string cpuOnly = Why(0, cpu, new CudaFacts(0, false, true, 12080, null))!;
        StringAssert.Contains(cpuOnly, "CPU-only build");
        StringAssert.Contains(cpuOnly, "TorchSharp-cuda-linux 0.107.0");

        string noDriver = Why(0, cu128, new CudaFacts(0, true, false, null, null))!;
        StringAssert.Contains(noDriver, "CUDA 12.8 build");
        StringAssert.Contains(noDriver, "libcuda.so.1");
        StringAssert.Contains(noDriver, "525");

        string noDevice = Why(0, cu128 with { CudaVersion = "13.0" }, new CudaFacts(0, true, true, 12040, ""))!;
        StringAssert.Contains(noDevice, "supports CUDA up to 12.4");
        StringAssert.Contains(noDevice, "580");
        StringAssert.Contains(noDevice, "CUDA_VISIBLE_DEVICES (now '')");
    }

    [TestMethod]
    public void OnThisMachine_FindsTheLoadedLibTorch_AndItsVersion()
    {
        TorchRuntimeReport report = TorchRuntimeCheck.Report;
        Assembly torchSharp = typeof(torch).Assembly;
        StringAssert.StartsWith(torchSharp.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion, report.TorchSharpVersion);
        string reportedTarget = report.ExpectedLibTorch;   // (a local: MSTEST0017 reads "Expected" in a name as the expected side)
        Assert.AreEqual(TorchRuntimeMessages.Short(torch.__version__), reportedTarget);
        Assert.IsNotNull(report.LibTorchPath);
        Assert.AreEqual("libtorch_cpu.so", Path.GetFileName(report.LibTorchPath));
        // The libtorch package this test project restores, named in its own deps.json by package id and version.
        string deps = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Liger.Kernels.Tests.deps.json"));
        string restored = System.Text.RegularExpressions.Regex.Match(deps, @"""libtorch-cpu-linux-x64/([0-9.]+)""").Groups[1].Value;
        Assert.AreEqual(restored, report.LibTorch?.Version);
        Assert.AreEqual(TorchRuntimeMessages.VersionWarning(report.TorchSharpVersion, report.ExpectedLibTorch, report.LibTorch, report.LibTorchPath), report.Warning);
        Assert.AreSame(report, TorchRuntimeCheck.Report, "the check runs once");

        // On a machine with no GPU: the reason names what is missing, and asking for CUDA throws it.
        if (!torch.cuda.is_available())
        {
            string why = TorchRuntimeCheck.WhyCudaUnavailable(0)!;
            StringAssert.Contains(why, "CPU-only build");
            var error = Assert.ThrowsExactly<InvalidOperationException>(() => LigerRuntime.Cuda(0));
            StringAssert.Contains(error.Message, "Liger's CUDA kernels were asked for cuda:0, but the libtorch TorchSharp loaded is a CPU-only build");
        }
    }

    [TestMethod]
    public void RepeatedChecks_CostNothingMeasurable()
    {
        _ = TorchRuntimeCheck.Report;
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < 100_000; i++)
            _ = TorchRuntimeCheck.Report;
        // 100k reads of a finished Lazy take well under a millisecond; 50 ms leaves room for a loaded CI machine.
        Assert.IsLessThan(50L, watch.ElapsedMilliseconds);
    }
}
