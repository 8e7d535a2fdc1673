using System.Net;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace FuncProxy.Http;

/// <summary>
/// The caller's IP for lockouts, admin rate limits and the audit log: the connection's remote address, unless that
/// address is a configured trusted proxy (<see cref="FuncProxyOptions.TrustedProxies"/>); then <c>X-Forwarded-For</c> is
/// read from the right, skipping trusted proxies, and the first untrusted address is the client. Entries to the left of
/// it were written by the client itself and are never believed.
/// </summary>
public sealed class ClientAddress
{
    private const string ForwardedFor = "X-Forwarded-For";
    private readonly IOptionsMonitor<FuncProxyOptions> _options;
    private List<string>? _parsedFrom;
    private IPNetwork[] _trusted = [];

    public ClientAddress(IOptionsMonitor<FuncProxyOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
    }

    /// <summary>The client's address as text (<c>unknown</c> when the host does not know it, e.g. an in-process test server).</summary>
    public string Resolve(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var remote = context.Connection.RemoteIpAddress;
        if (remote is null)
        {
            return "unknown";
        }
        remote = Normalize(remote);
        var trusted = Trusted();
        if (trusted.Length == 0 || !IsTrusted(remote, trusted))
        {
            return remote.ToString();
        }
        var client = remote;
        var hops = context.Request.Headers[ForwardedFor].ToString().Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        for (var i = hops.Length - 1; i >= 0; i--)
        {
            if (!IPAddress.TryParse(hops[i], out var hop))
            {
                break;
            }
            client = Normalize(hop);
            if (!IsTrusted(client, trusted))
            {
                break;
            }
        }
        return client.ToString();
    }

    /// <summary>Parses <c>203.0.113.7</c> or <c>10.0.0.0/8</c> (IPv4 or IPv6).</summary>
    public static bool TryParseNetwork(string? text, out IPNetwork network)
    {
        network = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        text = text.Trim();
        if (text.Contains('/', StringComparison.Ordinal))
        {
            return IPNetwork.TryParse(text, out network);
        }
        if (IPAddress.TryParse(text, out var address))
        {
            address = Normalize(address);
            network = new IPNetwork(address, address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128);
            return true;
        }
        return false;
    }

    private static IPAddress Normalize(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;

    private static bool IsTrusted(IPAddress address, IPNetwork[] trusted)
    {
        foreach (var network in trusted)
        {
            if (network.Contains(address))
            {
                return true;
            }
        }
        return false;
    }

    private IPNetwork[] Trusted()
    {
        var configured = _options.CurrentValue.TrustedProxies;
        if (!ReferenceEquals(configured, _parsedFrom))
        {
            var parsed = new List<IPNetwork>();
            foreach (var entry in configured)
            {
                if (TryParseNetwork(entry, out var network))
                {
                    parsed.Add(network);
                }
            }
            _trusted = [.. parsed];
            _parsedFrom = configured;
        }
        return _trusted;
    }
}
