// The SendAsync calls of one socket waiting for their acknowledgement, oldest first. The
// message is handed to the library without waiting (ipcez_socket_start_send); the library
// waits for the acks on threads of its own and reports progress to the socket's reactor
// token, and Collect settles the oldest waiters. Acks are taken in order whatever became of
// the tasks: a send whose caller cancelled still has its ack taken, so each later send gets
// its own. No thread waits per send.
using System;
using System.Collections.Generic;
using System.Threading.Tasks;

namespace IpcezNet
{
    internal sealed class AckWaiters
    {
        /// <summary>The core's text for an ack that did not come (the sync Send gets it from the library).</summary>
        const string AckTimedOut = "the recipient did not acknowledge the message within the ack timeout; is the peer process running and reading (a peer written without ipcez: does it post data_acked)? A longer ack_timeout gives a busy peer more time";

        readonly object gate = new object();
        readonly Queue<TaskCompletionSource<bool>> pending = new Queue<TaskCompletionSource<bool>>();
        readonly SocketHandle handle;
        readonly bool acked;

        /// <summary>What the reactor holds for the socket (weakly): kept alive while sends wait,
        /// so that a socket dropped with sends pending is not collected under them.</summary>
        internal object Owner;

        /// <param name="handle">the socket's handle.</param>
        /// <param name="acked">false on WebSocket, where a sent message has no ack.</param>
        internal AckWaiters(SocketHandle handle, bool acked)
        {
            this.handle = handle;
            this.acked = acked;
        }

        /// <summary>Hands the message over without waiting: a task that completes with its ack,
        /// or null when that would mean waiting (a busy WebSocket, a named pipe, no reactor) and
        /// nothing was sent. <paramref name="watch"/> makes the socket report to the reactor.</summary>
        internal unsafe Task TryStart(byte[] data, int offset, int count, Func<Reactor, Exception> watch)
        {
            Reactor on = Reactor.Get();
            if (on == null) return null;
            lock (gate) // the send and its expect_acks together, so that the acks pair with the sends in order
            {
                try
                {
                    if (acked)
                    {
                        Exception failed = watch(on);
                        if (failed != null) throw failed;
                    }
                    IntPtr err;
                    uint rc;
                    fixed (byte* start = data)
                    {
                        IntPtr p = count == 0 ? IntPtr.Zero : (IntPtr)(start + offset);
                        rc = Native.SocketStartSend(handle, p, new UIntPtr((uint)count), out err);
                    }
                    if (rc == Native.TimedOut) return null;
                    if (rc != Native.Ok) throw Errors.Take(rc, err);
                    if (!acked) return Task.FromResult(true);
                    rc = Native.SocketExpectAcks(handle, new UIntPtr(1), out err);
                    if (rc != Native.Ok) throw Errors.Take(rc, err);
                }
                catch (ObjectDisposedException)
                {
                    throw Errors.Closed();
                }
                var waiter = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
                pending.Enqueue(waiter);
                if (pending.Count == 1) Pins.Hold(Owner, true);
                return waiter.Task;
            }
        }

        /// <summary>On the reactor thread, when the socket reports: settles the sends whose ack came or timed out.</summary>
        internal void Collect()
        {
            lock (gate)
            {
                if (pending.Count == 0) return;
                UIntPtr done = UIntPtr.Zero, timedOut = UIntPtr.Zero;
                Exception end = Interop.ErrorOf((out IntPtr err) => Native.SocketTakeAcks(handle, out done, out timedOut, out err));
                if (end != null)
                {
                    FailAllLocked(end);
                    return;
                }
                for (ulong i = done.ToUInt64(); i > 0 && pending.Count > 0; i--) pending.Dequeue().TrySetResult(true);
                for (ulong i = timedOut.ToUInt64(); i > 0 && pending.Count > 0; i--)
                    pending.Dequeue().TrySetException(new RecipientAckTimeoutException(AckTimedOut));
                if (pending.Count == 0) Pins.Hold(Owner, false);
            }
        }

        /// <summary>On dispose: every send still waiting fails with <paramref name="end"/>.</summary>
        internal void Fail(Exception end)
        {
            lock (gate) FailAllLocked(end);
        }

        void FailAllLocked(Exception end)
        {
            if (pending.Count == 0) return;
            while (pending.Count > 0) pending.Dequeue().TrySetException(end);
            Pins.Hold(Owner, false);
        }
    }
}
