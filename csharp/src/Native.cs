// The one table of C functions (rust/ipcez-ffi/include/ipcez.h), bound by address once.
// size_t is UIntPtr; every handle that outlives a call is a SafeHandle (Handles.cs). The
// ipcez_error* out-parameters are plain pointers: Errors.Take converts and frees each one
// in the method that received it.
using System;
using System.Runtime.InteropServices;
using System.Text;

namespace IpcezNet
{
    internal static class Native
    {
        internal const uint Ok = 0, TimedOut = 1, Failed = 2;
        /// <summary>The longest single native wait. A dispose wakes a waiting call at once,
        /// but Mono does not exit while a thread is inside a native call, so no call waits
        /// long: process exit is delayed by at most this.</summary>
        internal const uint SliceMs = 100;

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate IntPtr PtrFn();
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate void FreeFn(IntPtr p);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint ErrCodeFn(IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate int ErrnoFn(IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate UIntPtr ErrTextFn(IntPtr err, out IntPtr text);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate UIntPtr ErrDetailFn(IntPtr err, uint field, out IntPtr text);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate UIntPtr MsgLenFn(IntPtr msg);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint ResolveFn(IntPtr ep, UIntPtr len, out uint transport, out IntPtr address, out IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint AckNamesFn(IntPtr ep, UIntPtr len, out IntPtr ready, out IntPtr acked, out IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate ConnectOptionsHandle ConnectOptionsNewFn();
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate void ConnectOptionsU32Fn(ConnectOptionsHandle o, uint value);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint ConnectOptionsTextFn(ConnectOptionsHandle o, IntPtr text, UIntPtr len, out IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint ConnectWithFn(IntPtr ep, UIntPtr len, ConnectOptionsHandle o, out SocketHandle s, out IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate ListenOptionsHandle ListenOptionsNewFn();
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate void ListenOptionsU32Fn(ListenOptionsHandle o, uint value);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate void ListenOptionsSizeFn(ListenOptionsHandle o, UIntPtr value);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint ListenOptionsTextFn(ListenOptionsHandle o, IntPtr text, UIntPtr len, out IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint ListenOptionsTlsFn(ListenOptionsHandle o, IntPtr cert, UIntPtr certLen, IntPtr key, UIntPtr keyLen, out IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint ListenWithFn(IntPtr ep, UIntPtr len, ListenOptionsHandle o, out ListenerHandle l, out IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate IntPtr ListenerMsgFn(ListenerHandle l);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint AcceptFn(ListenerHandle l, uint timeoutMs, out SocketHandle s, out IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate void ListenerVoidFn(ListenerHandle l);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint SocketU32Fn(SocketHandle s);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate IntPtr SocketMsgFn(SocketHandle s);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate void SocketVoidFn(SocketHandle s);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] [return: MarshalAs(UnmanagedType.U1)] internal delegate bool SocketBoolFn(SocketHandle s);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint SendFn(SocketHandle s, IntPtr data, UIntPtr len, uint sliceMs, out IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint StartSendFn(SocketHandle s, IntPtr data, UIntPtr len, out IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint ExpectAcksFn(SocketHandle s, UIntPtr count, out IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint TakeAcksFn(SocketHandle s, out UIntPtr acked, out UIntPtr timedOut, out IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint WaitAckFn(SocketHandle s, uint sliceMs, out IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint PollerNewFn(out PollerHandle p, out IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate int PollerFilenoFn(PollerHandle p);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate UIntPtr PollerTakeFn(PollerHandle p, IntPtr tokens, UIntPtr cap);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint SocketWatchFn(SocketHandle s, PollerHandle p, ulong token, out IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint ListenerWatchFn(ListenerHandle l, PollerHandle p, ulong token, out IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate uint RecvIntoFn(SocketHandle s, IntPtr buf, UIntPtr cap, uint timeoutMs, out UIntPtr len, out IntPtr err);

        internal static readonly string LibraryPath;
        internal static readonly PtrFn Version;
        internal static readonly ErrCodeFn ErrorCode;
        internal static readonly ErrnoFn ErrorErrno;
        internal static readonly ErrTextFn ErrorMessage;
        internal static readonly ErrDetailFn ErrorDetail;
        internal static readonly FreeFn ErrorFree;
        internal static readonly PtrFnFromMsg MessageData;
        internal static readonly MsgLenFn MessageLen;
        internal static readonly FreeFn MessageFree;
        internal static readonly ResolveFn Resolve;
        internal static readonly AckNamesFn AckNames;
        internal static readonly ConnectOptionsNewFn ConnectOptionsNew;
        internal static readonly ConnectOptionsU32Fn ConnectOptionsSetAckTimeoutMs;
        internal static readonly ConnectOptionsTextFn ConnectOptionsAddSubprotocol;
        internal static readonly FreeFn ConnectOptionsFree;
        internal static readonly ConnectWithFn ConnectWith;
        internal static readonly ListenOptionsNewFn ListenOptionsNew;
        internal static readonly ListenOptionsU32Fn ListenOptionsSetMode;
        internal static readonly ListenOptionsU32Fn ListenOptionsSetAckTimeoutMs;
        internal static readonly ListenOptionsSizeFn ListenOptionsSetMaxConnections;
        internal static readonly ListenOptionsTlsFn ListenOptionsSetTls;
        internal static readonly ListenOptionsTextFn ListenOptionsAddOrigin;
        internal static readonly ListenOptionsTextFn ListenOptionsAddSubprotocol;
        internal static readonly FreeFn ListenOptionsFree;
        internal static readonly ListenWithFn ListenWith;
        internal static readonly ListenerMsgFn ListenerAddress;
        internal static readonly AcceptFn ListenerAccept;
        internal static readonly ListenerVoidFn ListenerClose;
        internal static readonly FreeFn ListenerFree;
        internal static readonly SocketU32Fn SocketTransport;
        internal static readonly SocketMsgFn SocketSubprotocol;
        internal static readonly SocketMsgFn SocketEndpoint;
        internal static readonly SocketU32Fn SocketAckTimeoutMs;
        internal static readonly SendFn SocketSend;
        internal static readonly WaitAckFn SocketWaitAck;
        internal static readonly StartSendFn SocketStartSend;
        internal static readonly ExpectAcksFn SocketExpectAcks;
        internal static readonly TakeAcksFn SocketTakeAcks;
        internal static readonly RecvIntoFn SocketRecvInto;
        internal static readonly SocketVoidFn SocketClose;
        internal static readonly SocketBoolFn SocketIsClosed;
        internal static readonly FreeFn SocketFree;
        internal static readonly PollerNewFn PollerNew;
        internal static readonly PollerFilenoFn PollerFileno;
        internal static readonly PollerTakeFn PollerTake;
        internal static readonly FreeFn PollerFree;
        internal static readonly SocketWatchFn SocketWatch;
        internal static readonly ListenerWatchFn ListenerWatch;

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] internal delegate IntPtr PtrFnFromMsg(IntPtr msg);

        static IntPtr library;

        /// <summary>Loads and binds everything; a failure surfaces as the
        /// DllNotFoundException/EntryPointNotFoundException from <see cref="Ready"/>.</summary>
        static Native()
        {
            try
            {
                library = LibraryLoader.Open(out LibraryPath);
                Version = Bind<PtrFn>("ipcez_version");
                ErrorCode = Bind<ErrCodeFn>("ipcez_error_code");
                ErrorErrno = Bind<ErrnoFn>("ipcez_error_errno");
                ErrorMessage = Bind<ErrTextFn>("ipcez_error_message");
                ErrorDetail = Bind<ErrDetailFn>("ipcez_error_detail");
                ErrorFree = Bind<FreeFn>("ipcez_error_free");
                MessageData = Bind<PtrFnFromMsg>("ipcez_message_data");
                MessageLen = Bind<MsgLenFn>("ipcez_message_len");
                MessageFree = Bind<FreeFn>("ipcez_message_free");
                Resolve = Bind<ResolveFn>("ipcez_resolve");
                AckNames = Bind<AckNamesFn>("ipcez_ack_names");
                ConnectOptionsNew = Bind<ConnectOptionsNewFn>("ipcez_connect_options_new");
                ConnectOptionsSetAckTimeoutMs = Bind<ConnectOptionsU32Fn>("ipcez_connect_options_set_ack_timeout_ms");
                ConnectOptionsAddSubprotocol = Bind<ConnectOptionsTextFn>("ipcez_connect_options_add_subprotocol");
                ConnectOptionsFree = Bind<FreeFn>("ipcez_connect_options_free");
                ConnectWith = Bind<ConnectWithFn>("ipcez_connect_with");
                ListenOptionsNew = Bind<ListenOptionsNewFn>("ipcez_listen_options_new");
                ListenOptionsSetMode = Bind<ListenOptionsU32Fn>("ipcez_listen_options_set_mode");
                ListenOptionsSetAckTimeoutMs = Bind<ListenOptionsU32Fn>("ipcez_listen_options_set_ack_timeout_ms");
                ListenOptionsSetMaxConnections = Bind<ListenOptionsSizeFn>("ipcez_listen_options_set_max_connections");
                ListenOptionsSetTls = Bind<ListenOptionsTlsFn>("ipcez_listen_options_set_tls");
                ListenOptionsAddOrigin = Bind<ListenOptionsTextFn>("ipcez_listen_options_add_origin");
                ListenOptionsAddSubprotocol = Bind<ListenOptionsTextFn>("ipcez_listen_options_add_subprotocol");
                ListenOptionsFree = Bind<FreeFn>("ipcez_listen_options_free");
                ListenWith = Bind<ListenWithFn>("ipcez_listen_with");
                ListenerAddress = Bind<ListenerMsgFn>("ipcez_listener_address");
                ListenerAccept = Bind<AcceptFn>("ipcez_listener_accept");
                ListenerClose = Bind<ListenerVoidFn>("ipcez_listener_close");
                ListenerFree = Bind<FreeFn>("ipcez_listener_free");
                SocketTransport = Bind<SocketU32Fn>("ipcez_socket_transport");
                SocketSubprotocol = Bind<SocketMsgFn>("ipcez_socket_subprotocol");
                SocketEndpoint = Bind<SocketMsgFn>("ipcez_socket_endpoint");
                SocketAckTimeoutMs = Bind<SocketU32Fn>("ipcez_socket_ack_timeout_ms");
                SocketSend = Bind<SendFn>("ipcez_socket_send");
                SocketWaitAck = Bind<WaitAckFn>("ipcez_socket_wait_ack");
                SocketStartSend = Bind<StartSendFn>("ipcez_socket_start_send");
                SocketExpectAcks = Bind<ExpectAcksFn>("ipcez_socket_expect_acks");
                SocketTakeAcks = Bind<TakeAcksFn>("ipcez_socket_take_acks");
                SocketRecvInto = Bind<RecvIntoFn>("ipcez_socket_recv_into");
                SocketClose = Bind<SocketVoidFn>("ipcez_socket_close");
                SocketIsClosed = Bind<SocketBoolFn>("ipcez_socket_is_closed");
                SocketFree = Bind<FreeFn>("ipcez_socket_free");
                PollerNew = Bind<PollerNewFn>("ipcez_poller_new");
                PollerFileno = Bind<PollerFilenoFn>("ipcez_poller_fileno");
                PollerTake = Bind<PollerTakeFn>("ipcez_poller_take");
                PollerFree = Bind<FreeFn>("ipcez_poller_free");
                SocketWatch = Bind<SocketWatchFn>("ipcez_socket_watch");
                ListenerWatch = Bind<ListenerWatchFn>("ipcez_listener_watch");
                string native = Marshal.PtrToStringAnsi(Version());
                if (native != Ipcez.Version)
                    throw new DllNotFoundException(
                        "ipcez: " + LibraryPath + " is ipcez-ffi version " + native + ", but Ipcez.dll is version " +
                        Ipcez.Version + "; use the native library of the same release (or set IPCEZ_LIBRARY to one)");
            }
            catch (Exception e)
            {
                LoadError = e;
            }
        }

        static readonly Exception LoadError;

        /// <summary>Throws the reason the library could not be used (a fresh exception each
        /// time, so the stack trace is the caller's).</summary>
        internal static void Ready()
        {
            Exception e = LoadError;
            if (e == null) return;
            if (e is EntryPointNotFoundException) throw new EntryPointNotFoundException(e.Message, e);
            throw new DllNotFoundException(e.Message, e);
        }

        static T Bind<T>(string name) where T : class
        {
            IntPtr address = LibraryLoader.Symbol(library, name);
            if (address == IntPtr.Zero)
                throw new EntryPointNotFoundException(
                    "ipcez: " + LibraryPath + " lacks the function " + name + "; it is stale or not ipcez-ffi (Ipcez.dll " + Ipcez.Version + ")");
            return (T)(object)Marshal.GetDelegateForFunctionPointer(address, typeof(T));
        }

        internal static byte[] Utf8(string text, string what)
        {
            if (text == null) throw new ArgumentNullException(what);
            return Encoding.UTF8.GetBytes(text);
        }

        /// <summary>Copies UTF-8 text borrowed for the current call.</summary>
        internal static string Text(IntPtr ptr, UIntPtr len)
        {
            int n = checked((int)len.ToUInt64());
            if (n == 0 || ptr == IntPtr.Zero) return "";
            var bytes = new byte[n];
            Marshal.Copy(ptr, bytes, 0, n);
            return Encoding.UTF8.GetString(bytes);
        }

        /// <summary>Copies an owned ipcez_message as text and frees it; null for NULL.</summary>
        internal static string TakeText(IntPtr msg)
        {
            if (msg == IntPtr.Zero) return null;
            try { return Text(MessageData(msg), MessageLen(msg)); }
            finally { MessageFree(msg); }
        }
    }
}
