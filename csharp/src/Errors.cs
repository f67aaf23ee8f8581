// The exceptions, and the one place that turns a native ipcez_error into one. The messages
// are the library's own, so every language reports the same words.
//
// C# has one base class per exception, so each derives from the .NET exception a caller
// already catches (IOException, TimeoutException, ArgumentException) where there is one,
// and from IpcezException where there is none; all of them implement IIpcezException.
using System;
using System.IO;

namespace IpcezNet
{
    /// <summary>What kind of failure an ipcez exception reports (the C library's numbers).</summary>
    public enum IpcezErrorKind
    {
        /// <summary>An I/O failure; see <see cref="IpcezIOException.Errno"/>.</summary>
        Io = 1,
        /// <summary>The connection ended (peer closed, crashed, network dropped, or closed here).</summary>
        ConnectionLost = 2,
        /// <summary>A message over 4 MiB was refused before anything was sent.</summary>
        MessageTooLarge = 3,
        /// <summary>The WebSocket handshake or protocol failed.</summary>
        WebSocket = 4,
        /// <summary>This build cannot serve the (target, os) pair.</summary>
        UnsupportedCombination = 5,
        /// <summary>target / os are missing or invalid.</summary>
        Detection = 6,
        /// <summary>The recipient did not acknowledge within the ack timeout.</summary>
        RecipientAckTimeout = 7,
        /// <summary>A bug in ipcez, reported instead of crashing the process.</summary>
        Internal = 8,
    }

    /// <summary>Implemented by every exception ipcez throws:
    /// <c>catch (Exception e) when (e is IIpcezException)</c> catches them all.</summary>
    public interface IIpcezException
    {
        /// <summary>The kind of failure.</summary>
        IpcezErrorKind Kind { get; }
    }

    /// <summary>The base of the ipcez exceptions that have no natural .NET parent.</summary>
    public class IpcezException : Exception, IIpcezException
    {
        readonly IpcezErrorKind kind;

        /// <summary>An error of <paramref name="kind"/> with the library's message.</summary>
        public IpcezException(string message, IpcezErrorKind kind = IpcezErrorKind.Internal) : base(message) { this.kind = kind; }

        /// <inheritdoc/>
        public IpcezErrorKind Kind { get { return kind; } }
    }

    /// <summary>An I/O failure: <see cref="Errno"/> is the POSIX errno where one applies
    /// (2 ENOENT for a missing socket path, 111 ECONNREFUSED, 98 EADDRINUSE), else 0.</summary>
    public class IpcezIOException : IOException, IIpcezException
    {
        readonly int errno;

        /// <summary>An I/O error with the library's message and errno.</summary>
        public IpcezIOException(string message, int errno) : base(message) { this.errno = errno; }

        /// <summary>The POSIX errno, or 0.</summary>
        public int Errno { get { return errno; } }

        /// <inheritdoc/>
        public virtual IpcezErrorKind Kind { get { return IpcezErrorKind.Io; } }
    }

    /// <summary>The connection is gone: the peer closed or crashed, or this side closed it.</summary>
    public class ConnectionLostException : IpcezIOException
    {
        /// <summary>A connection-lost error; <paramref name="closeCode"/> and
        /// <paramref name="closeReason"/> from a WebSocket peer's close frame, if any.</summary>
        public ConnectionLostException(string message, int? closeCode = null, string closeReason = null)
            : base(message, 104 /* ECONNRESET */)
        {
            CloseCode = closeCode;
            CloseReason = closeReason;
        }

        /// <summary>The close code a WebSocket peer sent (e.g. 1001), or null.</summary>
        public int? CloseCode { get; private set; }

        /// <summary>The reason text of that close frame (possibly ""), or null.</summary>
        public string CloseReason { get; private set; }

        /// <inheritdoc/>
        public override IpcezErrorKind Kind { get { return IpcezErrorKind.ConnectionLost; } }
    }

    /// <summary>A message over 4 MiB (4,194,304 bytes): nothing was sent, the socket stays usable.</summary>
    public class MessageTooLargeException : ArgumentException, IIpcezException
    {
        /// <summary>With the library's message.</summary>
        public MessageTooLargeException(string message) : base(message) { }

        /// <inheritdoc/>
        public IpcezErrorKind Kind { get { return IpcezErrorKind.MessageTooLarge; } }
    }

    /// <summary>target / os are missing or invalid, or a remote endpoint is not a ws:// URL.</summary>
    public class DetectionException : ArgumentException, IIpcezException
    {
        /// <summary>With the library's message and the variable at fault.</summary>
        public DetectionException(string message, string variable, string guidance) : base(message)
        {
            Variable = variable;
            Guidance = guidance;
        }

        /// <summary>The environment variable at fault ("target", "os", their IPCEZ_ forms), or "".</summary>
        public string Variable { get; private set; }

        /// <summary>How to fix it (e.g. <c>export target=local os=linux</c>), or "".</summary>
        public string Guidance { get; private set; }

        /// <inheritdoc/>
        public IpcezErrorKind Kind { get { return IpcezErrorKind.Detection; } }
    }

    /// <summary>A local send was not acknowledged by the recipient within the ack timeout.</summary>
    public class RecipientAckTimeoutException : TimeoutException, IIpcezException
    {
        /// <summary>With the library's message.</summary>
        public RecipientAckTimeoutException(string message) : base(message) { }

        /// <inheritdoc/>
        public IpcezErrorKind Kind { get { return IpcezErrorKind.RecipientAckTimeout; } }
    }

    /// <summary>This build cannot serve the (target, os) pair (e.g. local + windows on Linux).</summary>
    public class UnsupportedCombinationException : IpcezException
    {
        /// <summary>With the library's message and the two values.</summary>
        public UnsupportedCombinationException(string message, string target, string os)
            : base(message, IpcezErrorKind.UnsupportedCombination)
        {
            Target = target;
            Os = os;
        }

        /// <summary>The target value (local or remote).</summary>
        public string Target { get; private set; }

        /// <summary>The os value (linux or windows).</summary>
        public string Os { get; private set; }
    }

    /// <summary>The WebSocket handshake or protocol failed.</summary>
    public class WebSocketProtocolException : IpcezException
    {
        /// <summary>With the library's message.</summary>
        public WebSocketProtocolException(string message) : base(message, IpcezErrorKind.WebSocket) { }
    }

    internal static class Errors
    {
        const uint FieldTarget = 0, FieldOs = 1, FieldVariable = 2, FieldGuidance = 3, FieldCloseCode = 4, FieldCloseReason = 5;

        /// <summary>The exception for a call that returned <paramref name="rc"/> with
        /// <paramref name="err"/> set; frees the error.</summary>
        internal static Exception Take(uint rc, IntPtr err)
        {
            if (err == IntPtr.Zero)
                return new IpcezException("internal error: an ipcez call returned " + rc + " without an error");
            try { return Convert(err); }
            finally { Native.ErrorFree(err); }
        }

        static string Detail(IntPtr err, uint field)
        {
            IntPtr text;
            UIntPtr n = Native.ErrorDetail(err, field, out text);
            return Native.Text(text, n);
        }

        static Exception Convert(IntPtr err)
        {
            uint code = Native.ErrorCode(err);
            IntPtr text;
            UIntPtr n = Native.ErrorMessage(err, out text);
            string message = Native.Text(text, n);
            if (message.Length == 0) message = "ipcez error";
            switch (code)
            {
                case 1: return new IpcezIOException(message, Native.ErrorErrno(err));
                case 2:
                    string closeCode = Detail(err, FieldCloseCode);
                    int parsed;
                    if (int.TryParse(closeCode, out parsed))
                        return new ConnectionLostException(message, parsed, Detail(err, FieldCloseReason));
                    return new ConnectionLostException(message);
                case 3: return new MessageTooLargeException(message);
                case 4: return new WebSocketProtocolException(message);
                case 5: return new UnsupportedCombinationException(message, Detail(err, FieldTarget), Detail(err, FieldOs));
                case 6: return new DetectionException(message, Detail(err, FieldVariable), Detail(err, FieldGuidance));
                case 7: return new RecipientAckTimeoutException(message);
                case 8: return new IpcezException("internal error in ipcez (a Rust panic, please report it): " + message);
                case 9: return new IpcezException("internal error in the ipcez binding (NULL parameter): " + message);
                default: return new IpcezException("unknown ipcez error code " + code + ": " + message);
            }
        }

        internal static ConnectionLostException Closed()
        {
            return new ConnectionLostException("connection lost: the handle is closed");
        }
    }
}
