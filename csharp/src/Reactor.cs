// One thread for every pending ReceiveAsync and AcceptAsync of the process: the sockets and
// listeners report to one native poller, whose descriptor this thread waits on with poll(2).
// A thousand idle ReceiveAsync calls hold no thread each. Unix only: where the library has no
// poller (Windows), Get() returns null and the async methods wait on the thread pool instead.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Threading;

namespace IpcezNet
{
    /// <summary>What the reactor calls when a source reports.</summary>
    internal interface IReady
    {
        void OnReady();
    }

    /// <summary>What keeps a source alive while work on it is pending (receives, acks): the
    /// reactor holds sources weakly, so a socket dropped with nothing pending is still collected.</summary>
    internal static class Pins
    {
        /// <summary>Each source with the number of holders (a socket's receives and its acks).</summary>
        static readonly Dictionary<object, int> Held = new Dictionary<object, int>();

        /// <summary>Takes (or, with <paramref name="held"/> false, gives back) one hold on <paramref name="owner"/>.</summary>
        internal static void Hold(object owner, bool held)
        {
            lock (Held)
            {
                int count;
                Held.TryGetValue(owner, out count);
                count += held ? 1 : -1;
                if (count > 0) Held[owner] = count;
                else Held.Remove(owner);
            }
        }
    }

    internal sealed class Reactor
    {
        static readonly object Gate = new object();
        static Reactor instance;
        static bool unavailable;

        readonly PollerHandle poller;
        readonly int fd;
        /// <summary>Weak: a socket dropped without Dispose, and with no receive pending (pending ones
        /// keep it alive, see AsyncWaiters), is still collected.</summary>
        readonly Dictionary<ulong, WeakReference> sources = new Dictionary<ulong, WeakReference>();
        ulong lastToken;

        /// <summary>The process's reactor, started on first use; null where there is none.</summary>
        internal static Reactor Get()
        {
            lock (Gate)
            {
                if (instance != null || unavailable) return instance;
                try
                {
                    instance = new Reactor();
                }
                catch (Exception)
                {
                    unavailable = true; // no poller here, or no poll(2): the pool-thread path
                }
                return instance;
            }
        }

        Reactor()
        {
            IntPtr err;
            PollerHandle handle;
            uint rc = Native.PollerNew(out handle, out err);
            if (rc != Native.Ok)
            {
                handle.Dispose();
                throw Errors.Take(rc, err);
            }
            poller = handle;
            fd = Native.PollerFileno(handle);
            var probe = new[] { new PollFd { Fd = fd, Events = PollIn } };
            Libc.Poll(probe, 0); // throws DllNotFoundException here, not on the reactor thread
            new Thread(Run) { IsBackground = true, Name = "ipcez-reactor" }.Start();
        }

        internal PollerHandle Poller { get { return poller; } }

        /// <summary>A token for a source; <paramref name="ready"/>.OnReady runs on the reactor
        /// thread each time the source reports (it must take what it wants without waiting).</summary>
        internal ulong Add(IReady ready)
        {
            lock (sources)
            {
                ulong token = ++lastToken;
                sources[token] = new WeakReference(ready);
                return token;
            }
        }

        internal void Remove(ulong token)
        {
            lock (sources) sources.Remove(token);
        }

        unsafe void Run()
        {
            var fds = new[] { new PollFd { Fd = fd, Events = PollIn } };
            var tokens = new ulong[64];
            while (true)
            {
                // 100 ms at most inside poll: Mono does not exit while a thread is in native code.
                if (Libc.Poll(fds, (int)Native.SliceMs) <= 0) continue;
                while (true)
                {
                    ulong taken;
                    fixed (ulong* p = tokens)
                    {
                        taken = Native.PollerTake(poller, (IntPtr)p, new UIntPtr((uint)tokens.Length)).ToUInt64();
                    }
                    if (taken == 0) break;
                    for (ulong i = 0; i < taken; i++) Dispatch(tokens[i]);
                }
            }
        }

        /// <summary>Calls the source of <paramref name="token"/>. A method of its own, so that no
        /// slot of the waiting loop's frame keeps a source alive (Mono scans stacks conservatively).</summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
        void Dispatch(ulong token)
        {
            IReady ready = null;
            lock (sources)
            {
                WeakReference entry;
                if (sources.TryGetValue(token, out entry))
                {
                    ready = entry.Target as IReady;
                    if (ready == null) sources.Remove(token); // collected
                }
            }
            if (ready == null) return;
            try { ready.OnReady(); }
            catch (Exception e) { Ipcez.ReportHandlerException(e); } // a bug here must not stop the others
        }

        const short PollIn = 1;

        [StructLayout(LayoutKind.Sequential)]
        struct PollFd
        {
            public int Fd;
            public short Events;
            public short Revents;
        }

        static class Libc
        {
            internal static int Poll(PollFd[] fds, int timeoutMs)
            {
                try { return Glibc.poll(fds, new UIntPtr((uint)fds.Length), timeoutMs); }
                catch (DllNotFoundException) { return Other.poll(fds, new UIntPtr((uint)fds.Length), timeoutMs); }
            }

            static class Glibc
            {
                [DllImport("libc.so.6")] internal static extern int poll([In, Out] PollFd[] fds, UIntPtr count, int timeoutMs);
            }

            static class Other
            {
                [DllImport("libc")] internal static extern int poll([In, Out] PollFd[] fds, UIntPtr count, int timeoutMs);
            }
        }
    }
}
