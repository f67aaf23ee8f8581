// Real peers on the other end: a Python ipcez process over a Unix socket (acks both ways)
// and the Python websockets package over WebSocket.
using System;
using System.Diagnostics;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace IpcezNet.Tests
{
    static class InteropTests
    {
        // Python replies to each message; its send returns only once the C# reader acked.
        const string PythonListener = @"
import sys, ipcez
with ipcez.listen(sys.argv[1]) as listener:
    print('ready', flush=True)
    with listener.accept(timeout=20) as peer:
        for message in peer:
            peer.send(b'python got ' + message)
            print('acked ' + message.decode(), flush=True)
    print('end', flush=True)
";

        // Python sends until the C# side, which takes nothing meanwhile, stops acking: its
        // reader stops reading once the connection's queue is full.
        const string PythonClient = @"
import sys, ipcez
with ipcez.connect(sys.argv[1], ack_timeout=0.5) as sock:
    sock.send(b'hello from python')
    print('acked', flush=True)
    for i in range(5000):
        try:
            sock.send(str(i).encode())
        except ipcez.RecipientAckTimeout:
            print('ack timeout at %d' % i, flush=True)
            break
    print(sock.recv(timeout=20).decode(), flush=True)
";

        static void Signal(Process process, string signal)
        {
            using (Process kill = Process.Start(new ProcessStartInfo("kill", "-" + signal + " " + process.Id) { UseShellExecute = false }))
                kill.WaitForExit();
        }

        [Test]
        public static void CSharpClientPythonIpcezListener()
        {
            string path = Helpers.TempPath();
            Process peer = Helpers.Python(PythonListener, path);
            try
            {
                Assert.Equal("ready", Helpers.ReadLine(peer), "the peer listens");
                using (IpcezSocket sock = Ipcez.Connect(path, new ConnectOptions { AckTimeout = TimeSpan.FromMilliseconds(500) }))
                {
                    sock.Send(Encoding.UTF8.GetBytes("hello")); // acked by the Python reader
                    Assert.Equal("python got hello", Encoding.UTF8.GetString(sock.Receive(TimeSpan.FromSeconds(20))), "the reply");
                    Assert.Equal("acked hello", Helpers.ReadLine(peer), "Python's send got the C# ack");

                    // A stopped Python process reads nothing, so no ack comes: the send times out.
                    Signal(peer, "STOP");
                    try
                    {
                        var clock = Stopwatch.StartNew();
                        Assert.Throws<RecipientAckTimeoutException>(() => sock.Send(Encoding.UTF8.GetBytes("while stopped")), "send to a stopped peer");
                        Assert.True(clock.ElapsedMilliseconds >= 450, "it waited the ack timeout (" + clock.ElapsedMilliseconds + " ms)");
                    }
                    finally
                    {
                        Signal(peer, "CONT");
                    }
                    Assert.Equal("python got while stopped", Encoding.UTF8.GetString(sock.Receive(TimeSpan.FromSeconds(20))), "read after it went on");
                    sock.Send(Encoding.UTF8.GetBytes("after"));
                    Assert.Equal("python got after", Encoding.UTF8.GetString(sock.Receive(TimeSpan.FromSeconds(20))), "the last reply");
                    Assert.Equal("acked while stopped", Helpers.ReadLine(peer), "Python acked");
                    Assert.Equal("acked after", Helpers.ReadLine(peer), "Python acked");
                }
                Assert.Equal("end", Helpers.ReadLine(peer), "Python saw the connection end");
                Helpers.Finish(peer);
            }
            finally
            {
                Helpers.Stop(peer);
            }
        }

        [Test]
        public static void PythonIpcezClientCSharpListener()
        {
            using (IpcezListener listener = Ipcez.Listen(Helpers.TempPath()))
            {
                Process peer = Helpers.Python(PythonClient, listener.Address);
                try
                {
                    using (IpcezSocket sock = listener.Accept(TimeSpan.FromSeconds(20)))
                    {
                        Assert.Equal("acked", Helpers.ReadLine(peer), "Python's send got the C# ack");
                        string line = Helpers.ReadLine(peer, 60);
                        Assert.True(line.StartsWith("ack timeout at "), "Python's sends stopped being acked: " + line);
                        int stoppedAt = int.Parse(line.Substring("ack timeout at ".Length));
                        Assert.True(stoppedAt >= 1000, "not before the queue (1,024 messages) was full: " + stoppedAt);
                        Assert.Equal("hello from python", Encoding.UTF8.GetString(sock.Receive(TimeSpan.FromSeconds(20))), "the first message");
                        for (int i = 0; i <= stoppedAt; i++) // the timed-out one was written too
                            Assert.Equal(i.ToString(), Encoding.UTF8.GetString(sock.Receive(TimeSpan.FromSeconds(20))), "message " + i);
                        Assert.True(!sock.TryReceive(TimeSpan.FromMilliseconds(200), out _), "nothing more");
                        sock.Send(Encoding.UTF8.GetBytes("hello back"));
                        Assert.Equal("hello back", Helpers.ReadLine(peer), "Python received the reply");
                    }
                    Helpers.Finish(peer);
                }
                finally
                {
                    Helpers.Stop(peer);
                }
            }
        }

        const string PythonSilent = @"
import sys, time, ipcez
with ipcez.listen(sys.argv[1]) as listener:
    print('ready', flush=True)
    with listener.accept(timeout=20) as peer:
        print('accepted', flush=True)
        time.sleep(60)
";

        [Test]
        public static void APeerKilledMidReceiveEndsIt()
        {
            string path = Helpers.TempPath();
            Process peer = Helpers.Python(PythonSilent, path);
            try
            {
                Assert.Equal("ready", Helpers.ReadLine(peer), "the peer listens");
                using (IpcezSocket sock = Ipcez.Connect(path))
                {
                    Assert.Equal("accepted", Helpers.ReadLine(peer), "the peer accepted");
                    Task<byte[]> pending = sock.ReceiveAsync();
                    Exception blocking = null;
                    var blocked = new Thread(() => { try { sock.Receive(); } catch (Exception e) { blocking = e; } });
                    blocked.Start();
                    Thread.Sleep(100);
                    Signal(peer, "KILL");
                    var e1 = Assert.Throws<AggregateException>(() => pending.Wait(TimeSpan.FromSeconds(5)), "the pending ReceiveAsync");
                    Assert.True(e1.InnerException is ConnectionLostException, "ConnectionLostException, got " + e1.InnerException);
                    Assert.True(blocked.Join(TimeSpan.FromSeconds(5)) && blocking is ConnectionLostException, "the blocked Receive: " + blocking);
                    Assert.Throws<ConnectionLostException>(() => sock.Send(new byte[1]), "a send afterwards");
                }
            }
            finally
            {
                Helpers.Stop(peer);
            }
        }

        const string WebsocketsServer = @"
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve
def handler(ws):
    try:
        for message in ws:
            if message == b'text please':
                ws.send('h\u00e9llo text')
            elif message == b'close please':
                ws.close(code=4001, reason='asked to')
            else:
                ws.send(message)
    except ConnectionClosed:
        pass
with serve(handler, '127.0.0.1', 0, max_size=8 * 1024 * 1024) as server:
    print(server.socket.getsockname()[1], flush=True)
    server.serve_forever()
";

        [Test]
        public static void CSharpClientWebsocketsServer()
        {
            Process peer = Helpers.Python(WebsocketsServer);
            try
            {
                string url = "ws://127.0.0.1:" + Helpers.ReadLine(peer) + "/";
                using (IpcezSocket sock = Ipcez.Connect(url))
                {
                    Assert.Equal(IpcezTransport.WebSocket, sock.Transport, "transport");
                    foreach (int size in new[] { 0, 1, 64 * 1024, Ipcez.MaxMessageSize })
                    {
                        byte[] data = Helpers.Pattern(size, 3);
                        sock.Send(data);
                        Assert.Bytes(data, sock.Receive(TimeSpan.FromSeconds(20)), size + " B echoed");
                    }
                    Assert.Throws<MessageTooLargeException>(() => sock.Send(new byte[Ipcez.MaxMessageSize + 1]), "4 MiB + 1");
                    sock.Send(Encoding.UTF8.GetBytes("text please"));
                    Assert.Equal("h\u00e9llo text", Encoding.UTF8.GetString(sock.Receive(TimeSpan.FromSeconds(20))), "a text message as its UTF-8 bytes");
                    sock.Send(Encoding.UTF8.GetBytes("close please"));
                    var lost = Assert.Throws<ConnectionLostException>(() => sock.Receive(TimeSpan.FromSeconds(20)), "the server closed");
                    Assert.Equal(4001, lost.CloseCode, "close code");
                    Assert.Equal("asked to", lost.CloseReason, "close reason");
                }
            }
            finally
            {
                Helpers.Stop(peer);
            }
        }

        const string WebsocketsClient = @"
import sys
from websockets.sync.client import connect
with connect(sys.argv[1], max_size=8 * 1024 * 1024) as ws:
    ws.send(b'x' * 1000000)
    reply = ws.recv(timeout=20)
    print(type(reply).__name__, len(reply), flush=True)
    ws.send('text from websockets')
    print(ws.recv(timeout=20).decode(), flush=True)
";

        [Test]
        public static void WebsocketsClientCSharpListener()
        {
            using (IpcezListener listener = Ipcez.Listen("ws://127.0.0.1:0/"))
            {
                Assert.True(listener.Address.StartsWith("ws://127.0.0.1:") && !listener.Address.StartsWith("ws://127.0.0.1:0/"), "the real port: " + listener.Address);
                Process peer = Helpers.Python(WebsocketsClient, listener.Address);
                try
                {
                    using (IpcezSocket sock = listener.Accept(TimeSpan.FromSeconds(20)))
                    {
                        byte[] big = sock.Receive(TimeSpan.FromSeconds(20));
                        Assert.Equal(1000000, big.Length, "the binary message");
                        sock.Send(new byte[12345]);
                        Assert.Equal("bytes 12345", Helpers.ReadLine(peer), "websockets got a binary message");
                        Assert.Equal("text from websockets", Encoding.UTF8.GetString(sock.Receive(TimeSpan.FromSeconds(20))), "the text message");
                        sock.Send(Encoding.UTF8.GetBytes("bye"));
                        Assert.Equal("bye", Helpers.ReadLine(peer), "websockets got the last message");
                        Assert.Throws<ConnectionLostException>(() => sock.Receive(TimeSpan.FromSeconds(20)), "websockets closed");
                    }
                    Helpers.Finish(peer);
                }
                finally
                {
                    Helpers.Stop(peer);
                }
            }
        }
    }
}
