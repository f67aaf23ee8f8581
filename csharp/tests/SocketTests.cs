// Messages, order, timeouts, cancellation and disposal on a Unix socket.
using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace IpcezNet.Tests
{
    static class SocketTests
    {
        [Test]
        public static void SizesArriveWholeAndOverFourMiBIsRefused()
        {
            using (var pair = new Helpers.Pair())
            {
                foreach (int size in new[] { 0, 1, 64 * 1024, Ipcez.MaxMessageSize })
                {
                    byte[] data = Helpers.Pattern(size, size);
                    pair.Client.Send(data);
                    Assert.Bytes(data, pair.Server.Receive(TimeSpan.FromSeconds(10)), size + " B client to server");
                    pair.Server.Send(data);
                    Assert.Bytes(data, pair.Client.Receive(TimeSpan.FromSeconds(10)), size + " B server to client");
                }
                var e = Assert.Throws<MessageTooLargeException>(() => pair.Client.Send(new byte[Ipcez.MaxMessageSize + 1]), "4 MiB + 1");
                Assert.True(e is ArgumentException && e.Message.Contains("4194304"), "the message names the limit: " + e.Message);
                Assert.Equal(IpcezErrorKind.MessageTooLarge, e.Kind, "kind");
                pair.Client.Send(new byte[] { 7 }); // still usable, and nothing of the refused one arrived
                Assert.Bytes(new byte[] { 7 }, pair.Server.Receive(TimeSpan.FromSeconds(5)), "after the refusal");
                Assert.True(!pair.Server.TryReceive(TimeSpan.FromMilliseconds(100), out _), "nothing else arrived");
            }
        }

        [Test]
        public static void OrderHoldsOverTenThousandMessages()
        {
            const int count = 10000;
            using (var pair = new Helpers.Pair())
            {
                var sender = Task.Run(() =>
                {
                    for (int i = 0; i < count; i++) pair.Client.Send(BitConverter.GetBytes(i));
                });
                for (int i = 0; i < count; i++)
                    Assert.Equal(i, BitConverter.ToInt32(pair.Server.Receive(TimeSpan.FromSeconds(10)), 0), "message " + i);
                Assert.True(sender.Wait(TimeSpan.FromSeconds(10)), "the sender finished");
                Assert.True(!pair.Server.TryReceive(TimeSpan.FromMilliseconds(50), out _), "no message more");
            }
        }

        [Test]
        public static void ReceiveTimesOut()
        {
            using (var pair = new Helpers.Pair())
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                Assert.Throws<TimeoutException>(() => pair.Server.Receive(TimeSpan.FromMilliseconds(200)), "receive with nothing sent");
                Assert.True(clock.ElapsedMilliseconds >= 190, "waited the timeout, " + clock.ElapsedMilliseconds + " ms");
            }
        }

        [Test(TimeoutSeconds = 120)]
        public static void CancelledReceivesLoseNothing()
        {
            // Receives cancelled at random moments while messages stream in: every message
            // is returned by exactly one receive, in order.
            const int count = 300;
            var random = new Random(5);
            using (var pair = new Helpers.Pair())
            {
                var sender = Task.Run(() =>
                {
                    for (int i = 0; i < count; i++)
                    {
                        pair.Client.Send(BitConverter.GetBytes(i));
                        Thread.Sleep(i % 3); // so that receives often wait, and get cancelled waiting
                    }
                });
                var got = new List<int>();
                int cancelled = 0;
                while (got.Count < count)
                {
                    using (var cts = new CancellationTokenSource())
                    {
                        int delay = random.Next(-1, 3);
                        if (delay < 0) cts.Cancel(); // cancelled before the call
                        else cts.CancelAfter(delay);
                        Task<byte[]> receive = pair.Server.ReceiveAsync(cts.Token);
                        try
                        {
                            got.Add(BitConverter.ToInt32(receive.GetAwaiter().GetResult(), 0));
                        }
                        catch (OperationCanceledException)
                        {
                            Assert.True(receive.IsCanceled, "a cancelled receive ends as Canceled");
                            cancelled++;
                        }
                    }
                }
                Assert.True(sender.Wait(TimeSpan.FromSeconds(10)), "the sender finished");
                for (int i = 0; i < count; i++) Assert.Equal(i, got[i], "message " + i);
                Assert.True(cancelled > 0, "some receives were cancelled (" + cancelled + ")");

                // And a receive cancelled while nothing is there leaves the next message in place.
                using (var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(150)))
                {
                    Task<byte[]> idle = pair.Server.ReceiveAsync(cts.Token);
                    Assert.Throws<OperationCanceledException>(() => idle.GetAwaiter().GetResult(), "idle receive");
                }
                pair.Client.Send(new byte[] { 42 });
                Assert.Bytes(new byte[] { 42 }, pair.Server.Receive(TimeSpan.FromSeconds(5)), "the message after the cancellation");
            }
        }

        [Test(TimeoutSeconds = 120)]
        public static void CancelledAcceptsLoseNoConnection()
        {
            // Accepts cancelled at random moments while clients keep connecting: every
            // connection is returned by exactly one accept.
            const int count = 150;
            var random = new Random(11);
            using (var listener = Ipcez.Listen(Helpers.TempPath(), new ListenOptions { MaxConnections = 2 * count }))
            {
                var clients = new List<IpcezSocket>();
                var connector = Task.Run(() =>
                {
                    for (int i = 0; i < count; i++)
                    {
                        IpcezSocket client = Ipcez.Connect(listener.Address);
                        lock (clients) clients.Add(client);
                        client.Send(BitConverter.GetBytes(i));
                        Thread.Sleep(i % 3);
                    }
                });
                var seen = new List<int>();
                int cancelled = 0;
                var clock = System.Diagnostics.Stopwatch.StartNew();
                try
                {
                    while (seen.Count < count)
                    {
                        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "all connections accepted within 30 s, " + seen.Count + " of " + count + " were");
                        using (var cts = new CancellationTokenSource())
                        {
                            int delay = random.Next(-1, 3);
                            if (delay < 0) cts.Cancel();
                            else cts.CancelAfter(delay);
                            Task<IpcezSocket> accept = listener.AcceptAsync(cts.Token);
                            try
                            {
                                using (IpcezSocket server = accept.GetAwaiter().GetResult())
                                    seen.Add(BitConverter.ToInt32(server.Receive(TimeSpan.FromSeconds(5)), 0));
                            }
                            catch (OperationCanceledException)
                            {
                                Assert.True(accept.IsCanceled, "a cancelled accept ends as Canceled");
                                cancelled++;
                            }
                        }
                    }
                    Assert.True(connector.Wait(TimeSpan.FromSeconds(10)), "the clients all connected");
                    seen.Sort();
                    for (int i = 0; i < count; i++) Assert.Equal(i, seen[i], "connection " + i + " accepted once");
                    Assert.True(cancelled > 0, "some accepts were cancelled (" + cancelled + ")");
                }
                finally
                {
                    lock (clients) foreach (IpcezSocket client in clients) client.Dispose();
                }
            }
        }

        [Test(TimeoutSeconds = 300)]
        public static void DisposeDuringBlockedReceiveThousandTimes()
        {
            var random = new Random(7);
            using (var listener = Ipcez.Listen(Helpers.TempPath()))
            {
                for (int round = 0; round < 1000; round++)
                {
                    var client = Ipcez.Connect(listener.Address);
                    var server = listener.Accept(TimeSpan.FromSeconds(5));
                    Exception seen = null;
                    var blocked = new Thread(() =>
                    {
                        try { client.Receive(); }
                        catch (Exception e) { seen = e; }
                    });
                    blocked.Start();
                    if (round % 2 == 1) Thread.Sleep(random.Next(0, 3));
                    client.Dispose();
                    Assert.True(blocked.Join(TimeSpan.FromSeconds(5)), "round " + round + ": the receive returned");
                    Assert.True(seen is ConnectionLostException, "round " + round + ": ConnectionLostException, got " + seen);
                    Assert.Throws<ConnectionLostException>(() => client.Send(new byte[1]), "send after dispose");
                    server.Dispose();
                }
            }
        }

        [Test]
        public static void DisposeDuringBlockedSendEndsIt()
        {
            // A peer that never reads: the send waits for its ack until the socket is disposed.
            using (var pair = new Helpers.Pair(new ConnectOptions { AckTimeout = TimeSpan.FromSeconds(30) }))
            {
                pair.Server.MessageHandler(_ => Thread.Sleep(Timeout.Infinite)); // reads one, then never again
                pair.Client.Send(new byte[] { 1 });
                Exception seen = null;
                var blocked = new Thread(() =>
                {
                    try { for (int i = 0; i < 100; i++) pair.Client.Send(new byte[1024 * 1024]); }
                    catch (Exception e) { seen = e; }
                });
                blocked.Start();
                Thread.Sleep(300);
                pair.Client.Dispose();
                Assert.True(blocked.Join(TimeSpan.FromSeconds(5)), "the send returned after dispose");
                Assert.True(seen is ConnectionLostException, "ConnectionLostException, got " + seen);
            }
        }

        [Test]
        public static void AckTimeoutIsATimeoutException()
        {
            // A peer written with .NET's own Socket that accepts and never reads: no ack comes.
            string path = Helpers.TempPath();
            using (var raw = Helpers.RawListener(path))
            {
                try
                {
                    using (IpcezSocket sock = Ipcez.Connect(path, new ConnectOptions { AckTimeout = TimeSpan.FromMilliseconds(300) }))
                    {
                        Assert.Equal(TimeSpan.FromMilliseconds(300), sock.AckTimeout, "the ack timeout");
                        var clock = System.Diagnostics.Stopwatch.StartNew();
                        var e = Assert.Throws<RecipientAckTimeoutException>(() => sock.Send(new byte[] { 1 }), "send to a peer that never reads");
                        Assert.True(e is TimeoutException, "a RecipientAckTimeoutException is a TimeoutException");
                        Assert.True(clock.ElapsedMilliseconds >= 280 && clock.ElapsedMilliseconds < 5000, "after the ack timeout: " + clock.ElapsedMilliseconds + " ms");
                    }
                }
                finally
                {
                    Helpers.RemoveSemaphores(path);
                }
            }
        }

        [Test]
        public static void SendAsyncAndMessagesEnumeration()
        {
            using (var pair = new Helpers.Pair())
            {
                Task.WhenAll(pair.Client.SendAsync(new byte[] { 1 }), pair.Client.SendAsync(new ArraySegment<byte>(new byte[] { 9, 2, 9 }, 1, 1)))
                    .Wait(TimeSpan.FromSeconds(10));
                pair.Client.Send(new byte[] { 5, 3, 5 }, 1, 1);
                pair.Client.Dispose();
                var got = new List<byte>();
                foreach (byte[] message in pair.Server.Messages()) got.Add(message[0]);
                got.Sort();
                Assert.Equal("1,2,3", string.Join(",", got), "the messages, then the end");
            }
        }

        [Test]
        public static void ConnectAsyncAndAcceptAsync()
        {
            using (var listener = Ipcez.Listen(Helpers.TempPath()))
            {
                Task<IpcezSocket> accepted = listener.AcceptAsync();
                Assert.Throws<ArgumentOutOfRangeException>(() => listener.Accept(TimeSpan.FromSeconds(-1)), "a negative accept timeout");
                using (var never = new CancellationTokenSource())
                {
                    never.Cancel();
                    Assert.True(Ipcez.ConnectAsync(listener.Address, never.Token).IsCanceled, "cancelled before it starts");
                }
                using (IpcezSocket client = Ipcez.ConnectAsync(listener.Address, CancellationToken.None).Result)
                using (IpcezSocket server = accepted.Result)
                {
                    client.Send(new byte[] { 3 });
                    Assert.Bytes(new byte[] { 3 }, server.ReceiveAsync().Result, "received");
                    Assert.Equal(IpcezTransport.Unix, server.Transport, "transport");
                    Assert.Equal(listener.Address, client.Endpoint, "endpoint");
                }
                using (var cts = new CancellationTokenSource(100))
                {
                    Task<IpcezSocket> idle = listener.AcceptAsync(cts.Token);
                    Assert.Throws<OperationCanceledException>(() => idle.GetAwaiter().GetResult(), "cancelled accept");
                }
                Exception seen = null;
                var waiting = new Thread(() => { try { listener.Accept(); } catch (Exception e) { seen = e; } });
                waiting.Start();
                Thread.Sleep(100);
                listener.Dispose();
                Assert.True(waiting.Join(TimeSpan.FromSeconds(5)), "accept returned after dispose");
                Assert.True(seen is ConnectionLostException, "ConnectionLostException, got " + seen);
            }
        }
    }
}
