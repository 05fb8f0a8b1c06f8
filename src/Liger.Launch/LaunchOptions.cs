using System.Globalization;

namespace Liger.Launch;

/// <summary>What the launcher was asked to start (torchrun's single-node arguments).</summary>
/// <param name="ProcessesPerNode">Processes to start, one per GPU (--nproc-per-node).</param>
/// <param name="MasterAddress">Rank 0's rendezvous host (--master-addr).</param>
/// <param name="MasterPort">Rank 0's rendezvous port (--master-port).</param>
/// <param name="Command">The program and its arguments, after "--".</param>
public sealed record LaunchOptions(int ProcessesPerNode, string MasterAddress, int MasterPort, IReadOnlyList<string> Command)
{
    /// <summary>Usage text.</summary>
    public const string Usage =
        "usage: liger-launch [--nproc-per-node N] [--master-addr HOST] [--master-port PORT] -- PROGRAM [ARGS...]\n" +
        "Starts N copies of PROGRAM (default: one per GPU in CUDA_VISIBLE_DEVICES, else 1) with RANK, WORLD_SIZE, LOCAL_RANK,\n" +
        "LOCAL_WORLD_SIZE, MASTER_ADDR (default 127.0.0.1) and MASTER_PORT (default 29500) set, prefixes their output with\n" +
        "their rank, stops the others when one fails and exits with the first failure's code.";

    /// <summary>Parses the command line.</summary>
    /// <exception cref="ArgumentException">An argument is unknown, missing its value or out of range (named).</exception>
    public static LaunchOptions Parse(IReadOnlyList<string> args)
    {
        int processes = DefaultProcesses(), port = 29500;
        string address = "127.0.0.1";
        int i = 0;
        for (; i < args.Count && args[i] != "--"; i++)
        {
            string name = args[i], value;
            int equals = name.IndexOf('=');
            if (equals > 0)
                (name, value) = (name[..equals], name[(equals + 1)..]);
            else if (i + 1 < args.Count)
                value = args[++i];
            else
                throw new ArgumentException($"{name} needs a value.", name);
            switch (name.Replace('_', '-'))
            {
                case "--nproc-per-node": processes = Number(name, value, 1, 1024); break;
                case "--master-addr": address = value; break;
                case "--master-port": port = Number(name, value, 1, 65535); break;
                default: throw new ArgumentException($"Unknown option {name}.", name);
            }
        }
        if (i >= args.Count - 1)
            throw new ArgumentException("No program to start: give it after \"--\".", nameof(args));
        return new LaunchOptions(processes, address, port, args.Skip(i + 1).ToList());
    }

    /// <summary>The environment of rank <paramref name="rank"/>.</summary>
    public IReadOnlyDictionary<string, string> Environment(int rank) => new Dictionary<string, string>
    {
        ["RANK"] = Str(rank),
        ["LOCAL_RANK"] = Str(rank),
        ["WORLD_SIZE"] = Str(ProcessesPerNode),
        ["LOCAL_WORLD_SIZE"] = Str(ProcessesPerNode),
        ["MASTER_ADDR"] = MasterAddress,
        ["MASTER_PORT"] = Str(MasterPort),
    };

    private static int DefaultProcesses()
    {
        string? visible = System.Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES");
        return string.IsNullOrWhiteSpace(visible) ? 1 : visible.Split(',', StringSplitOptions.RemoveEmptyEntries).Length;
    }

    private static int Number(string name, string text, int min, int max) =>
        int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) && value >= min && value <= max
            ? value
            : throw new ArgumentException($"{name} must be an integer in [{min}, {max}]; got '{text}'.", name);

    private static string Str(int value) => value.ToString(CultureInfo.InvariantCulture);
}
