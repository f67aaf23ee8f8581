// Echo round trips of 64 B messages in one process: ipcez over a Unix socket, and the same
// through .NET's own Socket over a Unix socket with the frames (4-byte big-endian length,
// then the bytes) written by hand. Both run in the same process, in alternating rounds.
// Prints one line per transport: name, round trips per second (median of the rounds).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Net.Sockets;
using System.Threading;
using IpcezNet;

static class Bench
{
    static int Main(string[] args)
    {
        int count = args.Length > 0 ? int.Parse(args[0]) : 20000;
        int rounds = args.Length > 1 ? int.Parse(args[1]) : 5;
        var payload = new byte[64];
        var ipcez = new List<double>();
        var dotnet = new List<double>();
        string dir = Path.Combine(Path.GetTempPath(), "ipcez-cs-bench-" + Process.GetCurrentProcess().Id);
        Directory.CreateDirectory(dir);
        for (int round = 0; round < rounds + 1; round++)
        {
            double a = IpcezRoundTrips(Path.Combine(dir, "ipcez" + round + ".sock"), payload, count);
            double b = SocketRoundTrips(Path.Combine(dir, "plain" + round + ".sock"), payload, count);
            if (round == 0) continue; // warm-up (JIT, first connections)
            ipcez.Add(a);
            dotnet.Add(b);
        }
        Directory.Delete(dir, true);
        Console.WriteLine("ipcez-csharp-unix {0:0}", Median(ipcez));
        Console.WriteLine("dotnet-socket-unix {0:0}", Median(dotnet));
        return 0;
    }

    static double Median(List<double> values)
    {
        values.Sort();
        return values[values.Count / 2];
    }

    static double IpcezRoundTrips(string path, byte[] payload, int count)
    {
        using (IpcezListener listener = Ipcez.Listen(path))
        using (IpcezSocket client = Ipcez.Connect(path))
        using (IpcezSocket server = listener.Accept(TimeSpan.FromSeconds(5)))
        {
            var echo = new Thread(() =>
            {
                for (int i = 0; i < count; i++) server.Send(server.Receive());
            }) { IsBackground = true };
            echo.Start();
            Stopwatch clock = Stopwatch.StartNew();
            for (int i = 0; i < count; i++)
            {
                client.Send(payload);
                client.Receive();
            }
            double rate = count / clock.Elapsed.TotalSeconds;
            echo.Join();
            return rate;
        }
    }

    static double SocketRoundTrips(string path, byte[] payload, int count)
    {
        var endpoint = new UnixDomainSocketEndPoint(path);
        using (var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            listener.Bind(endpoint);
            listener.Listen(1);
            using (var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            {
                client.Connect(endpoint);
                using (Socket server = listener.Accept())
                {
                    var echo = new Thread(() =>
                    {
                        for (int i = 0; i < count; i++) WriteFrame(server, ReadFrame(server));
                    }) { IsBackground = true };
                    echo.Start();
                    Stopwatch clock = Stopwatch.StartNew();
                    for (int i = 0; i < count; i++)
                    {
                        WriteFrame(client, payload);
                        ReadFrame(client);
                    }
                    double rate = count / clock.Elapsed.TotalSeconds;
                    echo.Join();
                    File.Delete(path);
                    return rate;
                }
            }
        }
    }

    static void WriteFrame(Socket socket, byte[] data)
    {
        var frame = new byte[4 + data.Length];
        frame[0] = (byte)(data.Length >> 24);
        frame[1] = (byte)(data.Length >> 16);
        frame[2] = (byte)(data.Length >> 8);
        frame[3] = (byte)data.Length;
        Buffer.BlockCopy(data, 0, frame, 4, data.Length);
        int sent = 0;
        while (sent < frame.Length) sent += socket.Send(frame, sent, frame.Length - sent, SocketFlags.None);
    }

    static byte[] ReadFrame(Socket socket)
    {
        var header = new byte[4];
        ReadExactly(socket, header);
        var data = new byte[(header[0] << 24) | (header[1] << 16) | (header[2] << 8) | header[3]];
        ReadExactly(socket, data);
        return data;
    }

    static void ReadExactly(Socket socket, byte[] buffer)
    {
        int got = 0;
        while (got < buffer.Length)
        {
            int n = socket.Receive(buffer, got, buffer.Length - got, SocketFlags.None);
            if (n == 0) throw new EndOfStreamException("the peer closed");
            got += n;
        }
    }
}
