// Settings and small result types. Defaults are the library's (ack timeout 5 s, mode 0600,
// up to 1024 connections, fewer under a low descriptor limit); a value left null here is not
// sent, so the library's default holds.
using System;
using System.Collections.Generic;

namespace IpcezNet
{
    /// <summary>The transport an endpoint resolves to.</summary>
    public enum IpcezTransport
    {
        /// <summary>A Unix domain socket.</summary>
        Unix = 1,
        /// <summary>A WebSocket (ws://, wss://).</summary>
        WebSocket = 2,
        /// <summary>A Windows named pipe.</summary>
        NamedPipe = 3,
    }

    /// <summary>Settings of <see cref="Ipcez.Connect"/>.</summary>
    public sealed class ConnectOptions
    {
        /// <summary>How long a local send waits for the recipient's acknowledgement (null: 5 s).</summary>
        public TimeSpan? AckTimeout { get; set; }

        /// <summary>WebSocket subprotocols to offer, in order of preference.</summary>
        public IList<string> Subprotocols { get; } = new List<string>();

        internal ConnectOptionsHandle ToNative()
        {
            var handle = Native.ConnectOptionsNew();
            try
            {
                if (AckTimeout.HasValue) Native.ConnectOptionsSetAckTimeoutMs(handle, Millis(AckTimeout.Value, "AckTimeout"));
                foreach (string name in Subprotocols)
                    Check(Interop.WithUtf8(name, "subprotocol", (p, n) => { IntPtr err; uint rc = Native.ConnectOptionsAddSubprotocol(handle, p, n, out err); return Interop.Pair(rc, err); }));
                return handle;
            }
            catch
            {
                handle.Dispose();
                throw;
            }
        }

        internal static uint Millis(TimeSpan value, string what)
        {
            if (value <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(what, value, what + " must be longer than zero");
            double ms = Math.Ceiling(value.TotalMilliseconds);
            return ms >= uint.MaxValue - 1 ? uint.MaxValue - 1 : (uint)ms;
        }

        internal static void Check(Interop.Outcome outcome)
        {
            if (outcome.Rc != Native.Ok) throw Errors.Take(outcome.Rc, outcome.Err);
        }
    }

    /// <summary>Settings of <see cref="Ipcez.Listen"/>.</summary>
    public sealed class ListenOptions
    {
        /// <summary>Permission bits of a Unix socket file (null: 0600, owner only).</summary>
        public int? Mode { get; set; }

        /// <summary>The ack timeout of accepted connections (null: 5 s).</summary>
        public TimeSpan? AckTimeout { get; set; }

        /// <summary>Cap on open connections, accepted or waiting (null: the library's default, 1024 or fewer to fit under the descriptor limit).</summary>
        public int? MaxConnections { get; set; }

        /// <summary>PEM certificate chain file of a wss:// listener.</summary>
        public string CertFile { get; set; }

        /// <summary>PEM private key file of a wss:// listener.</summary>
        public string KeyFile { get; set; }

        /// <summary>Other WebSocket Origins to accept (e.g. https://app.example.com; "*" for any).</summary>
        public IList<string> Origins { get; } = new List<string>();

        /// <summary>WebSocket subprotocols this listener speaks.</summary>
        public IList<string> Subprotocols { get; } = new List<string>();

        internal ListenOptionsHandle ToNative()
        {
            var handle = Native.ListenOptionsNew();
            try
            {
                if (Mode.HasValue) Native.ListenOptionsSetMode(handle, (uint)AtLeast(Mode.Value, 0, "Mode"));
                if (AckTimeout.HasValue) Native.ListenOptionsSetAckTimeoutMs(handle, ConnectOptions.Millis(AckTimeout.Value, "AckTimeout"));
                if (MaxConnections.HasValue) Native.ListenOptionsSetMaxConnections(handle, new UIntPtr((uint)AtLeast(MaxConnections.Value, 1, "MaxConnections")));
                if (CertFile != null || KeyFile != null)
                    ConnectOptions.Check(Interop.WithUtf8(CertFile ?? "", "CertFile", (c, cn) => Interop.WithUtf8(KeyFile ?? "", "KeyFile", (k, kn) =>
                    {
                        IntPtr err;
                        uint rc = Native.ListenOptionsSetTls(handle, c, cn, k, kn, out err);
                        return Interop.Pair(rc, err);
                    })));
                foreach (string origin in Origins)
                    ConnectOptions.Check(Interop.WithUtf8(origin, "origin", (p, n) => { IntPtr err; uint rc = Native.ListenOptionsAddOrigin(handle, p, n, out err); return Interop.Pair(rc, err); }));
                foreach (string name in Subprotocols)
                    ConnectOptions.Check(Interop.WithUtf8(name, "subprotocol", (p, n) => { IntPtr err; uint rc = Native.ListenOptionsAddSubprotocol(handle, p, n, out err); return Interop.Pair(rc, err); }));
                return handle;
            }
            catch
            {
                handle.Dispose();
                throw;
            }
        }

        static int AtLeast(int value, int least, string what)
        {
            if (value < least) throw new ArgumentOutOfRangeException(what, value, what + " must be >= " + least);
            return value;
        }
    }

    /// <summary>Where an endpoint leads, without connecting (see <see cref="Ipcez.Which"/>).</summary>
    public sealed class Resolution
    {
        internal Resolution(IpcezTransport transport, string address)
        {
            Transport = transport;
            Address = address;
        }

        /// <summary>Unix, WebSocket or NamedPipe.</summary>
        public IpcezTransport Transport { get; private set; }

        /// <summary>The socket path, the URL, or \\.\pipe\name.</summary>
        public string Address { get; private set; }

        /// <inheritdoc/>
        public override string ToString() { return Transport + " " + Address; }
    }
}
