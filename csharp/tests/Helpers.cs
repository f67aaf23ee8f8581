// Shared test helpers: temporary endpoints, a connected pair, Python peers.
using System;
using System.Diagnostics;
using System.IO;
using System.Threading;

namespace IpcezNet.Tests
{
    static class Helpers
    {
        static int counter;

        /// <summary>A fresh Unix socket path in a temporary directory.</summary>
        public static string TempPath()
        {
            string dir = TempDir(Process.GetCurrentProcess().Id);
            Directory.CreateDirectory(dir);
            return Path.Combine(dir, "s" + Interlocked.Increment(ref counter) + ".sock");
        }

        /// <summary>The directory of <see cref="TempPath"/> in the process <paramref name="pid"/>.</summary>
        public static string TempDir(int pid)
        {
            return Path.Combine(Path.GetTempPath(), "ipcez-cs-" + pid);
        }

        /// <summary>Removes <paramref name="dir"/> and the semaphores of every endpoint made in it
        /// (listeners of killed peers and of a child that exited never removed theirs).</summary>
        public static void CleanUp(string dir)
        {
            if (!Directory.Exists(dir)) return;
            int highest = counter;
            foreach (string file in Directory.GetFiles(dir, "s*.sock"))
            {
                int n;
                if (int.TryParse(Path.GetFileNameWithoutExtension(file).Substring(1), out n)) highest = Math.Max(highest, n);
            }
            for (int i = 1; i <= highest; i++) RemoveSemaphores(Path.Combine(dir, "s" + i + ".sock"));
            Directory.Delete(dir, true);
        }

        /// <summary>A listener with one client connected to it and that connection accepted.</summary>
        public sealed class Pair : IDisposable
        {
            public readonly IpcezListener Listener;
            public readonly IpcezSocket Client;
            public readonly IpcezSocket Server;

            public Pair(ConnectOptions options = null)
            {
                Listener = Ipcez.Listen(TempPath());
                Client = Ipcez.Connect(Listener.Address, options);
                Server = Listener.Accept(TimeSpan.FromSeconds(5));
            }

            public void Dispose()
            {
                Client.Dispose();
                Server.Dispose();
                Listener.Dispose();
            }
        }

        /// <summary>A listening .NET Socket on a Unix socket path: a peer written without ipcez.</summary>
        public static System.Net.Sockets.Socket RawListener(string path)
        {
            var raw = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
            raw.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
            raw.Listen(1);
            return raw;
        }

        /// <summary>A client creates the semaphores a listener written without ipcez did not,
        /// and never removes them: the test does, with the socket file.</summary>
        public static void RemoveSemaphores(string path)
        {
            var names = Ipcez.AckNames(path);
            foreach (string name in new[] { names.DataReady, names.DataAcked })
                File.Delete("/dev/shm/sem." + name.TrimStart('/'));
            File.Delete(path);
        }

        public static byte[] Pattern(int size, int seed = 1)
        {
            var data = new byte[size];
            for (int i = 0; i < size; i++) data[i] = (byte)(i * 31 + seed);
            return data;
        }

        /// <summary>Starts a Python process running <paramref name="script"/>; its stdout lines
        /// come back through the returned process (the script's first line is read by the caller).</summary>
        public static Process Python(string script, params string[] args)
        {
            string python = Environment.GetEnvironmentVariable("IPCEZ_PYTHON") ?? "python3";
            string file = Path.Combine(Path.GetDirectoryName(TempPath()), "peer" + Interlocked.Increment(ref counter) + ".py");
            File.WriteAllText(file, script);
            var info = new ProcessStartInfo(python, "-u " + Quote(file) + " " + string.Join(" ", Array.ConvertAll(args, Quote)))
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = false,
            };
            return Process.Start(info);
        }

        static string Quote(string arg) { return "\"" + arg.Replace("\"", "\\\"") + "\""; }

        /// <summary>The next line the process prints, within <paramref name="seconds"/>.</summary>
        public static string ReadLine(Process process, int seconds = 20)
        {
            var read = process.StandardOutput.ReadLineAsync();
            if (!read.Wait(TimeSpan.FromSeconds(seconds))) throw new AssertionException("the Python peer printed nothing within " + seconds + " s");
            if (read.Result == null) throw new AssertionException("the Python peer exited (code " + (process.WaitForExit(5000) ? process.ExitCode.ToString() : "?") + ")");
            return read.Result;
        }

        /// <summary>Kills the peer unless it has exited. One that was just killed may not be
        /// reaped yet: Mono's Kill then throws, and there is nothing left to stop.</summary>
        public static void Stop(Process process)
        {
            try
            {
                if (!process.HasExited) process.Kill();
            }
            catch (System.ComponentModel.Win32Exception) { }
            catch (InvalidOperationException) { }
        }

        public static void Finish(Process process, int seconds = 20)
        {
            if (!process.WaitForExit(seconds * 1000))
            {
                process.Kill();
                throw new AssertionException("the Python peer did not exit within " + seconds + " s");
            }
            Assert.Equal(0, process.ExitCode, "the Python peer's exit code");
        }
    }
}
