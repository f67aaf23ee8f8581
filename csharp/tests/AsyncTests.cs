// Pending ReceiveAsync/AcceptAsync calls wait on one thread of the library, not one each.
using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;

namespace IpcezNet.Tests
{
    static class AsyncTests
    {
        static int Threads()
        {
            return Directory.GetDirectories("/proc/self/task").Length;
        }

        [Test]
        public static void SendAsyncCancelledWaitingForTheAckSaysTheMessageMayArrive()
        {
            // A peer written with .NET's own Socket that reads the bytes and never acks.
            string path = Helpers.TempPath();
            using (var raw = Helpers.RawListener(path))
            {
                try
                {
                    using (IpcezSocket sock = Ipcez.Connect(path, new ConnectOptions { AckTimeout = TimeSpan.FromSeconds(30) }))
                    using (var peer = raw.Accept())
                    {
                        var clock = Stopwatch.StartNew();
                        using (var cts = new CancellationTokenSource(200))
                        {
                            Task send = sock.SendAsync(new byte[] { 7 }, cts.Token);
                            var e = Assert.Throws<OperationCanceledException>(() => send.GetAwaiter().GetResult(), "the cancelled send");
                            Assert.True(send.IsCanceled, "the task ends as Canceled, not Faulted");
                            Assert.True(e.Message.Contains("may still be delivered"), "the exception says the message was written: " + e.Message);
                            Assert.True(clock.ElapsedMilliseconds < 5000, "cancelled long before the 30 s ack timeout: " + clock.ElapsedMilliseconds + " ms");
                        }
                        peer.ReceiveTimeout = 5000;
                        var frame = new byte[5];
                        int got = 0;
                        while (got < frame.Length) got += peer.Receive(frame, got, frame.Length - got, System.Net.Sockets.SocketFlags.None);
                        Assert.Bytes(new byte[] { 0, 0, 0, 1, 7 }, frame, "the frame of the cancelled send was written");

                        using (var cts = new CancellationTokenSource())
                        {
                            cts.Cancel();
                            Task never = sock.SendAsync(new byte[] { 8 }, cts.Token);
                            Assert.True(never.IsCanceled, "a send cancelled before it starts is Canceled at once");
                        }
                        Assert.True(!peer.Poll(200 * 1000, System.Net.Sockets.SelectMode.SelectRead), "nothing more was written");

                        // The socket stays usable: the next send is written too.
                        using (var cts = new CancellationTokenSource(200))
                        {
                            Task again = sock.SendAsync(new byte[] { 9 }, cts.Token);
                            Assert.Throws<OperationCanceledException>(() => again.GetAwaiter().GetResult(), "the next cancelled send");
                        }
                        got = 0;
                        while (got < frame.Length) got += peer.Receive(frame, got, frame.Length - got, System.Net.Sockets.SocketFlags.None);
                        Assert.Bytes(new byte[] { 0, 0, 0, 1, 9 }, frame, "the next frame");
                    }
                }
                finally
                {
                    Helpers.RemoveSemaphores(path);
                }
            }
        }

        [Test]
        public static void TwoHundredSendAsyncAwaitingAcksHoldNoThreadEach()
        {
            // A peer written with .NET's own Socket that reads the frames and never acks.
            const int count = 200;
            string path = Helpers.TempPath();
            using (var raw = Helpers.RawListener(path))
            {
                try
                {
                    using (IpcezSocket sock = Ipcez.Connect(path, new ConnectOptions { AckTimeout = TimeSpan.FromSeconds(30) }))
                    using (var peer = raw.Accept())
                    {
                        sock.ReceiveAsync(new CancellationTokenSource(10).Token).ContinueWith(_ => { }).Wait(); // the reactor runs
                        Thread.Sleep(200);
                        int before = Threads();
                        Task[] sends = Enumerable.Range(0, count).Select(i => sock.SendAsync(BitConverter.GetBytes(i))).ToArray();
                        var frame = new byte[8];
                        peer.ReceiveTimeout = 5000;
                        for (int i = 0; i < count; i++)
                        {
                            int got = 0;
                            while (got < frame.Length) got += peer.Receive(frame, got, frame.Length - got, System.Net.Sockets.SocketFlags.None);
                            Assert.Equal(i, BitConverter.ToInt32(frame, 4), "frame " + i + " written, in order");
                        }
                        Thread.Sleep(300);
                        int during = Threads();
                        Assert.True(sends.All(t => !t.IsCompleted), "all wait for their acks");
                        Assert.True(during - before < 20, "threads while 200 sends wait for acks: " + before + " -> " + during);
                        Assert.True(Task.Run(() => 1).Wait(TimeSpan.FromSeconds(5)), "the thread pool runs work while 200 sends wait");
                        sock.Dispose();
                        Assert.True(Task.WaitAny(new[] { Task.WhenAll(sends).ContinueWith(_ => { }) }, TimeSpan.FromSeconds(5)) == 0, "dispose ends them");
                        Assert.True(sends.All(t => t.Exception != null && t.Exception.InnerException is ConnectionLostException), "each with ConnectionLostException");
                    }
                    using (IpcezSocket sock = Ipcez.Connect(path, new ConnectOptions { AckTimeout = TimeSpan.FromMilliseconds(300) }))
                    {
                        var clock = Stopwatch.StartNew();
                        var e = Assert.Throws<RecipientAckTimeoutException>(() => sock.SendAsync(new byte[] { 1 }).GetAwaiter().GetResult(), "no ack");
                        Assert.True(clock.ElapsedMilliseconds >= 280 && clock.ElapsedMilliseconds < 5000, "after the ack timeout: " + clock.ElapsedMilliseconds + " ms");
                        Assert.True(e.Message.Contains("did not acknowledge"), "the library's words: " + e.Message);
                    }
                }
                finally
                {
                    Helpers.RemoveSemaphores(path);
                }
            }
            // With an ipcez peer: many sends outstanding at once, every ack comes, in order.
            using (var pair = new Helpers.Pair())
            {
                Task[] sends = Enumerable.Range(0, 2000).Select(i => pair.Client.SendAsync(BitConverter.GetBytes(i))).ToArray();
                for (int i = 0; i < 2000; i++)
                    Assert.Equal(i, BitConverter.ToInt32(pair.Server.Receive(TimeSpan.FromSeconds(10)), 0), "message " + i);
                Assert.True(Task.WaitAll(sends, TimeSpan.FromSeconds(10)), "every send acknowledged");
            }
        }

        [Test]
        public static void APeerVanishingEndsPendingSendAsyncAtOnce()
        {
            string path = Helpers.TempPath();
            using (var raw = Helpers.RawListener(path))
            {
                try
                {
                    using (IpcezSocket sock = Ipcez.Connect(path, new ConnectOptions { AckTimeout = TimeSpan.FromSeconds(30) }))
                    {
                        var peer = raw.Accept();
                        Task[] sends = Enumerable.Range(0, 10).Select(i => sock.SendAsync(new byte[] { (byte)i })).ToArray();
                        Thread.Sleep(200);
                        Assert.True(sends.All(t => !t.IsCompleted), "the sends wait for acks");
                        peer.Close(); // gone without a word
                        Assert.True(Task.WaitAny(new[] { Task.WhenAll(sends).ContinueWith(_ => { }) }, TimeSpan.FromSeconds(10)) == 0,
                            "they end long before the 30 s ack timeout");
                        Assert.True(sends.All(t => t.Exception != null && t.Exception.InnerException is ConnectionLostException), "each with ConnectionLostException");
                    }
                }
                finally
                {
                    Helpers.RemoveSemaphores(path);
                }
            }
        }

        [Test]
        public static void TwoHundredPendingReceivesHoldNoThreadEach()
        {
            const int count = 200;
            using (var listener = Ipcez.Listen(Helpers.TempPath(), new ListenOptions { MaxConnections = 2 * count }))
            {
                var clients = new IpcezSocket[count];
                var servers = new IpcezSocket[count];
                try
                {
                    for (int i = 0; i < count; i++)
                    {
                        clients[i] = Ipcez.Connect(listener.Address);
                        servers[i] = listener.Accept(TimeSpan.FromSeconds(5));
                    }
                    clients[0].ReceiveAsync(new CancellationTokenSource(10).Token).ContinueWith(_ => { }).Wait(); // the reactor runs
                    Thread.Sleep(200);
                    int before = Threads();
                    var cancelled = new CancellationTokenSource();
                    Task<byte[]>[] receives = clients.Select((c, i) => c.ReceiveAsync(i % 2 == 0 ? CancellationToken.None : cancelled.Token)).ToArray();
                    Thread.Sleep(300);
                    int during = Threads();
                    Assert.True(receives.All(r => !r.IsCompleted), "all pending");
                    Assert.True(during - before < 20, "threads while 200 receives wait: " + before + " -> " + during);
                    // The thread pool is not blocked by them: a work item runs (a liveness bound, not a speed).
                    Assert.True(Task.Run(() => 1).Wait(TimeSpan.FromSeconds(5)), "the thread pool runs work while 200 receives wait");
                    cancelled.Cancel();
                    for (int i = 0; i < count; i++) servers[i].Send(BitConverter.GetBytes(i));
                    for (int i = 0; i < count; i++)
                    {
                        if (i % 2 == 0)
                        {
                            Assert.Equal(i, BitConverter.ToInt32(receives[i].Result, 0), "receive " + i);
                        }
                        else
                        {
                            Assert.Throws<OperationCanceledException>(() => receives[i].GetAwaiter().GetResult(), "cancelled receive " + i);
                            Assert.Equal(i, BitConverter.ToInt32(clients[i].Receive(TimeSpan.FromSeconds(5)), 0), "the message a cancelled receive left " + i);
                        }
                    }
                }
                finally
                {
                    foreach (IpcezSocket s in clients.Concat(servers)) if (s != null) s.Dispose();
                }
            }
        }

        [Test]
        public static void PendingReceiveEndsWhenThePeerOrThisSideCloses()
        {
            using (var pair = new Helpers.Pair())
            {
                Task<byte[]> first = pair.Client.ReceiveAsync(), second = pair.Client.ReceiveAsync();
                pair.Server.Send(new byte[] { 1 });
                Assert.Bytes(new byte[] { 1 }, first.Result, "the first waiter gets the first message");
                Assert.True(!second.Wait(100), "the second still waits");
                pair.Server.Dispose();
                Assert.True(Assert.Throws<AggregateException>(() => second.Wait(5000), "peer closed").InnerException is ConnectionLostException, "ConnectionLostException");
                Task<byte[]> after = pair.Client.ReceiveAsync();
                Assert.True(Assert.Throws<AggregateException>(() => after.Wait(5000), "after the end").InnerException is ConnectionLostException, "ConnectionLostException");
            }
            using (var pair = new Helpers.Pair())
            {
                Task<byte[]> pending = pair.Client.ReceiveAsync();
                Task<IpcezSocket> accepting = pair.Listener.AcceptAsync();
                pair.Client.Dispose();
                pair.Listener.Dispose();
                Assert.True(Assert.Throws<AggregateException>(() => pending.Wait(5000), "disposed").InnerException is ConnectionLostException, "receive: ConnectionLostException");
                Assert.True(Assert.Throws<AggregateException>(() => accepting.Wait(5000), "disposed").InnerException is ConnectionLostException, "accept: ConnectionLostException");
            }
        }

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
        static WeakReference UseAndDrop(IpcezListener listener, out IpcezSocket server)
        {
            IpcezSocket client = Ipcez.Connect(listener.Address);
            server = listener.Accept(TimeSpan.FromSeconds(5));
            Task<byte[]> pending = client.ReceiveAsync(); // waits on the reactor
            Thread.Sleep(50);
            server.Send(new byte[] { 1 });
            Assert.Bytes(new byte[] { 1 }, pending.Result, "received");
            return new WeakReference(client);
        }

        [Test]
        public static void ASocketDroppedWithASendAsyncPendingStaysUntilItEnds()
        {
            // A peer that reads and never acks; the socket is dropped while its send waits.
            string path = Helpers.TempPath();
            using (var raw = Helpers.RawListener(path))
            {
                try
                {
                    Task send = null;
                    var user = new Thread(() => send = SendAndDrop(path));
                    user.Start();
                    user.Join();
                    using (var peer = raw.Accept())
                    {
                        for (int i = 0; i < 10; i++)
                        {
                            GC.Collect();
                            GC.WaitForPendingFinalizers();
                            Thread.Sleep(20);
                        }
                        Assert.True(Task.WaitAny(new[] { send.ContinueWith(_ => { }) }, TimeSpan.FromSeconds(10)) == 0, "the send ended (no task left hanging)");
                        Assert.True(send.Exception != null && send.Exception.InnerException is RecipientAckTimeoutException, "with the ack timeout: " + send.Exception);
                    }
                }
                finally
                {
                    Helpers.RemoveSemaphores(path);
                }
            }
        }

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
        static Task SendAndDrop(string path)
        {
            IpcezSocket sock = Ipcez.Connect(path, new ConnectOptions { AckTimeout = TimeSpan.FromMilliseconds(500) });
            return sock.SendAsync(new byte[] { 1 });
        }

        [Test]
        public static void ASocketDroppedAfterReceiveAsyncIsCollectedAndClosed()
        {
            using (var listener = Ipcez.Listen(Helpers.TempPath()))
            {
                IpcezSocket server = null;
                WeakReference dropped = null;
                // On a thread of its own, so that no stack slot of this one still holds the socket.
                var user = new Thread(() => dropped = UseAndDrop(listener, out server));
                user.Start();
                user.Join();
                using (server)
                {
                    for (int i = 0; i < 50 && dropped.IsAlive; i++)
                    {
                        GC.Collect();
                        GC.WaitForPendingFinalizers();
                        Thread.Sleep(20);
                    }
                    Assert.True(!dropped.IsAlive, "the dropped socket was collected");
                    Assert.Throws<ConnectionLostException>(() => server.Receive(TimeSpan.FromSeconds(5)), "its peer saw it close");
                }
            }
        }
    }
}
