// Errors come from the library, as the matching .NET exception.
using System;
using System.IO;

namespace IpcezNet.Tests
{
    static class ErrorTests
    {
        [Test]
        public static void DetectionExceptionNamesTheVariable()
        {
            string saved = Environment.GetEnvironmentVariable("target");
            string savedOs = Environment.GetEnvironmentVariable("os");
            try
            {
                Environment.SetEnvironmentVariable("target", null);
                Environment.SetEnvironmentVariable("IPCEZ_TARGET", null);
                var e = Assert.Throws<DetectionException>(() => Ipcez.Connect(Helpers.TempPath()), "connect without target");
                Assert.True(e is ArgumentException, "a DetectionException is an ArgumentException");
                Assert.Equal("target", e.Variable, "the variable");
                Assert.True(e.Message.Contains("target"), "the message names it: " + e.Message);
                Environment.SetEnvironmentVariable("target", "local");
                Environment.SetEnvironmentVariable("os", "plan9");
                var bad = Assert.Throws<DetectionException>(() => Ipcez.Which("/tmp/x.sock"), "an invalid os");
                Assert.Equal("os", bad.Variable, "the variable");
                Assert.True(bad.Message.Contains("plan9"), "the message quotes the value: " + bad.Message);
                Environment.SetEnvironmentVariable("os", "windows");
                var pair = Assert.Throws<UnsupportedCombinationException>(() => Ipcez.Connect("pipe"), "local + windows on Linux");
                Assert.Equal("local", pair.Target, "target");
                Assert.Equal("windows", pair.Os, "os");
            }
            finally
            {
                Environment.SetEnvironmentVariable("target", saved);
                Environment.SetEnvironmentVariable("os", savedOs);
            }
        }

        [Test]
        public static void UnreachablePathIsAnIOExceptionWithErrno()
        {
            string path = Path.Combine(Path.GetTempPath(), "ipcez-cs-missing-dir", "nobody.sock");
            var e = Assert.Throws<IpcezIOException>(() => Ipcez.Connect(path), "connect to a missing path");
            Assert.True(e is IOException, "an IpcezIOException is an IOException");
            Assert.Equal(2, e.Errno, "errno ENOENT");
            Assert.True(e.Message.Contains(path), "the message names the path: " + e.Message);
            Assert.Throws<ArgumentNullException>(() => Ipcez.Connect(null), "a null endpoint");
            var empty = Assert.Throws<IpcezIOException>(() => Ipcez.Connect(""), "an empty endpoint");
            Assert.Equal(22, empty.Errno, "errno EINVAL");
        }

        [Test]
        public static void RefusedConnectionHasErrno()
        {
            // A socket file nobody listens on any more.
            string path = Helpers.TempPath();
            using (var raw = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified))
                raw.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
            try
            {
                var e = Assert.Throws<IpcezIOException>(() => Ipcez.Connect(path), "connect to a stale socket file");
                Assert.Equal(111, e.Errno, "errno ECONNREFUSED");
                Assert.True(e.Message.Contains("refused") && e.Message.Contains(path), "the message says what and where: " + e.Message);
            }
            finally
            {
                File.Delete(path);
            }
        }

        [Test]
        public static void APeerAnnouncingTooLargeAFrameIsCutOff()
        {
            // A hostile server written with .NET's Socket announces 4 GiB - 1: one I/O error,
            // then the end; the 4 GiB are never allocated.
            string path = Helpers.TempPath();
            using (var raw = Helpers.RawListener(path))
            {
                try
                {
                    using (IpcezSocket sock = Ipcez.Connect(path))
                    using (var peer = raw.Accept())
                    {
                        peer.Send(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3 });
                        var e = Assert.Throws<IpcezIOException>(() => sock.Receive(TimeSpan.FromSeconds(5)), "the lying frame");
                        Assert.True(!(e is ConnectionLostException) && e.Message.Contains("4194304"), "a protocol error naming the limit: " + e.GetType().Name + ": " + e.Message);
                        Assert.Throws<ConnectionLostException>(() => sock.Receive(TimeSpan.FromSeconds(5)), "then the end");
                    }
                }
                finally
                {
                    Helpers.RemoveSemaphores(path);
                }
            }
        }

        [Test]
        public static void AServerAnswering404IsAWebSocketProtocolException()
        {
            // An HTTP server written with .NET's TcpListener that refuses the upgrade.
            var server = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
            server.Start();
            try
            {
                int port = ((System.Net.IPEndPoint)server.LocalEndpoint).Port;
                var answer = System.Threading.Tasks.Task.Run(() =>
                {
                    using (var peer = server.AcceptSocket())
                    {
                        peer.Receive(new byte[4096]);
                        peer.Send(System.Text.Encoding.ASCII.GetBytes("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"));
                        peer.Poll(2 * 1000 * 1000, System.Net.Sockets.SelectMode.SelectRead); // until the client hangs up
                    }
                });
                var e = Assert.Throws<WebSocketProtocolException>(() => Ipcez.Connect("ws://127.0.0.1:" + port + "/x"), "a 404 answer");
                Assert.True(e is IpcezException && e.Kind == IpcezErrorKind.WebSocket, "an IpcezException of kind WebSocket");
                Assert.True(e.Message.Contains("404"), "the library's message names the status: " + e.Message);
                Assert.True(answer.Wait(TimeSpan.FromSeconds(5)), "the server saw the request");
            }
            finally
            {
                server.Stop();
            }
        }

        [Test]
        public static void WhichAndAckNames()
        {
            Resolution ws = Ipcez.Which("WS://example.com:9/x");
            Assert.Equal(IpcezTransport.WebSocket, ws.Transport, "ws transport");
            Resolution unix = Ipcez.Which("/tmp/which.sock");
            Assert.Equal(IpcezTransport.Unix, unix.Transport, "unix transport");
            Assert.Equal("/tmp/which.sock", unix.Address, "unix address");
            var names = Ipcez.AckNames("/tmp/which.sock");
            Assert.True(names.DataReady.Length > 0 && names.DataAcked.Length > 0 && names.DataReady != names.DataAcked, "two names: " + names);
            Assert.True(Ipcez.NativeLibraryPath.Length > 0, "the library path is known");
        }
    }
}
