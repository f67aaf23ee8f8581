// The thread that feeds one socket's messages to its handler. A managed thread of its own,
// never a native one: native code never runs managed code, so nothing a handler throws can
// reach a native frame, and a handler that never returns cannot block the library.
using System;
using System.Threading;

namespace IpcezNet
{
    internal sealed class MessageDispatcher
    {
        /// <summary>How long Dispose waits for the handler's final call before leaving it behind.</summary>
        internal static readonly TimeSpan CloseGrace = TimeSpan.FromSeconds(1);


        [ThreadStatic] static bool onHandlerThread;

        readonly IpcezSocket socket;
        readonly Action<byte[]> onMessage;
        readonly Action<Exception> onEnd;
        readonly Thread thread;
        volatile bool abandoned;

        internal MessageDispatcher(IpcezSocket socket, Action<byte[]> onMessage, Action<Exception> onEnd)
        {
            this.socket = socket;
            this.onMessage = onMessage;
            this.onEnd = onEnd;
            thread = new Thread(Run) { IsBackground = true, Name = "ipcez-handler" };
            thread.Start();
        }

        void Run()
        {
            onHandlerThread = true;
            while (true)
            {
                byte[] message;
                try
                {
                    message = socket.ReceiveOnce(Native.SliceMs);
                }
                catch (Exception end)
                {
                    if (!abandoned && onEnd != null) Call(() => onEnd(end));
                    return;
                }
                if (message == null) continue;
                if (abandoned) return;
                Call(() => onMessage(message));
            }
        }

        static void Call(Action callback)
        {
            try { callback(); }
            catch (ThreadAbortException) { throw; } // Mono ends background threads this way at exit
            catch (Exception e) { Ipcez.ReportHandlerException(e); }
        }

        /// <summary>After the socket was closed: waits up to <paramref name="grace"/> for the final
        /// call (not on a handler thread, where two handlers closing each other's sockets would
        /// wait for each other); a call still running then is left behind.</summary>
        internal void Finish(TimeSpan grace)
        {
            if (onHandlerThread || Thread.CurrentThread == thread) return;
            if (!thread.Join(grace)) abandoned = true;
        }
    }
}
