// A small test runner: runs every [Test] method of the test classes, each on its own thread
// with a hard timeout, and prints one line per test and then "N passed, N failed".
// Usage: mono IpcezTests.exe [name-substring...]
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Reflection;
using System.Threading;

namespace IpcezNet.Tests
{
    [AttributeUsage(AttributeTargets.Method)]
    sealed class TestAttribute : Attribute
    {
        /// <summary>Hard limit in seconds; the run fails (and stops) when a test exceeds it.</summary>
        public int TimeoutSeconds = 60;
    }

    sealed class AssertionException : Exception
    {
        public AssertionException(string message) : base(message) { }
    }

    static class Assert
    {
        public static void True(bool condition, string what)
        {
            if (!condition) throw new AssertionException(what);
        }

        public static void Equal<T>(T expected, T actual, string what)
        {
            if (!EqualityComparer<T>.Default.Equals(expected, actual))
                throw new AssertionException(what + ": expected " + expected + ", got " + actual);
        }

        public static void Bytes(byte[] expected, byte[] actual, string what)
        {
            if (actual == null || !expected.SequenceEqual(actual))
                throw new AssertionException(what + ": " + expected.Length + " bytes expected, got " + (actual == null ? "null" : actual.Length + " other bytes"));
        }

        public static T Throws<T>(Action action, string what) where T : Exception
        {
            try { action(); }
            catch (T e) { return e; }
            catch (Exception e) { throw new AssertionException(what + ": expected " + typeof(T).Name + ", got " + e.GetType().Name + ": " + e.Message); }
            throw new AssertionException(what + ": expected " + typeof(T).Name + ", nothing was thrown");
        }
    }

    static class Runner
    {
        static int Main(string[] args)
        {
            if (args.Length == 1 && args[0] == "--exit-child") return ConcurrencyTests.ExitChild();
            var tests = typeof(Runner).Assembly.GetTypes()
                .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Static))
                .Where(m => m.GetCustomAttributes(typeof(TestAttribute), false).Length > 0)
                .Where(m => args.Length == 0 || args.Any(a => (m.DeclaringType.Name + "." + m.Name).Contains(a)))
                .OrderBy(m => m.DeclaringType.Name).ThenBy(m => m.Name)
                .ToList();
            int passed = 0, failed = 0;
            Stopwatch all = Stopwatch.StartNew();
            foreach (MethodInfo test in tests)
            {
                string name = test.DeclaringType.Name + "." + test.Name;
                var limit = ((TestAttribute)test.GetCustomAttributes(typeof(TestAttribute), false)[0]).TimeoutSeconds;
                Exception failure = null;
                var clock = Stopwatch.StartNew();
                var thread = new Thread(() =>
                {
                    try { test.Invoke(null, null); }
                    catch (TargetInvocationException e) { failure = e.InnerException; }
                    catch (Exception e) { failure = e; }
                }) { IsBackground = true, Name = name };
                thread.Start();
                if (!thread.Join(TimeSpan.FromSeconds(limit)))
                {
                    Console.WriteLine("FAIL " + name + ": still running after " + limit + " s (hard timeout); stopping the run");
                    Console.WriteLine(passed + " passed, " + (failed + 1) + " failed");
                    return 1;
                }
                if (failure == null)
                {
                    passed++;
                    Console.WriteLine("ok   " + name + " (" + clock.ElapsedMilliseconds + " ms)");
                }
                else
                {
                    failed++;
                    Console.WriteLine("FAIL " + name + ": " + failure);
                }
            }
            Console.WriteLine(passed + " passed, " + failed + " failed (" + all.Elapsed.TotalSeconds.ToString("0.0") + " s)");
            Helpers.CleanUp(Helpers.TempDir(Process.GetCurrentProcess().Id));
            return failed == 0 && passed > 0 ? 0 : 1;
        }
    }
}
