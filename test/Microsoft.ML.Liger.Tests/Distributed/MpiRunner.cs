using System.Diagnostics;
using System.Text;

namespace Microsoft.ML.Liger.Tests.Distributed;

/// <summary>Starts the worker (test/Liger.Distributed.Worker) as several MPI ranks with Open MPI's mpirun.</summary>
internal static class MpiRunner
{
    /// <summary>The worker assembly, copied into this test project's output by its project reference.</summary>
    public static string WorkerDll => Path.Combine(AppContext.BaseDirectory, "Liger.Distributed.Worker.dll");

    /// <summary>The command that installs mpirun (Open MPI), named when it is missing.</summary>
    public const string InstallCommand = "apt-get install openmpi-bin";

    /// <summary>
    /// mpirun on PATH. Without it the calling test reports itself as not run (inconclusive, which MSTest counts as skipped
    /// and which does not fail README's test command), naming the install command; with LIGER_REQUIRE_MPI=1 (.ci/run, which
    /// installs Open MPI) it fails instead, so CI never skips the data-parallel tests.
    /// </summary>
    public static string MpiRun()
    {
        foreach (var folder in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(folder, "mpirun");
            if (File.Exists(candidate))
                return candidate;
        }
        string message = $"mpirun is not on PATH: the data-parallel tests run their ranks under Open MPI. Install it to run them: {InstallCommand}";
        if (Environment.GetEnvironmentVariable("LIGER_REQUIRE_MPI") == "1")
            Assert.Fail($"{message} (LIGER_REQUIRE_MPI=1: this run requires them).");
        Assert.Inconclusive($"Not run: {message}");
        return "";
    }

    /// <summary>Runs <paramref name="ranks"/> workers with <paramref name="args"/>; returns the exit code and everything they printed.</summary>
    public static (int ExitCode, string Output) Run(int ranks, IEnumerable<string> args, TimeSpan? timeout = null)
    {
        var start = new ProcessStartInfo(MpiRun())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // As root in CI containers; more ranks than cores; no core binding (the ranks share the test machine's cores);
        // vader's single-copy needs ptrace rights that containers often lack.
        foreach (var a in new[] { "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "--mca", "btl_vader_single_copy_mechanism", "none",
                     "-np", ranks.ToString(), "dotnet", WorkerDll })
            start.ArgumentList.Add(a);
        foreach (var a in args)
            start.ArgumentList.Add(a);
        var output = new StringBuilder();
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout ?? TimeSpan.FromSeconds(120)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"mpirun -np {ranks} did not finish in time; output so far:\n{output}");
        }
        process.WaitForExit();
        lock (output)
            return (process.ExitCode, output.ToString());
    }
}
