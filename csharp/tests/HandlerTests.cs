// The message handler: one call per message, then one with the end, then nothing.
using System;
using System.Collections.Generic;
using System.Threading;

namespace IpcezNet.Tests
{
    static class HandlerTests
    {
        sealed class Recorder
        {
            public readonly List<string> Calls = new List<string>();
            public readonly ManualResetEventSlim Ended = new ManualResetEventSlim();
            public Exception End;

            public void OnMessage(byte[] message)
            {
                lock (Calls) Calls.Add("m" + message[0]);
            }

            public void OnEnd(Exception end)
            {
                lock (Calls) Calls.Add("end");
                End = end;
                Ended.Set();
            }
        }

        [Test]
        public static void LastCallComesOnceWhenThePeerCloses()
        {
            using (var pair = new Helpers.Pair())
            {
                pair.Client.Send(new byte[] { 1 }); // before the handler: delivered first
                var rec = new Recorder();
                pair.Server.MessageHandler(rec.OnMessage, rec.OnEnd);
                pair.Client.Send(new byte[] { 2 });
                pair.Client.Send(new byte[] { 3 });
                pair.Client.Dispose();
                Assert.True(rec.Ended.Wait(TimeSpan.FromSeconds(5)), "the final call came");
                Assert.True(rec.End is ConnectionLostException, "it carries ConnectionLostException, got " + rec.End);
                Thread.Sleep(200);
                lock (rec.Calls) Assert.Equal("m1,m2,m3,end", string.Join(",", rec.Calls), "calls");
                Assert.Throws<InvalidOperationException>(() => pair.Server.Receive(TimeSpan.FromMilliseconds(10)), "receive while a handler is set");
            }
        }

        [Test]
        public static void AHandlerAndReceiveAsyncDoNotShareMessages()
        {
            using (var pair = new Helpers.Pair())
            {
                // A pending ReceiveAsync would take the next message behind the handler's back.
                System.Threading.Tasks.Task<byte[]> pending = pair.Server.ReceiveAsync();
                var e = Assert.Throws<InvalidOperationException>(() => pair.Server.MessageHandler(_ => { }), "a handler while a ReceiveAsync is pending");
                Assert.True(e.Message.Contains("ReceiveAsync is pending"), "says why: " + e.Message);
                pair.Client.Send(new byte[] { 1 });
                Assert.Bytes(new byte[] { 1 }, pending.Result, "the pending receive got its message");

                var got = new List<byte>();
                var two = new ManualResetEventSlim();
                pair.Server.MessageHandler(m => { lock (got) got.Add(m[0]); if (m[0] == 3) two.Set(); });
                Assert.Throws<InvalidOperationException>(() => pair.Server.ReceiveAsync(), "a ReceiveAsync once a handler is set");
                pair.Client.Send(new byte[] { 2 });
                pair.Client.Send(new byte[] { 3 });
                Assert.True(two.Wait(TimeSpan.FromSeconds(5)), "the handler got the later messages");
                lock (got) Assert.Equal("2,3", string.Join(",", got), "all of them, in order");
            }
        }

        [Test]
        public static void DisposeGivesTheFinalCallBeforeReturning()
        {
            using (var pair = new Helpers.Pair())
            {
                var rec = new Recorder();
                pair.Server.MessageHandler(rec.OnMessage, rec.OnEnd);
                pair.Client.Send(new byte[] { 4 });
                for (int i = 0; i < 500 && !rec.Calls.Contains("m4"); i++) Thread.Sleep(10); // taken before the dispose
                pair.Server.Dispose();
                Assert.True(rec.Ended.IsSet, "the final call came before Dispose returned");
                lock (rec.Calls) Assert.Equal("m4,end", string.Join(",", rec.Calls), "calls");
                Assert.Throws<ConnectionLostException>(() => pair.Server.MessageHandler(_ => { }), "a handler on a disposed socket");
            }
        }

        [Test]
        public static void AThrowingHandlerDoesNotStopDelivery()
        {
            var reported = new List<Exception>();
            Action<Exception> report = e => { lock (reported) reported.Add(e); };
            Ipcez.HandlerException += report;
            try
            {
                using (var pair = new Helpers.Pair())
                {
                    var rec = new Recorder();
                    pair.Server.MessageHandler(m => { rec.OnMessage(m); throw new InvalidOperationException("boom " + m[0]); }, rec.OnEnd);
                    pair.Client.Send(new byte[] { 1 });
                    pair.Client.Send(new byte[] { 2 });
                    pair.Client.Dispose();
                    Assert.True(rec.Ended.Wait(TimeSpan.FromSeconds(5)), "the final call came");
                    lock (rec.Calls) Assert.Equal("m1,m2,end", string.Join(",", rec.Calls), "calls");
                    lock (reported) Assert.Equal(2, reported.Count, "exceptions reported");
                }
            }
            finally
            {
                Ipcez.HandlerException -= report;
            }
        }

        [Test]
        public static void AStuckHandlerDelaysDisposeByAtMostOneSecond()
        {
            using (var pair = new Helpers.Pair())
            {
                var entered = new ManualResetEventSlim();
                int ends = 0;
                pair.Server.MessageHandler(_ => { entered.Set(); Thread.Sleep(Timeout.Infinite); }, _ => Interlocked.Increment(ref ends));
                pair.Client.Send(new byte[] { 1 });
                Assert.True(entered.Wait(TimeSpan.FromSeconds(5)), "the handler was called");
                var clock = System.Diagnostics.Stopwatch.StartNew();
                pair.Server.Dispose();
                Assert.True(clock.ElapsedMilliseconds < 2000, "dispose returned within the grace, " + clock.ElapsedMilliseconds + " ms");
                Assert.Equal(0, ends, "a stuck handler gets no final call");
            }
        }

        [Test]
        public static void HandlersDisposingEachOthersSocketsDoNotDeadlock()
        {
            using (var pair = new Helpers.Pair())
            {
                var done = new CountdownEvent(2);
                pair.Client.Send(new byte[] { 1 }); // waiting before the handlers: both are called at once
                pair.Server.Send(new byte[] { 2 });
                var go = new ManualResetEventSlim();
                pair.Server.MessageHandler(_ => { go.Wait(); pair.Client.Dispose(); }, _ => done.Signal());
                pair.Client.MessageHandler(_ => { go.Wait(); pair.Server.Dispose(); }, _ => done.Signal());
                go.Set();
                Assert.True(done.Wait(TimeSpan.FromSeconds(5)), "both handlers ended");
            }
        }
    }
}
