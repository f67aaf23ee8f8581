// One connection, any transport. The native library reads messages in the background from
// the moment the connection exists; this class takes them (Receive, ReceiveAsync, Messages)
// or hands them to a handler running on a thread of its own (MessageHandler).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;
#if NETCOREAPP3_0_OR_GREATER
using System.Runtime.CompilerServices;
#endif

namespace IpcezNet
{
    /// <summary>A connection to a peer over a Unix socket, a named pipe or a WebSocket. Comes
    /// from <see cref="Ipcez.Connect"/> or <see cref="IpcezListener.Accept"/>. All members are
    /// thread-safe; sends from several threads never interleave.</summary>
    public sealed class IpcezSocket : IDisposable
#if NETCOREAPP3_0_OR_GREATER
        , IAsyncDisposable
#endif
    {
        /// <summary>The first ack wait, inside the send call itself; then slices of
        /// Native.SliceMs, between which a cancellation is seen. The library keeps the ack deadline.</summary>
        const uint FirstAckMs = 50, SliceMs = Native.SliceMs;

        readonly SocketHandle handle;
        int closed;
        MessageDispatcher dispatcher;
        readonly object handlerGate = new object();
        readonly AsyncWaiters<byte[]> receivers;
        readonly AckWaiters acks;

        internal IpcezSocket(SocketHandle handle)
        {
            this.handle = handle;
            Transport = (IpcezTransport)Native.SocketTransport(handle);
            acks = new AckWaiters(handle, Transport != IpcezTransport.WebSocket);
            receivers = new AsyncWaiters<byte[]>(ReceiveOnce, Watch, acks.Collect);
            acks.Owner = receivers;
            Endpoint = Native.TakeText(Native.SocketEndpoint(handle)) ?? "";
            Subprotocol = Native.TakeText(Native.SocketSubprotocol(handle));
            AckTimeout = TimeSpan.FromMilliseconds(Native.SocketAckTimeoutMs(handle));
        }

        /// <summary>Unix, WebSocket or NamedPipe.</summary>
        public IpcezTransport Transport { get; private set; }

        /// <summary>The endpoint connected to (for an accepted socket, the listener's address).</summary>
        public string Endpoint { get; private set; }

        /// <summary>The WebSocket subprotocol the handshake agreed on, or null.</summary>
        public string Subprotocol { get; private set; }

        /// <summary>How long a local send waits for the recipient's acknowledgement.</summary>
        public TimeSpan AckTimeout { get; private set; }

        /// <summary>True once disposed or once the connection is lost.</summary>
        public bool IsClosed
        {
            get
            {
                if (Volatile.Read(ref closed) != 0) return true;
                try { return Native.SocketIsClosed(handle); }
                catch (ObjectDisposedException) { return true; }
            }
        }

        // -- sending ---------------------------------------------------------------

        /// <summary>Sends <paramref name="data"/> (0 B to 4 MiB) as one message. On local
        /// transports it returns once the peer has read it.</summary>
        /// <exception cref="MessageTooLargeException">over 4 MiB; nothing sent, the socket stays usable.</exception>
        /// <exception cref="RecipientAckTimeoutException">no acknowledgement within <see cref="AckTimeout"/>.</exception>
        /// <exception cref="ConnectionLostException">the connection is gone or the socket disposed.</exception>
        public void Send(byte[] data)
        {
            if (data == null) throw new ArgumentNullException("data");
            SendCore(data, 0, data.Length, CancellationToken.None);
        }

        /// <summary>Sends <paramref name="count"/> bytes of <paramref name="data"/> from <paramref name="offset"/> as one message.</summary>
        public void Send(byte[] data, int offset, int count)
        {
            CheckRange(data, offset, count);
            SendCore(data, offset, count, CancellationToken.None);
        }

        /// <summary>Sends without blocking the caller, and without a thread waiting for the
        /// acknowledgement (the library's reactor completes the task). Cancelled before the
        /// message is written, nothing is sent; cancelled while waiting for the acknowledgement,
        /// the message may still be delivered (the OperationCanceledException says so).</summary>
        public Task SendAsync(byte[] data, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (data == null) throw new ArgumentNullException("data");
            return SendAsync(new ArraySegment<byte>(data), cancellationToken);
        }

        /// <summary>Like <see cref="SendAsync(byte[], CancellationToken)"/> for part of an array.</summary>
        public Task SendAsync(ArraySegment<byte> data, CancellationToken cancellationToken = default(CancellationToken))
        {
            CheckRange(data.Array, data.Offset, data.Count);
            if (cancellationToken.IsCancellationRequested) return Task.FromCanceled(cancellationToken);
            lock (sendGate)
            {
                if (slowSends == 0)
                {
                    Task started;
                    try
                    {
                        started = Volatile.Read(ref closed) != 0 ? null : acks.TryStart(data.Array, data.Offset, data.Count, receivers.Watch);
                    }
                    catch (Exception e)
                    {
                        return Task.FromException(e); // failures belong to the task
                    }
                    if (started != null)
                        return started.IsCompleted || !cancellationToken.CanBeCanceled ? started : AwaitAck(started, cancellationToken);
                }
                // It would have to wait (or there is no reactor): a pool thread sends it, once the
                // sends handed over before it are written, so that messages keep the call order.
                slowSends++;
                var written = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
                Task previous = slowWritten;
                slowWritten = written.Task;
                return SendSlow(previous, data, cancellationToken, written);
            }
        }

        readonly object sendGate = new object();
        /// <summary>Completes once the last send handed to the pool has written its frame (or given up).</summary>
        Task slowWritten = Task.CompletedTask;
        int slowSends;

        async Task SendSlow(Task previous, ArraySegment<byte> data, CancellationToken cancellationToken, TaskCompletionSource<bool> written)
        {
            try
            {
                await previous.ConfigureAwait(false);
                await Task.Run(() => SendCore(data.Array, data.Offset, data.Count, cancellationToken, written)).ConfigureAwait(false);
            }
            finally
            {
                Written(written);
            }
        }

        void Written(TaskCompletionSource<bool> written)
        {
            if (written != null && written.TrySetResult(true))
                lock (sendGate) slowSends--;
        }

        static async Task AwaitAck(Task acked, CancellationToken cancellationToken)
        {
            var cancelled = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            using (cancellationToken.Register(() => cancelled.TrySetResult(true)))
            {
                if (await Task.WhenAny(acked, cancelled.Task).ConfigureAwait(false) != acked)
                    throw new OperationCanceledException(AckWaitCancelled, cancellationToken);
            }
            await acked.ConfigureAwait(false);
        }

        const string AckWaitCancelled = "the message was written; the wait for its acknowledgement was cancelled (it may still be delivered)";

#if NETCOREAPP3_0_OR_GREATER
        /// <summary>Like <see cref="SendAsync(byte[], CancellationToken)"/> for any memory.</summary>
        public Task SendAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
        {
            if (System.Runtime.InteropServices.MemoryMarshal.TryGetArray(data, out ArraySegment<byte> segment))
                return SendAsync(segment, cancellationToken);
            return SendAsync(new ArraySegment<byte>(data.ToArray()), cancellationToken);
        }
#endif

        static void CheckRange(byte[] data, int offset, int count)
        {
            if (data == null) throw new ArgumentNullException("data");
            if (offset < 0 || count < 0 || offset > data.Length - count)
                throw new ArgumentOutOfRangeException("offset", "offset and count must lie within data");
        }

        // written: set once the frame is written (the next send in order may start), or null.
        unsafe void SendCore(byte[] data, int offset, int count, CancellationToken token, TaskCompletionSource<bool> written = null)
        {
            CheckOpen();
            token.ThrowIfCancellationRequested();
            try
            {
                IntPtr err;
                uint rc;
                fixed (byte* start = data)
                {
                    IntPtr p = count == 0 ? IntPtr.Zero : (IntPtr)(start + offset);
                    rc = Native.SocketSend(handle, p, new UIntPtr((uint)count), FirstAckMs, out err);
                }
                Written(written);
                while (rc == Native.TimedOut)
                {
                    if (token.IsCancellationRequested)
                        throw new OperationCanceledException(AckWaitCancelled, token);
                    rc = Native.SocketWaitAck(handle, SliceMs, out err);
                }
                if (rc != Native.Ok) throw Errors.Take(rc, err);
            }
            catch (ObjectDisposedException)
            {
                throw Errors.Closed();
            }
        }

        // -- receiving -------------------------------------------------------------

        /// <summary>The next message, waiting up to <paramref name="timeout"/> (null: no limit).</summary>
        /// <exception cref="TimeoutException">nothing came in time.</exception>
        /// <exception cref="ConnectionLostException">the connection ended or the socket was disposed.</exception>
        /// <exception cref="InvalidOperationException">a message handler is set.</exception>
        public byte[] Receive(TimeSpan? timeout = null)
        {
            byte[] message;
            if (TryReceive(timeout ?? Timeout.InfiniteTimeSpan, out message)) return message;
            throw new TimeoutException("no message within " + timeout.Value.TotalSeconds + " s");
        }

        /// <summary>Waits up to <paramref name="timeout"/> (<see cref="Timeout.InfiniteTimeSpan"/>:
        /// no limit) for the next message; false when none came.</summary>
        public bool TryReceive(TimeSpan timeout, out byte[] message)
        {
            CheckNoHandler();
            bool forever = timeout == Timeout.InfiniteTimeSpan;
            if (!forever && timeout < TimeSpan.Zero) throw new ArgumentOutOfRangeException("timeout", timeout, "timeout must be >= 0");
            Stopwatch clock = Stopwatch.StartNew();
            while (true)
            {
                uint wait = forever ? SliceMs : Math.Min(SliceMs, Interop.MillisLeft(timeout, clock));
                message = ReceiveOnce(wait);
                if (message != null) return true;
                if (!forever && clock.Elapsed >= timeout) return false;
            }
        }

        /// <summary>The next message, without blocking the caller. A cancelled receive
        /// loses nothing: a message is either returned by this task or left for the next
        /// receive. Pending receives hold no thread each: one thread of the library waits for
        /// all of them (on Windows, each waits on the thread pool).</summary>
        public Task<byte[]> ReceiveAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            CheckNoHandler();
            return receivers.Next(cancellationToken);
        }

        Exception Watch(Reactor reactor, ulong token)
        {
            return Interop.ErrorOf((out IntPtr err) => Native.SocketWatch(handle, reactor.Poller, token, out err));
        }

        /// <summary>The messages until the connection ends or the socket is disposed (blocking).</summary>
        public IEnumerable<byte[]> Messages()
        {
            while (true)
            {
                byte[] message = ReceiveOrNullOnEnd();
                if (message == null) yield break;
                yield return message;
            }
        }

#if NETCOREAPP3_0_OR_GREATER
        /// <summary>The messages until the connection ends, for <c>await foreach</c>.</summary>
        public async IAsyncEnumerable<byte[]> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            while (true)
            {
                byte[] message;
                try { message = await ReceiveAsync(cancellationToken).ConfigureAwait(false); }
                catch (ConnectionLostException) { yield break; }
                yield return message;
            }
        }
#endif

        byte[] ReceiveOrNullOnEnd()
        {
            try { return Receive(); }
            catch (ConnectionLostException) { return null; }
        }

        /// <summary>One wait of at most <paramref name="timeoutMs"/>: a message, or null when
        /// none came. A message up to 64 KiB lands in this thread's buffer and is copied out in
        /// one call; a larger one is kept by the library (a receive into too small a buffer
        /// takes nothing) and taken again into an array of its exact size. No native message
        /// handle is involved.</summary>
        internal unsafe byte[] ReceiveOnce(uint timeoutMs)
        {
            CheckOpen();
            byte[] scratch = threadBuffer ?? (threadBuffer = new byte[ThreadBufferSize]);
            try
            {
                IntPtr err;
                UIntPtr size;
                uint rc;
                fixed (byte* p = scratch)
                {
                    rc = Native.SocketRecvInto(handle, (IntPtr)p, new UIntPtr((uint)scratch.Length), timeoutMs, out size, out err);
                }
                while (true)
                {
                    if (rc == Native.TimedOut) return null;
                    if (rc != Native.Ok) throw Errors.Take(rc, err);
                    ulong n = size.ToUInt64();
                    if (n == 0) return Empty;
                    if (n <= (ulong)scratch.Length)
                    {
                        var message = new byte[n];
                        Buffer.BlockCopy(scratch, 0, message, 0, (int)n);
                        return message;
                    }
                    scratch = new byte[checked((int)n)];
                    fixed (byte* p = scratch)
                    {
                        rc = Native.SocketRecvInto(handle, (IntPtr)p, size, 0, out size, out err);
                    }
                    if (rc == Native.Ok && size.ToUInt64() == n) return scratch;
                    // Another thread took the large message meanwhile: the loop handles what came instead.
                }
            }
            catch (ObjectDisposedException)
            {
                throw Errors.Closed();
            }
        }

        const int ThreadBufferSize = 64 * 1024;
        [ThreadStatic] static byte[] threadBuffer;

        static readonly byte[] Empty = new byte[0];

        // -- the handler -----------------------------------------------------------

        /// <summary>Calls <paramref name="onMessage"/> on a thread of its own for each message
        /// (first those that arrived before this call, in order), then <paramref name="onEnd"/>
        /// once with the exception that ended the connection (normally a
        /// <see cref="ConnectionLostException"/>); nothing after that. An exception a callback
        /// throws goes to <see cref="Ipcez.HandlerException"/> and delivery goes on. One handler
        /// per socket; while it is set, Receive and ReceiveAsync throw InvalidOperationException,
        /// and setting it throws that while a ReceiveAsync is pending.</summary>
        public void MessageHandler(Action<byte[]> onMessage, Action<Exception> onEnd = null)
        {
            if (onMessage == null) throw new ArgumentNullException("onMessage");
            CheckOpen();
            lock (handlerGate)
            {
                if (dispatcher != null) throw new InvalidOperationException("a message handler is already set on this socket");
                receivers.Refuse(HandlerSet, "a ReceiveAsync is pending on this socket: a message handler would miss the message it takes");
                dispatcher = new MessageDispatcher(this, onMessage, onEnd);
            }
        }

        void CheckNoHandler()
        {
            if (Volatile.Read(ref dispatcher) == null) return;
            CheckOpen();
            throw new InvalidOperationException(HandlerSet);
        }

        const string HandlerSet = "a message handler is set on this socket; messages go to it, not to Receive";

        // -- closing ---------------------------------------------------------------

        void CheckOpen()
        {
            if (Volatile.Read(ref closed) != 0) throw Errors.Closed();
        }

        /// <summary>Closes the connection (idempotent). Calls waiting on other threads end with
        /// ConnectionLostException; the native memory is freed once the last of them has
        /// returned. A handler gets its final call before this returns, unless this runs on a
        /// handler thread or the handler is stuck: after 1 s it is left behind and called no more.</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref closed, 1) != 0) return;
            try { Native.SocketClose(handle); }
            catch (ObjectDisposedException) { }
            handle.Dispose();
            receivers.Close(Errors.Closed());
            acks.Fail(Errors.Closed());
            MessageDispatcher current;
            lock (handlerGate) current = dispatcher;
            if (current != null) current.Finish(MessageDispatcher.CloseGrace);
        }

        /// <summary>Same as <see cref="Dispose"/>.</summary>
        public void Close() { Dispose(); }

#if NETCOREAPP3_0_OR_GREATER
        /// <summary>Disposes on a pool thread (waiting for a handler's final call can take up to 1 s).</summary>
        public ValueTask DisposeAsync() { return new ValueTask(Task.Run(Dispose)); }
#endif

        /// <inheritdoc/>
        public override string ToString()
        {
            return "IpcezSocket " + Transport + " " + Endpoint + (Volatile.Read(ref closed) != 0 ? " (closed)" : "");
        }
    }
}
