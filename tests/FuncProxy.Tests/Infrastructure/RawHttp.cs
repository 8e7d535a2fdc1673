using System.Net.Sockets;
using System.Text;

namespace FuncProxy.Tests.Infrastructure;

/// <summary>
/// Sends a request exactly as written, byte for byte: HttpClient normalises paths (dot segments, backslashes), which would
/// hide exactly the attacks the path tests need to send.
/// </summary>
public static class RawHttp
{
    public static async Task<(int Status, string Head, string Body)> SendAsync(Uri server, string method, string target, IEnumerable<string>? headers = null, string? body = null)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(server.Host, server.Port);
        await using var stream = client.GetStream();
        var request = new StringBuilder();
        request.Append(method).Append(' ').Append(target).Append(" HTTP/1.1\r\n");
        request.Append("Host: ").Append(server.Authority).Append("\r\n");
        request.Append("Connection: close\r\n");
        foreach (var h in headers ?? [])
        {
            request.Append(h).Append("\r\n");
        }
        if (body is not null)
        {
            request.Append("Content-Length: ").Append(Encoding.UTF8.GetByteCount(body)).Append("\r\n");
        }
        request.Append("\r\n");
        if (body is not null)
        {
            request.Append(body);
        }
        await stream.WriteAsync(Encoding.UTF8.GetBytes(request.ToString()));
        using var reader = new StreamReader(stream, Encoding.UTF8);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var text = await reader.ReadToEndAsync(timeout.Token);
        var split = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        var head = split >= 0 ? text[..split] : text;
        var status = int.Parse(head.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        return (status, head, split >= 0 ? text[(split + 4)..] : "");
    }
}
