using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Microsoft.ML.Liger.Distributed;

/// <summary>
/// Where the ranks of an NCCL run meet: rank 0 listens on MASTER_ADDR:MASTER_PORT, every other rank connects and
/// says who it is, and once all <see cref="DistributedOptions.WorldSize"/> ranks are there rank 0 sends each the same
/// payload (NCCL's 128-byte unique id). Only the id travels here; the collectives themselves are NCCL's.
/// </summary>
internal static class Rendezvous
{
    private const int Magic = 0x4C494752; // "LIGR"
    private static readonly TimeSpan RetryDelay = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Rank 0 calls <paramref name="create"/> and delivers its bytes to every rank; the others receive them. Returns the payload on every rank.
    /// </summary>
    /// <exception cref="TimeoutException">Not every rank arrived within <see cref="DistributedOptions.RendezvousTimeout"/> (the address and missing ranks are named).</exception>
    /// <exception cref="InvalidOperationException">A rank disagreed on the world size, or two ranks claimed the same rank.</exception>
    public static byte[] Exchange(DistributedOptions options, Func<byte[]> create)
    {
        options.Validate();
        if (options.WorldSize == 1)
            return create();
        return options.IsRankZero ? Serve(options, create()) : Join(options);
    }

    private static string Where(DistributedOptions o) => $"{o.MasterAddress}:{o.MasterPort}";

    private static byte[] Serve(DistributedOptions options, byte[] payload)
    {
        var clock = Stopwatch.StartNew();
        using var listener = new TcpListener(IPAddress.Any, options.MasterPort);
        listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        try
        {
            listener.Start(options.WorldSize);
        }
        catch (SocketException e)
        {
            throw new InvalidOperationException(
                $"Rank 0 could not listen for the rendezvous on port {options.MasterPort} ({e.Message}); choose a free MASTER_PORT ({nameof(DistributedOptions.MasterPort)}).", e);
        }
        var joined = new Dictionary<int, TcpClient>();
        try
        {
            while (joined.Count < options.WorldSize - 1)
            {
                var left = options.RendezvousTimeout - clock.Elapsed;
                var accept = listener.AcceptTcpClientAsync();
                if (left <= TimeSpan.Zero || !accept.Wait(left))
                {
                    var missing = Enumerable.Range(1, options.WorldSize - 1).Where(r => !joined.ContainsKey(r));
                    throw new TimeoutException(
                        $"Rendezvous at {Where(options)}: rank 0 waited {options.RendezvousTimeout.TotalSeconds:F0} s, but rank(s) {string.Join(", ", missing)} of " +
                        $"{options.WorldSize} never arrived. Start every rank with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE.");
                }
                var client = accept.Result;
                client.ReceiveTimeout = (int)Math.Max(1000, left.TotalMilliseconds);
                var stream = client.GetStream();
                var hello = ReadExactly(stream, 12, options);
                int magic = BinaryPrimitives.ReadInt32LittleEndian(hello), rank = BinaryPrimitives.ReadInt32LittleEndian(hello.AsSpan(4)),
                    worldSize = BinaryPrimitives.ReadInt32LittleEndian(hello.AsSpan(8));
                string? problem = magic != Magic ? "a connection that is not a Liger rank"
                    : worldSize != options.WorldSize ? $"rank {rank} says the world size is {worldSize}, rank 0 says {options.WorldSize}"
                    : rank < 1 || rank >= options.WorldSize ? $"a rank {rank} outside [1, {options.WorldSize - 1}]"
                    : joined.ContainsKey(rank) ? $"rank {rank} twice"
                    : null;
                if (problem is not null)
                {
                    if (magic == Magic)
                        Reply(stream, 1, Encoding.UTF8.GetBytes(problem));
                    client.Dispose();
                    throw new InvalidOperationException($"Rendezvous at {Where(options)} failed: rank 0 met {problem}.");
                }
                joined[rank] = client;
            }
            foreach (var client in joined.Values)
                Reply(client.GetStream(), 0, payload);
            return payload;
        }
        finally
        {
            foreach (var client in joined.Values)
                client.Dispose();
            listener.Stop();
        }
    }

    private static byte[] Join(DistributedOptions options)
    {
        var clock = Stopwatch.StartNew();
        string? lastError = null;
        while (true)
        {
            var left = options.RendezvousTimeout - clock.Elapsed;
            if (left <= TimeSpan.Zero)
                throw new TimeoutException(
                    $"Rendezvous at {Where(options)}: rank {options.Rank} could not reach rank 0 within {options.RendezvousTimeout.TotalSeconds:F0} s " +
                    $"({lastError ?? "no answer"}). Is rank 0 running, and are MASTER_ADDR and MASTER_PORT the same on every rank?");
            using var client = new TcpClient();
            try
            {
                if (!client.ConnectAsync(options.MasterAddress, options.MasterPort).Wait(left))
                    continue;
            }
            catch (AggregateException e) when (e.InnerException is SocketException s)
            {
                lastError = s.Message;
                Thread.Sleep(RetryDelay);
                continue;
            }
            client.ReceiveTimeout = (int)Math.Max(1000, left.TotalMilliseconds);
            var stream = client.GetStream();
            var hello = new byte[12];
            BinaryPrimitives.WriteInt32LittleEndian(hello, Magic);
            BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(4), options.Rank);
            BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(8), options.WorldSize);
            stream.Write(hello);
            var header = ReadExactly(stream, 5, options);
            var body = ReadExactly(stream, BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(1)), options);
            if (header[0] != 0)
                throw new InvalidOperationException($"Rendezvous at {Where(options)} refused rank {options.Rank}: {Encoding.UTF8.GetString(body)}.");
            return body;
        }
    }

    private static void Reply(NetworkStream stream, byte status, byte[] body)
    {
        var header = new byte[5];
        header[0] = status;
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(1), body.Length);
        stream.Write(header);
        stream.Write(body);
    }

    private static byte[] ReadExactly(NetworkStream stream, int count, DistributedOptions options)
    {
        var buffer = new byte[count];
        try
        {
            stream.ReadExactly(buffer);
        }
        catch (Exception e) when (e is IOException or EndOfStreamException)
        {
            throw new TimeoutException($"Rendezvous at {Where(options)}: the connection closed or went silent before the exchange finished ({e.Message}).", e);
        }
        return buffer;
    }
}
