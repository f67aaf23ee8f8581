// Small helpers around native calls that take UTF-8 strings as (pointer, length).
using System;
using System.Diagnostics;

namespace IpcezNet
{
    internal static class Interop
    {
        static readonly byte[] One = new byte[1];

        internal struct Outcome
        {
            internal uint Rc;
            internal IntPtr Err;
        }

        /// <summary>Milliseconds left of <paramref name="timeout"/> on <paramref name="clock"/>, at least 0.</summary>
        internal static uint MillisLeft(TimeSpan timeout, Stopwatch clock)
        {
            double left = Math.Ceiling((timeout - clock.Elapsed).TotalMilliseconds);
            if (left <= 0) return 0;
            return left >= uint.MaxValue - 1 ? uint.MaxValue - 1 : (uint)left;
        }

        internal delegate uint Fallible(out IntPtr err);

        /// <summary>Runs a call on a handle: null when it succeeded, else its error (a disposed
        /// handle is a ConnectionLostException).</summary>
        internal static Exception ErrorOf(Fallible call)
        {
            try
            {
                IntPtr err;
                uint rc = call(out err);
                return rc == Native.Ok ? null : Errors.Take(rc, err);
            }
            catch (ObjectDisposedException)
            {
                return Errors.Closed();
            }
        }

        internal static Outcome Pair(uint rc, IntPtr err)
        {
            return new Outcome { Rc = rc, Err = err };
        }

        /// <summary>Calls <paramref name="call"/> with <paramref name="text"/> as pinned UTF-8.</summary>
        internal static unsafe T WithUtf8<T>(string text, string what, Func<IntPtr, UIntPtr, T> call)
        {
            byte[] bytes = Native.Utf8(text, what);
            int length = bytes.Length;
            if (length == 0) bytes = One; // a valid pointer even for ""
            fixed (byte* p = bytes)
            {
                return call((IntPtr)p, new UIntPtr((uint)length));
            }
        }
    }
}
