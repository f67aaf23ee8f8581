// Finds and opens the native library (libipcez_ffi.so / ipcez_ffi.dll / libipcez_ffi.dylib).
// The functions are bound by address (see Native.cs), not with [DllImport], so that the file
// this loader picks is the one used on every runtime: Mono, .NET Framework and .NET 8.
using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;

namespace IpcezNet
{
    internal static class LibraryLoader
    {
        internal static string FileName
        {
            get
            {
                if (IsWindows) return "ipcez_ffi.dll";
                if (IsMac) return "libipcez_ffi.dylib";
                return "libipcez_ffi.so";
            }
        }

#if NETCOREAPP3_0_OR_GREATER
        static bool IsWindows { get { return RuntimeInformation.IsOSPlatform(OSPlatform.Windows); } }

        static bool IsMac { get { return RuntimeInformation.IsOSPlatform(OSPlatform.OSX); } }

        static string Architecture { get { return RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant(); } }
#else
        // Without RuntimeInformation: where an assembly built against .NET Framework's mscorlib
        // runs (Mono, .NET Framework, or .NET 8 through its compatibility facades), that type
        // is not always reachable, so it is looked up by reflection.
        static bool IsWindows { get { return Path.DirectorySeparatorChar == '\\'; } }

        static bool IsMac { get { return !IsWindows && Directory.Exists("/System/Library/CoreServices"); } }

        static string Architecture
        {
            get
            {
                Type info = Type.GetType("System.Runtime.InteropServices.RuntimeInformation")
                    ?? Type.GetType("System.Runtime.InteropServices.RuntimeInformation, System.Runtime.InteropServices.RuntimeInformation");
                object arch = info == null ? null : info.GetProperty("ProcessArchitecture").GetValue(null, null);
                return arch != null ? arch.ToString().ToLowerInvariant() : IntPtr.Size == 8 ? "x64" : "x86";
            }
        }
#endif

        /// <summary>The NuGet runtime identifier of this process (linux-x64, win-x64, osx-arm64, ...).</summary>
        internal static string RuntimeId
        {
            get { return (IsWindows ? "win" : IsMac ? "osx" : "linux") + "-" + Architecture; }
        }

        /// <summary>The files tried, in order: IPCEZ_LIBRARY alone when set; else next to
        /// Ipcez.dll, then under runtimes/&lt;rid&gt;/native/ there and in the application's
        /// base directory.</summary>
        internal static List<string> Candidates()
        {
            var found = new List<string>();
            string overridePath = Environment.GetEnvironmentVariable("IPCEZ_LIBRARY");
            if (!string.IsNullOrEmpty(overridePath))
            {
                found.Add(Path.GetFullPath(overridePath));
                return found;
            }
            var dirs = new List<string>();
            string location = typeof(LibraryLoader).Assembly.Location;
            if (!string.IsNullOrEmpty(location)) dirs.Add(Path.GetDirectoryName(location));
            string baseDir = AppDomain.CurrentDomain.BaseDirectory;
            if (!string.IsNullOrEmpty(baseDir)) dirs.Add(baseDir.TrimEnd('/', '\\'));
            foreach (string dir in dirs)
            {
                string next = Path.Combine(dir, FileName);
                string nested = Path.Combine(Path.Combine(Path.Combine(Path.Combine(dir, "runtimes"), RuntimeId), "native"), FileName);
                if (!found.Contains(next)) found.Add(next);
                if (!found.Contains(nested)) found.Add(nested);
            }
            return found;
        }

        /// <summary>Opens the first candidate that exists; DllNotFoundException saying where
        /// it looked otherwise.</summary>
        internal static IntPtr Open(out string path)
        {
            var tried = new List<string>();
            foreach (string candidate in Candidates())
            {
                if (!File.Exists(candidate))
                {
                    tried.Add(candidate + (Directory.Exists(candidate) ? " (a directory: name the " + FileName + " in it)" : " (not found)"));
                    continue;
                }
                string why;
                IntPtr handle = OpenFile(candidate, out why);
                if (handle != IntPtr.Zero)
                {
                    path = candidate;
                    return handle;
                }
                tried.Add(candidate + " (" + why + "; this process needs a " + RuntimeId + " library)");
            }
            string hint = !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("IPCEZ_LIBRARY"))
                ? "IPCEZ_LIBRARY is set: unset it to use the library shipped with the package"
                : "Install the Ipcez package with its runtimes/ folder, or set IPCEZ_LIBRARY to a built " + FileName;
            throw new DllNotFoundException(
                "ipcez: cannot load its native library " + FileName + "; looked in: " + string.Join("; ", tried.ToArray()) + ". " + hint + ".");
        }

        internal static IntPtr Symbol(IntPtr library, string name)
        {
#if NETCOREAPP3_0_OR_GREATER
            IntPtr address;
            return NativeLibrary.TryGetExport(library, name, out address) ? address : IntPtr.Zero;
#else
            return IsWindows ? GetProcAddress(library, name) : Dl.Symbol(library, name);
#endif
        }

        static IntPtr OpenFile(string file, out string why)
        {
            why = "";
#if NETCOREAPP3_0_OR_GREATER
            try { return NativeLibrary.Load(file); }
            catch (Exception e) { why = e.Message; return IntPtr.Zero; }
#else
            if (IsWindows)
            {
                IntPtr h = LoadLibraryW(file);
                if (h == IntPtr.Zero) why = "LoadLibrary error " + Marshal.GetLastWin32Error();
                return h;
            }
            IntPtr lib = Dl.Open(file);
            if (lib == IntPtr.Zero) why = Dl.LastError();
            return lib;
#endif
        }

#if !NETCOREAPP3_0_OR_GREATER
        [DllImport("kernel32", SetLastError = true, CharSet = CharSet.Unicode)]
        static extern IntPtr LoadLibraryW(string path);

        [DllImport("kernel32", CharSet = CharSet.Ansi, BestFitMapping = false)]
        static extern IntPtr GetProcAddress(IntPtr module, string name);

        /// <summary>dlopen/dlsym from libdl.so.2 (glibc; libc itself on newer ones), else
        /// from libdl (macOS).</summary>
        static class Dl
        {
            const int RTLD_NOW = 2;

            internal static IntPtr Open(string file)
            {
                LastError(); // binds dlerror now: Mono's own dlopen when it first binds it would clear the error of this one
                try { return Glibc.dlopen(file, RTLD_NOW); }
                catch (DllNotFoundException) { return Other.dlopen(file, RTLD_NOW); }
            }

            internal static IntPtr Symbol(IntPtr lib, string name)
            {
                try { return Glibc.dlsym(lib, name); }
                catch (DllNotFoundException) { return Other.dlsym(lib, name); }
            }

            internal static string LastError()
            {
                IntPtr text;
                try { text = Glibc.dlerror(); }
                catch (DllNotFoundException) { text = Other.dlerror(); }
                return text == IntPtr.Zero ? "dlopen failed" : Marshal.PtrToStringAnsi(text);
            }

            static class Glibc
            {
                [DllImport("libdl.so.2")] internal static extern IntPtr dlopen(string file, int flags);
                [DllImport("libdl.so.2")] internal static extern IntPtr dlsym(IntPtr lib, string name);
                [DllImport("libdl.so.2")] internal static extern IntPtr dlerror();
            }

            static class Other
            {
                [DllImport("libdl")] internal static extern IntPtr dlopen(string file, int flags);
                [DllImport("libdl")] internal static extern IntPtr dlsym(IntPtr lib, string name);
                [DllImport("libdl")] internal static extern IntPtr dlerror();
            }
        }
#endif
    }
}
