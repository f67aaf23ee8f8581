// The entry point: Ipcez.Connect(endpoint), Ipcez.Listen(endpoint), Ipcez.Which, Ipcez.AckNames.
// The namespace is IpcezNet, not Ipcez: a class named like its namespace would make
// `Ipcez.Connect` resolve to the namespace after `using Ipcez;`.
using System;
using System.Threading;
using System.Threading.Tasks;

namespace IpcezNet
{
    /// <summary>Messaging between processes: a Unix domain socket (or a Windows named pipe)
    /// for a local endpoint, a WebSocket for a ws:// or wss:// URL.</summary>
    public static class Ipcez
    {
        /// <summary>The version of this assembly; the native library must report the same.</summary>
        public const string Version = "0.1.0";

        /// <summary>The largest message, in bytes, in either direction (4 MiB).</summary>
        public const int MaxMessageSize = 4 * 1024 * 1024;

        /// <summary>Connects to <paramref name="endpoint"/>. A ws:// or wss:// URL (any case)
        /// connects over WebSocket; anything else is local, and the environment variables
        /// target and os (IPCEZ_TARGET / IPCEZ_OS win) pick a Unix socket (local + linux) or a
        /// named pipe (local + windows).</summary>
        /// <exception cref="DetectionException">target / os are missing or invalid.</exception>
        /// <exception cref="UnsupportedCombinationException">this build cannot serve the pair.</exception>
        /// <exception cref="IpcezIOException">e.g. Errno 2 (no such socket) or 111 (refused).</exception>
        /// <exception cref="WebSocketProtocolException">the WebSocket handshake failed.</exception>
        public static IpcezSocket Connect(string endpoint, ConnectOptions options = null)
        {
            Native.Ready();
            using (ConnectOptionsHandle opts = (options ?? new ConnectOptions()).ToNative())
            {
                return new IpcezSocket(Open(endpoint, (IntPtr p, UIntPtr n, out SocketHandle s, out IntPtr e) => Native.ConnectWith(p, n, opts, out s, out e)));
            }
        }

        delegate uint OpenFn<T>(IntPtr endpoint, UIntPtr length, out T handle, out IntPtr err);

        /// <summary>Calls a native connect or listen with the endpoint as UTF-8; the new handle,
        /// or the library's error as an exception.</summary>
        static T Open<T>(string endpoint, OpenFn<T> open) where T : IpcezHandle
        {
            T handle = null;
            Interop.Outcome outcome = Interop.WithUtf8(endpoint, "endpoint", (p, n) =>
            {
                IntPtr err;
                uint rc = open(p, n, out handle, out err);
                return Interop.Pair(rc, err);
            });
            if (outcome.Rc == Native.Ok) return handle;
            if (handle != null) handle.Dispose();
            throw Errors.Take(outcome.Rc, outcome.Err);
        }

        /// <summary>Like <see cref="Connect"/> without blocking the caller (a WebSocket
        /// handshake may take up to 30 s). Cancelling abandons the wait; a connection that
        /// completes afterwards is closed at once.</summary>
        public static Task<IpcezSocket> ConnectAsync(string endpoint, ConnectOptions options = null, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (cancellationToken.IsCancellationRequested) return Task.FromCanceled<IpcezSocket>(cancellationToken);
            var done = new TaskCompletionSource<IpcezSocket>();
            CancellationTokenRegistration registration = cancellationToken.Register(() => done.TrySetCanceled(cancellationToken));
            Task.Run(() =>
            {
                try
                {
                    IpcezSocket socket = Connect(endpoint, options);
                    if (!done.TrySetResult(socket)) socket.Dispose(); // the caller gave up
                }
                catch (Exception e)
                {
                    done.TrySetException(e);
                }
                finally
                {
                    registration.Dispose();
                }
            });
            return done.Task;
        }

        /// <summary>Like <see cref="Connect"/> without blocking the caller, with the default options.</summary>
        public static Task<IpcezSocket> ConnectAsync(string endpoint, CancellationToken cancellationToken)
        {
            return ConnectAsync(endpoint, null, cancellationToken);
        }

        /// <summary>Listens on <paramref name="endpoint"/>: a Unix socket path, a named pipe,
        /// or a ws:// / wss:// URL (port 0 picks a free port; see <see cref="IpcezListener.Address"/>).</summary>
        public static IpcezListener Listen(string endpoint, ListenOptions options = null)
        {
            Native.Ready();
            using (ListenOptionsHandle opts = (options ?? new ListenOptions()).ToNative())
            {
                return new IpcezListener(Open(endpoint, (IntPtr p, UIntPtr n, out ListenerHandle l, out IntPtr e) => Native.ListenWith(p, n, opts, out l, out e)));
            }
        }

        /// <summary>Which transport and address <see cref="Connect"/> would use, without
        /// connecting; throws what Connect would for a bad endpoint or environment.</summary>
        public static Resolution Which(string endpoint)
        {
            Native.Ready();
            uint transport = 0;
            IntPtr address = IntPtr.Zero;
            Interop.Outcome outcome = Interop.WithUtf8(endpoint, "endpoint", (p, n) =>
            {
                IntPtr err;
                uint rc = Native.Resolve(p, n, out transport, out address, out err);
                return Interop.Pair(rc, err);
            });
            if (outcome.Rc != Native.Ok) throw Errors.Take(outcome.Rc, outcome.Err);
            return new Resolution((IpcezTransport)transport, Native.TakeText(address));
        }

        /// <summary>The names of the endpoint's acknowledgement semaphores (data_ready,
        /// data_acked), for a peer written without ipcez.</summary>
        public static (string DataReady, string DataAcked) AckNames(string endpoint)
        {
            Native.Ready();
            IntPtr ready = IntPtr.Zero, acked = IntPtr.Zero;
            Interop.Outcome outcome = Interop.WithUtf8(endpoint, "endpoint", (p, n) =>
            {
                IntPtr err;
                uint rc = Native.AckNames(p, n, out ready, out acked, out err);
                return Interop.Pair(rc, err);
            });
            if (outcome.Rc != Native.Ok) throw Errors.Take(outcome.Rc, outcome.Err);
            string first = Native.TakeText(ready);
            return (first, Native.TakeText(acked));
        }

        /// <summary>The native library file in use (loading it on first use).</summary>
        public static string NativeLibraryPath
        {
            get
            {
                Native.Ready();
                return Native.LibraryPath;
            }
        }

        /// <summary>Raised with an exception a message handler threw. Delivery goes on. Without
        /// a subscriber the exception is written to standard error.</summary>
        public static event Action<Exception> HandlerException;

        internal static void ReportHandlerException(Exception e)
        {
            Action<Exception> report = HandlerException;
            try
            {
                if (report != null) report(e);
                else Console.Error.WriteLine("Exception in an ipcez message handler (delivery goes on): " + e);
            }
            catch (Exception)
            {
                // a failing report must not end the delivery either
            }
        }
    }
}
