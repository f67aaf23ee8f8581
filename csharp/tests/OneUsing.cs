// The smallest program: one `using`, then Ipcez.Connect(addr) as the README writes it.
// It listens on a temporary Unix socket, connects, and sends one message each way.
// Also the program the package test runs against the unpacked .nupkg.
using IpcezNet;

static class OneUsing
{
    static int Main()
    {
        string addr = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ipcez-one-using-" + System.Diagnostics.Process.GetCurrentProcess().Id + ".sock");
        using (IpcezListener listener = Ipcez.Listen(addr))
        using (IpcezSocket sock = Ipcez.Connect(addr))
        using (IpcezSocket peer = listener.Accept(System.TimeSpan.FromSeconds(5)))
        {
            sock.Send(System.Text.Encoding.UTF8.GetBytes("hello"));
            peer.Send(peer.Receive(System.TimeSpan.FromSeconds(5)));
            string reply = System.Text.Encoding.UTF8.GetString(sock.Receive(System.TimeSpan.FromSeconds(5)));
            System.Console.WriteLine("one using: " + reply + " via " + Ipcez.NativeLibraryPath);
            return reply == "hello" ? 0 : 1;
        }
    }
}
