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
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var text = await reader.ReadToEndAsync(timeout.Token);
        var split = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        var head = split >= 0 ? text[..split] : text;
        var status = int.Parse(head.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        var content = split >= 0 ? text[(split + 4)..] : "";
        if (head.Contains("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase))
        {
            content = Dechunk(content);
        }
        return (status, head, content);
    }

    /// <summary>The body of a chunked HTTP/1.1 answer, its chunks joined (extensions and trailers dropped).</summary>
    public static string Dechunk(string chunked)
    {
        var result = new StringBuilder();
        var at = 0;
        while (at < chunked.Length)
        {
            var lineEnd = chunked.IndexOf("\r\n", at, StringComparison.Ordinal);
            var size = Convert.ToInt32(chunked[at..lineEnd].Split(';')[0], 16);
            if (size == 0)
            {
                break;
            }
            result.Append(chunked, lineEnd + 2, size);
            at = lineEnd + 2 + size + 2;
        }
        return result.ToString();
    }
}
