// One SafeHandle per native handle kind. The runtime counts the calls in flight on each
// (every delegate in Native.cs takes the SafeHandle, not its pointer), so ReleaseHandle,
// the native *_free, runs only once the handle is disposed and no call uses it any more:
// a socket disposed while another thread waits in a receive is freed after that receive
// has returned, never under it.
using System;
using System.Runtime.InteropServices;

namespace IpcezNet
{
    internal abstract class IpcezHandle : SafeHandle
    {
        protected IpcezHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            Free(handle);
            return true;
        }

        /// <summary>The native *_free of this kind of handle.</summary>
        protected abstract void Free(IntPtr pointer);
    }

    internal sealed class SocketHandle : IpcezHandle
    {
        protected override void Free(IntPtr pointer) { Native.SocketFree(pointer); }
    }

    internal sealed class ListenerHandle : IpcezHandle
    {
        protected override void Free(IntPtr pointer) { Native.ListenerFree(pointer); }
    }

    internal sealed class ConnectOptionsHandle : IpcezHandle
    {
        protected override void Free(IntPtr pointer) { Native.ConnectOptionsFree(pointer); }
    }

    internal sealed class ListenOptionsHandle : IpcezHandle
    {
        protected override void Free(IntPtr pointer) { Native.ListenOptionsFree(pointer); }
    }

    internal sealed class PollerHandle : IpcezHandle
    {
        protected override void Free(IntPtr pointer) { Native.PollerFree(pointer); }
    }
}
