// Small helpers around native calls that take UTF-8 strings as (pointer, length).
using System;

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
