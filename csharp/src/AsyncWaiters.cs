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
    internal sealed class AsyncWaiters<T> where T : class
    {
        readonly object gate = new object();
        readonly LinkedList<TaskCompletionSource<T>> waiting = new LinkedList<TaskCompletionSource<T>>();
        readonly Func<T> tryTake;
        readonly Func<Reactor, ulong, Exception> watch;
        Reactor reactor;
        ulong token;

        /// <param name="tryTake">takes one item without waiting: the item, null, or throws the end.</param>
        /// <param name="watch">makes the source report <c>token</c> to the reactor's poller; an error or null.</param>
        internal AsyncWaiters(Func<T> tryTake, Func<Reactor, ulong, Exception> watch)
        {
            this.tryTake = tryTake;
            this.watch = watch;
        }

        /// <summary>The next item: at once when one is there, else when the source reports one.</summary>
        internal Task<T> Next(Reactor on, CancellationToken cancellationToken)
        {
            lock (gate)
            {
                if (waiting.Count == 0)
                {
                    T ready;
                    try { ready = tryTake(); }
                    catch (Exception e) { return Task.FromException<T>(e); }
                    if (ready != null) return Task.FromResult(ready);
                }
                if (reactor == null)
                {
                    ulong added = on.Add(OnReady);
                    Exception failed = watch(on, added);
                    if (failed != null)
                    {
                        on.Remove(added);
                        return Task.FromException<T>(failed);
                    }
                    reactor = on;
                    token = added;
                }
                var waiter = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
                LinkedListNode<TaskCompletionSource<T>> node = waiting.AddLast(waiter);
                if (cancellationToken.CanBeCanceled)
                {
                    CancellationTokenRegistration registration = cancellationToken.Register(() =>
                    {
                        lock (gate)
                        {
                            if (node.List == null) return; // already completed
                            waiting.Remove(node);
                        }
                        waiter.TrySetCanceled(cancellationToken);
                    });
                    waiter.Task.ContinueWith(_ => registration.Dispose(), TaskContinuationOptions.ExecuteSynchronously);
                }
                return waiter.Task;
            }
        }

        /// <summary>On the reactor thread: hands waiting items to the waiters, in order.</summary>
        void OnReady()
        {
            lock (gate)
            {
                while (waiting.Count > 0)
                {
                    T item;
                    try { item = tryTake(); }
                    catch (Exception end)
                    {
                        FailAllLocked(end); // the source has ended: it reports nothing more
                        ForgetLocked();
                        return;
                    }
                    if (item == null) return; // the source reports again when the next one comes
                    TaskCompletionSource<T> first = waiting.First.Value;
                    waiting.RemoveFirst();
                    first.TrySetResult(item);
                }
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
            foreach (TaskCompletionSource<T> waiter in waiting) waiter.TrySetException(end);
            waiting.Clear();
        }
    }
}
