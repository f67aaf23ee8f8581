// The server side, every transport: each accepted connection is an IpcezSocket.
using System;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;

namespace IpcezNet
{
    /// <summary>Accepts connections on one endpoint. Comes from <see cref="Ipcez.Listen"/>.
    /// Disposing it stops accepting, removes a Unix socket file and the endpoint's
    /// acknowledgement semaphores, and closes connections nobody accepted yet; accepted
    /// sockets stay open.</summary>
    public sealed class IpcezListener : IDisposable
#if NETCOREAPP3_0_OR_GREATER
        , IAsyncDisposable
#endif
    {
        readonly ListenerHandle handle;
        int closed;
        readonly AsyncWaiters<IpcezSocket> acceptors;

        internal IpcezListener(ListenerHandle handle)
        {
            this.handle = handle;
            acceptors = new AsyncWaiters<IpcezSocket>(AcceptOnce, Watch);
            Address = Native.TakeText(Native.ListenerAddress(handle)) ?? "";
        }

        /// <summary>The socket path, or the ws:// URL with the real port when port 0 was asked.</summary>
        public string Address { get; private set; }

        /// <summary>The next connection, waiting up to <paramref name="timeout"/> (null: no limit).</summary>
        /// <exception cref="TimeoutException">none came in time.</exception>
        /// <exception cref="ConnectionLostException">the listener is disposed.</exception>
        public IpcezSocket Accept(TimeSpan? timeout = null)
        {
            bool forever = !timeout.HasValue || timeout.Value == Timeout.InfiniteTimeSpan;
            if (!forever && timeout.Value < TimeSpan.Zero) throw new ArgumentOutOfRangeException("timeout", timeout, "timeout must be >= 0");
            Stopwatch clock = Stopwatch.StartNew();
            while (true)
            {
                uint wait = forever ? Native.SliceMs : Math.Min(Native.SliceMs, Interop.MillisLeft(timeout.Value, clock));
                IpcezSocket socket = AcceptOnce(wait);
                if (socket != null) return socket;
                if (!forever && clock.Elapsed >= timeout.Value)
                    throw new TimeoutException("no connection within " + timeout.Value.TotalSeconds + " s");
            }
        }

        /// <summary>The next connection, without blocking the caller. Cancelling loses no
        /// connection: one taken is returned, others stay for the next accept.</summary>
        public Task<IpcezSocket> AcceptAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            return acceptors.Next(cancellationToken);
        }

        Exception Watch(Reactor reactor, ulong token)
        {
            return Interop.ErrorOf((out IntPtr err) => Native.ListenerWatch(handle, reactor.Poller, token, out err));
        }

        IpcezSocket AcceptOnce(uint timeoutMs)
        {
            if (Volatile.Read(ref closed) != 0) throw Errors.Closed();
            SocketHandle socket = null;
            try
            {
                IntPtr err;
                uint rc = Native.ListenerAccept(handle, timeoutMs, out socket, out err);
                if (rc == Native.Ok) return new IpcezSocket(socket);
                if (socket != null) socket.Dispose();
                if (rc == Native.TimedOut) return null;
                throw Errors.Take(rc, err);
            }
            catch (ObjectDisposedException)
            {
                throw Errors.Closed();
            }
        }

        /// <summary>Stops accepting (idempotent); a waiting Accept ends with ConnectionLostException.</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref closed, 1) != 0) return;
            try { Native.ListenerClose(handle); }
            catch (ObjectDisposedException) { }
            handle.Dispose();
            acceptors.Close(Errors.Closed());
        }

        /// <summary>Same as <see cref="Dispose"/>.</summary>
        public void Close() { Dispose(); }

#if NETCOREAPP3_0_OR_GREATER
        /// <summary>Same as <see cref="Dispose"/>.</summary>
        public ValueTask DisposeAsync() { Dispose(); return default; }
#endif

        /// <inheritdoc/>
        public override string ToString() { return "IpcezListener " + Address; }
    }
}
