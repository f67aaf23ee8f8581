// ConnectOptions and ListenOptions reach the library.
using System;
using System.Diagnostics;

namespace IpcezNet.Tests
{
    static class OptionsTests
    {
        static string Mode(string path)
        {
            using (Process stat = Process.Start(new ProcessStartInfo("stat", "-c %a " + path) { UseShellExecute = false, RedirectStandardOutput = true }))
            {
                string mode = stat.StandardOutput.ReadToEnd().Trim();
                stat.WaitForExit();
                return mode;
            }
        }

        [Test]
        public static void ModeOfTheSocketFile()
        {
            using (IpcezListener owner = Ipcez.Listen(Helpers.TempPath()))
                Assert.Equal("600", Mode(owner.Address), "the default mode");
            using (IpcezListener group = Ipcez.Listen(Helpers.TempPath(), new ListenOptions { Mode = Convert.ToInt32("660", 8) }))
                Assert.Equal("660", Mode(group.Address), "mode 0660");
        }

        [Test]
        public static void SubprotocolsAreNegotiated()
        {
            var listen = new ListenOptions();
            listen.Subprotocols.Add("chat.v2");
            using (IpcezListener listener = Ipcez.Listen("ws://127.0.0.1:0/", listen))
            {
                var connect = new ConnectOptions();
                connect.Subprotocols.Add("chat.v3");
                connect.Subprotocols.Add("chat.v2");
                using (IpcezSocket client = Ipcez.Connect(listener.Address, connect))
                using (IpcezSocket server = listener.Accept(TimeSpan.FromSeconds(5)))
                {
                    Assert.Equal("chat.v2", client.Subprotocol, "the client's subprotocol");
                    Assert.Equal("chat.v2", server.Subprotocol, "the server's subprotocol");
                }
                using (IpcezSocket plain = Ipcez.Connect(listener.Address))
                    Assert.Equal(null, plain.Subprotocol, "none offered, none agreed");
            }
        }

        [Test]
        public static void BadOptionsAreRefusedBeforeAnythingHappens()
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => Ipcez.Connect("/tmp/x.sock", new ConnectOptions { AckTimeout = TimeSpan.Zero }), "a zero ack timeout");
            var cap = Assert.Throws<ArgumentOutOfRangeException>(() => Ipcez.Listen(Helpers.TempPath(), new ListenOptions { MaxConnections = 0 }), "a cap of 0");
            Assert.Equal("MaxConnections", cap.ParamName, "the option named");
            Assert.Throws<ArgumentOutOfRangeException>(() => Ipcez.Listen(Helpers.TempPath(), new ListenOptions { MaxConnections = -1 }), "a negative cap");
            var mode = Assert.Throws<ArgumentOutOfRangeException>(() => Ipcez.Listen(Helpers.TempPath(), new ListenOptions { Mode = -1 }), "a negative mode");
            Assert.Equal("Mode", mode.ParamName, "the option named");
            var bad = new ConnectOptions();
            bad.Subprotocols.Add("no spaces allowed");
            var e = Assert.Throws<Exception>(() => Ipcez.Connect("ws://127.0.0.1:9/", bad), "an invalid subprotocol");
            Assert.True(e is IIpcezException && e.Message.Contains("subprotocol"), "the library's message: " + e.GetType().Name + ": " + e.Message);
            var tls = new ListenOptions { CertFile = "/nonexistent/cert.pem", KeyFile = "/nonexistent/key.pem" };
            var t = Assert.Throws<Exception>(() => Ipcez.Listen("wss://127.0.0.1:0/", tls), "missing TLS files");
            Assert.True(t is IIpcezException && t.Message.Contains("/nonexistent/cert.pem"), "names the file: " + t.GetType().Name + ": " + t.Message);
        }
    }
}
