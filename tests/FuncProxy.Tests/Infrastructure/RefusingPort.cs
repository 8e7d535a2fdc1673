using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace FuncProxy.Tests.Infrastructure;

/// <summary>
/// A loopback port where connections are refused, for as long as the test run lasts. A port merely found free (bound,
/// then released) is not one: the next server any test starts on port 0 may be given it, and then the "dead" upstream
/// or storage of one test sends its calls to another test's stub (seen: a stub counting 3 forwarded calls instead of 2).
/// This keeps a socket bound to the port without listening, exclusively, so the kernel refuses connections to it and
/// gives the port to nobody else.
/// </summary>
public static class RefusingPort
{
    private static readonly ConcurrentBag<Socket> Held = [];

    public static int Take()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, false);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        Held.Add(socket);
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    /// <summary>An http base URL on such a port.</summary>
    public static string Url(string path = "") => $"http://127.0.0.1:{Take()}{path}";
}
