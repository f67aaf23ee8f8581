// The pending ReceiveAsync (or AcceptAsync) calls of one socket (or listener), first come
// first served, completed by the reactor thread. A waiter is removed under the same lock
// before it is cancelled and before a message is taken for it, so a message is never taken
// for a waiter that was cancelled: a cancelled receive loses nothing.
using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace IpcezNet
{
    internal sealed class AsyncWaiters<T> : IReady where T : class
    {
        readonly object gate = new object();
        readonly LinkedList<TaskCompletionSource<T>> waiting = new LinkedList<TaskCompletionSource<T>>();
        readonly Func<uint, T> take;
        readonly Func<Reactor, ulong, Exception> watch;
        readonly Action alsoOnReady;
        Reactor reactor;
        ulong token;
        bool open = true;
        string closedReason;

        /// <param name="take">takes one item, waiting at most the given milliseconds: the item, null, or throws the end.</param>
        /// <param name="watch">makes the source report <c>token</c> to the reactor's poller; an error or null.</param>
        /// <param name="alsoOnReady">called first each time the source reports (a socket's acks), or null.</param>
        internal AsyncWaiters(Func<uint, T> take, Func<Reactor, ulong, Exception> watch, Action alsoOnReady = null)
        {
            this.take = take;
            this.watch = watch;
            this.alsoOnReady = alsoOnReady;
        }

        T TryTake() { return take(0); }

        /// <summary>The next item: at once when one is there, else when the source reports one
        /// (on the reactor), or from a pool thread waiting in slices where there is no reactor.</summary>
        internal Task<T> Next(CancellationToken cancellationToken)
        {
            if (cancellationToken.IsCancellationRequested) return Task.FromCanceled<T>(cancellationToken);
            Reactor on = Reactor.Get();
            if (on == null) return OnPool(cancellationToken);
            lock (gate)
            {
                if (!open) throw new InvalidOperationException(closedReason);
                if (waiting.Count == 0)
                {
                    T ready;
                    try { ready = TryTake(); }
                    catch (Exception e) { return Task.FromException<T>(e); }
                    if (ready != null) return Task.FromResult(ready);
                }
                Exception failed = WatchLocked(on);
                if (failed != null) return Task.FromException<T>(failed);
                var waiter = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
                LinkedListNode<TaskCompletionSource<T>> node = waiting.AddLast(waiter);
                if (waiting.Count == 1) Pin(true);
                if (cancellationToken.CanBeCanceled)
                {
                    CancellationTokenRegistration registration = cancellationToken.Register(() =>
                    {
                        lock (gate)
                        {
                            if (node.List == null) return; // already completed
                            waiting.Remove(node);
                            if (waiting.Count == 0) Pin(false);
                        }
                        waiter.TrySetCanceled(cancellationToken);
                    });
                    waiter.Task.ContinueWith(_ => registration.Dispose(), TaskContinuationOptions.ExecuteSynchronously);
                }
                return waiter.Task;
            }
        }

        /// <summary>Makes the source report to <paramref name="on"/> (once); its error or null.</summary>
        internal Exception Watch(Reactor on)
        {
            lock (gate) return WatchLocked(on);
        }

        Exception WatchLocked(Reactor on)
        {
            if (reactor != null) return null;
            ulong added = on.Add(this);
            Exception failed = watch(on, added);
            if (failed != null)
            {
                on.Remove(added);
                return failed;
            }
            reactor = on;
            token = added;
            return null;
        }

        Task<T> OnPool(CancellationToken cancellationToken)
        {
            T ready;
            try { ready = TryTake(); }
            catch (Exception e) { return Task.FromException<T>(e); } // failures belong to the task
            if (ready != null) return Task.FromResult(ready);
            return Task.Run(() =>
            {
                while (true)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    T item = take(Native.SliceMs);
                    if (item != null) return item; // taken: delivered even if cancelled meanwhile
                }
            }, cancellationToken);
        }

        void Pin(bool pinned) { Pins.Hold(this, pinned); }

        /// <summary>On the reactor thread: hands waiting items to the waiters, in order.</summary>
        public void OnReady()
        {
            if (alsoOnReady != null) alsoOnReady();
            lock (gate)
            {
                while (waiting.Count > 0)
                {
                    T item;
                    try { item = TryTake(); }
                    catch (Exception end)
                    {
                        FailAllLocked(end); // the source has ended; it stays watched (for its acks) until disposed
                        return;
                    }
                    if (item == null) return; // the source reports again when the next one comes
                    TaskCompletionSource<T> first = waiting.First.Value;
                    waiting.RemoveFirst();
                    if (waiting.Count == 0) Pin(false);
                    first.TrySetResult(item);
                }
            }
        }

        /// <summary>Refuses every later <see cref="Next"/> with InvalidOperationException(<paramref name="reason"/>);
        /// throws that itself, changing nothing, when a waiter is pending.</summary>
        internal void Refuse(string reason, string whilePending)
        {
            lock (gate)
            {
                if (waiting.Count > 0) throw new InvalidOperationException(whilePending);
                open = false;
                closedReason = reason;
            }
        }

        /// <summary>On dispose: every waiter fails with <paramref name="end"/>, and the source is forgotten.</summary>
        internal void Close(Exception end)
        {
            lock (gate)
            {
                FailAllLocked(end);
                ForgetLocked();
            }
        }

        void ForgetLocked()
        {
            if (reactor != null) reactor.Remove(token);
            reactor = null;
        }

        void FailAllLocked(Exception end)
        {
            if (waiting.Count == 0) return;
            foreach (TaskCompletionSource<T> waiter in waiting) waiter.TrySetException(end);
            waiting.Clear();
            Pin(false);
        }
    }
}
