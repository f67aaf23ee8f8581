// Several threads on one socket, and a process that exits with sockets still in use.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;

namespace IpcezNet.Tests
{
    static class ConcurrencyTests
    {
        /// <summary>Message i: its index in the first 4 bytes, then a pattern; sizes up to 200 KiB,
        /// so some fit the 64 KiB receive buffer and some do not.</summary>
        static byte[] Numbered(int i)
        {
            int size = 4 + (i * 7919) % (200 * 1024);
            byte[] data = Helpers.Pattern(size, i);
            BitConverter.GetBytes(i).CopyTo(data, 0);
            return data;
        }

        [Test]
        public static void SendersOnSeveralThreadsNeverInterleave()
        {
            const int threads = 4, each = 300;
            using (var pair = new Helpers.Pair())
            {
                var senders = Enumerable.Range(0, threads).Select(t => Task.Run(() =>
                {
                    for (int i = 0; i < each; i++) pair.Client.Send(Numbered(t * each + i));
                })).ToArray();
                var last = Enumerable.Repeat(-1, threads).ToArray();
                for (int k = 0; k < threads * each; k++)
                {
                    byte[] message = pair.Server.Receive(TimeSpan.FromSeconds(20));
                    int i = BitConverter.ToInt32(message, 0);
                    Assert.Bytes(Numbered(i), message, "message " + i + " whole");
                    Assert.True(i % each > last[i / each], "per-thread order at " + i);
                    last[i / each] = i % each;
                }
                Assert.True(Task.WaitAll(senders, TimeSpan.FromSeconds(20)), "the senders finished");
            }
        }

        [Test(TimeoutSeconds = 120)]
        public static void SendAsyncCallsKeepTheirOrder()
        {
            // Many SendAsync calls issued at once, not awaited one by one: the messages arrive in
            // the order of the calls, also over a WebSocket, where a send that finds another still
            // being written has to wait for it on the thread pool.
            const int count = 300;
            foreach (string endpoint in new[] { Helpers.TempPath(), "ws://127.0.0.1:0/" })
            {
                using (var listener = Ipcez.Listen(endpoint))
                using (IpcezSocket client = Ipcez.Connect(listener.Address))
                using (IpcezSocket server = listener.Accept(TimeSpan.FromSeconds(5)))
                {
                    Task[] sends = Enumerable.Range(0, count).Select(i => client.SendAsync(Numbered(i))).ToArray();
                    for (int i = 0; i < count; i++)
                    {
                        byte[] message = server.Receive(TimeSpan.FromSeconds(20));
                        Assert.Equal(i, BitConverter.ToInt32(message, 0), client.Transport + ": message " + i + " in call order");
                        Assert.Bytes(Numbered(i), message, "message " + i + " whole");
                    }
                    Assert.True(Task.WaitAll(sends, TimeSpan.FromSeconds(20)), client.Transport + ": every send completed");
                }
            }
        }

        [Test]
        public static void ReceiversOnSeveralThreadsGetEveryMessageOnce()
        {
            const int count = 600;
            using (var pair = new Helpers.Pair())
            {
                var got = new List<int>();
                var receivers = Enumerable.Range(0, 3).Select(_ => Task.Run(() =>
                {
                    while (true)
                    {
                        byte[] message;
                        if (!pair.Server.TryReceive(TimeSpan.FromSeconds(2), out message)) return;
                        int i = BitConverter.ToInt32(message, 0);
                        Assert.Bytes(Numbered(i), message, "message " + i + " whole");
                        lock (got) got.Add(i);
                    }
                })).ToArray();
                for (int i = 0; i < count; i++) pair.Client.Send(Numbered(i));
                Assert.True(Task.WaitAll(receivers, TimeSpan.FromSeconds(60)), "the receivers finished");
                got.Sort();
                Assert.Equal(count, got.Count, "messages received");
                Assert.True(got.SequenceEqual(Enumerable.Range(0, count)), "each exactly once");
            }
        }

        [Test(TimeoutSeconds = 180)]
        public static void DisposeWhileEveryKindOfCallIsInFlight()
        {
            // Each round: Send, Receive, ReceiveAsync, a handler, IsClosed and SendAsync all busy
            // on one pair while another thread disposes a socket (a random one, after a random
            // moment). Every call ends, within a bound, with ConnectionLostException and nothing else.
            var random = new Random(13);
            var unexpected = new List<string>();
            using (var listener = Ipcez.Listen(Helpers.TempPath()))
            {
                for (int round = 0; round < 200; round++)
                {
                    IpcezSocket client = Ipcez.Connect(listener.Address), server = listener.Accept(TimeSpan.FromSeconds(5));
                    var handled = Ipcez.Connect(listener.Address);
                    IpcezSocket handledPeer = listener.Accept(TimeSpan.FromSeconds(5));
                    handled.MessageHandler(_ => { }, end => { if (!(end is ConnectionLostException)) lock (unexpected) unexpected.Add("handler end: " + end); });
                    Action<Action> run = body => { try { while (true) body(); } catch (ConnectionLostException) { } catch (Exception e) { lock (unexpected) unexpected.Add(e.ToString()); } };
                    var calls = new List<Task>
                    {
                        Task.Run(() => run(() => client.Send(new byte[] { 1, 2, 3 }))),
                        Task.Run(() => run(() => server.Receive())),
                        Task.Run(() => run(() => server.ReceiveAsync().GetAwaiter().GetResult())),
                        Task.Run(() => run(() => client.ReceiveAsync().GetAwaiter().GetResult())),
                        Task.Run(() => run(() => { handledPeer.Send(new byte[] { 4 }); if (client.IsClosed) throw Errors(); })),
                        Task.Run(() => run(() => client.SendAsync(new byte[70 * 1024]).GetAwaiter().GetResult())),
                    };
                    Thread.Sleep(random.Next(0, 4));
                    IpcezSocket first = random.Next(2) == 0 ? client : server;
                    first.Dispose();
                    (first == client ? server : client).Dispose();
                    handled.Dispose();
                    handledPeer.Dispose();
                    Assert.True(Task.WaitAll(calls.ToArray(), TimeSpan.FromSeconds(10)), "round " + round + ": every call ended within 10 s");
                    first.Dispose(); // twice is fine
                }
            }
            Assert.Equal("", string.Join("\n", unexpected), "exceptions other than ConnectionLostException");
        }

        static ConnectionLostException Errors() { return new ConnectionLostException("closed"); }

        /// <summary>Run by <see cref="ExitWithSocketsInUseNeitherHangsNorCrashes"/> in a child process.</summary>
        internal static int ExitChild()
        {
            var pair = new Helpers.Pair();
            pair.Server.MessageHandler(_ => Thread.Sleep(Timeout.Infinite));
            pair.Client.Send(new byte[] { 1 });
            new Thread(() => pair.Client.Receive()) { IsBackground = true }.Start();
            var listener = Ipcez.Listen(Helpers.TempPath());
            new Thread(() => listener.Accept()) { IsBackground = true }.Start();
            Ipcez.Connect(pair.Listener.Address); // never disposed: the finalizer's
            var waiting = Ipcez.Connect(pair.Listener.Address);
            waiting.ReceiveAsync(); // the reactor thread is waiting at exit too
            listener.AcceptAsync();
            GC.KeepAlive(waiting);
            Thread.Sleep(200);
            Console.WriteLine("exiting");
            return 0;
        }

        [Test]
        public static void ExitWithSocketsInUseNeitherHangsNorCrashes()
        {
            string runtime = Process.GetCurrentProcess().MainModule.FileName;
            string exe = typeof(ConcurrencyTests).Assembly.Location;
            var info = new ProcessStartInfo(runtime, "\"" + exe + "\" --exit-child") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            using (Process child = Process.Start(info))
            {
                Task<string> stdout = child.StandardOutput.ReadToEndAsync(), stderr = child.StandardError.ReadToEndAsync();
                Assert.True(child.WaitForExit(10000), "the child exited within 10 s");
                Assert.Equal(0, child.ExitCode, "exit code; stderr: " + stderr.Result);
                Assert.Equal("exiting", stdout.Result.Trim(), "the child ran to its end");
                Helpers.CleanUp(Helpers.TempDir(child.Id)); // its listeners were never closed
            }
        }
    }
}
