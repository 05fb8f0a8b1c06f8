using System.Diagnostics;
using System.Text;

namespace Microsoft.ML.Liger.Tests.Distributed;

/// <summary>Starts the worker (test/Liger.Distributed.Worker) as several MPI ranks with Open MPI's mpirun.</summary>
internal static class MpiRunner
{
    /// <summary>The worker assembly, copied into this test project's output by its project reference.</summary>
    public static string WorkerDll => Path.Combine(AppContext.BaseDirectory, "Liger.Distributed.Worker.dll");

    /// <summary>mpirun on PATH; the test fails with what to install when it is missing (.ci/run installs it).</summary>
    public static string MpiRun()
    {
        foreach (var folder in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(folder, "mpirun");
            if (File.Exists(candidate))
                return candidate;
        }
        Assert.Fail("mpirun is not on PATH: the data-parallel tests run their ranks under Open MPI. Install it (apt-get install openmpi-bin libopenmpi-dev; .ci/run does this).");
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
