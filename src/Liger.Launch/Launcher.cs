using System.Diagnostics;

namespace Liger.Launch;

/// <summary>Starts the ranks, relays their output line by line with a rank prefix, and stops them all when one fails.</summary>
public static class Launcher
{
    /// <summary>
    /// Runs <paramref name="options"/>' command once per rank and waits. Returns 0 when every rank exits with 0; otherwise
    /// the exit code of the first rank that failed, after killing the others (a rank left waiting in a collective for a
    /// dead peer would otherwise hang until its timeout).
    /// </summary>
    public static int Run(LaunchOptions options, TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(output);
        var processes = new List<Process>();
        var gate = new object();
        int? failure = null;
        using var exited = new SemaphoreSlim(0);
        try
        {
            for (int rank = 0; rank < options.ProcessesPerNode; rank++)
            {
                var start = new ProcessStartInfo(options.Command[0])
                {
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                    UseShellExecute = false,
                };
                foreach (var a in options.Command.Skip(1))
                    start.ArgumentList.Add(a);
                foreach (var (key, value) in options.Environment(rank))
                    start.Environment[key] = value;
                var process = new Process { StartInfo = start, EnableRaisingEvents = true };
                string prefix = $"[rank {rank}] ";
                DataReceivedEventHandler relay = (_, e) =>
                {
                    if (e.Data is not null)
                        lock (gate)
                            output.WriteLine(prefix + e.Data);
                };
                process.OutputDataReceived += relay;
                process.ErrorDataReceived += relay;
                process.Exited += (_, _) => exited.Release();
                if (!process.Start())
                    throw new InvalidOperationException($"Could not start '{options.Command[0]}' for rank {rank}.");
                process.BeginOutputReadLine();
                process.BeginErrorReadLine();
                processes.Add(process);
            }
            for (int done = 0; done < processes.Count; done++)
            {
                exited.Wait();
                var failed = processes.FirstOrDefault(p => p.HasExited && p.ExitCode != 0);
                if (failed is not null)
                {
                    int rank = processes.IndexOf(failed);
                    failure = failed.ExitCode;
                    lock (gate)
                        output.WriteLine($"[launcher] rank {rank} exited with code {failed.ExitCode}; stopping the other ranks.");
                    break;
                }
            }
        }
        finally
        {
            foreach (var process in processes)
            {
                if (!process.HasExited)
                    process.Kill(entireProcessTree: true);
                process.WaitForExit();
                process.Dispose();
            }
        }
        output.Flush();
        return failure ?? 0;
    }
}
