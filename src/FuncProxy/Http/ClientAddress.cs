using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace FuncProxy.Http;

/// <summary>
/// The caller's IP for lockouts, admin rate limits and the audit log, worked out in one of two ways:
/// <list type="bullet">
/// <item>With <see cref="FuncProxyOptions.ClientIpHeader"/> set: that header, which the platform's front end writes on
/// every request (overwriting whatever the client sent), is the client. Behind the Functions host the connection's
/// address is only ever a front-end address (the host's forwarder replaces <c>X-Forwarded-For</c> with the address it
/// saw, and the worker makes that the connection's address), so this is the only way to tell callers apart there.</item>
/// <item>Otherwise the connection's remote address, unless that address is a configured trusted proxy
/// (<see cref="FuncProxyOptions.TrustedProxies"/>); then <c>X-Forwarded-For</c> is read from the right, skipping trusted
/// proxies, and the first untrusted address is the client. Entries to the left of it were written by the client itself
/// and are never believed.</item>
/// </list>
/// Addresses are parsed strictly: one IPv4 address in dotted-quad form or one IPv6 address, with an optional port
/// (<c>203.0.113.7:51234</c>, <c>[2001:db8::1]:443</c>, as App Service's front end writes them), which is dropped.
/// When no client address can be told apart from a proxy hop (the configured header is missing or malformed, every
/// forwarded hop is a trusted proxy, or the connection comes from a front end: <see cref="FuncProxyOptions.BehindFrontEnd"/>),
/// the result says so (<see cref="ResolvedClient.IsProxyHop"/>) and the callers do
/// not count failures against it: locking out a proxy would lock out every client behind it.
/// </summary>
public sealed partial class ClientAddress
{
    private const string ForwardedFor = "X-Forwarded-For";
    private readonly IOptionsMonitor<FuncProxyOptions> _options;
    private readonly ILogger _logger;
    private readonly Lock _parseLock = new();
    private (List<string> From, IPNetwork[] Parsed) _trusted = ([], []);
    private int _warnedProxyHop;

    public ClientAddress(IOptionsMonitor<FuncProxyOptions> options, ILogger<ClientAddress>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The client's address as text (<c>unknown</c> when the host does not know it, e.g. an in-process test server).</summary>
    public string Resolve(HttpContext context) => ResolveClient(context).Address;

    /// <summary>The client's address, where it came from, and whether it is a proxy hop rather than a client.</summary>
    public ResolvedClient ResolveClient(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var resolved = ResolveCore(context);
        if (resolved.IsProxyHop && Interlocked.Exchange(ref _warnedProxyHop, 1) == 0)
        {
            Log.ProxyHopNotLockedOut(_logger, resolved.Address, resolved.Source);
        }
        return resolved;
    }

    private ResolvedClient ResolveCore(HttpContext context)
    {
        var options = _options.CurrentValue;
        var remote = context.Connection.RemoteIpAddress is { } address ? Normalize(address) : null;
        var connectionText = remote?.ToString() ?? "unknown";

        if (!string.IsNullOrWhiteSpace(options.ClientIpHeader))
        {
            var header = options.ClientIpHeader.Trim();
            var values = context.Request.Headers[header];
            // Exactly one value holding exactly one address; anything else was not written by the front end alone.
            if (values.Count == 1 && TryParseAddress(values[0], out var fromHeader))
            {
                return new ResolvedClient(fromHeader.ToString(), header, IsProxyHop: false);
            }
            return new ResolvedClient(connectionText, "connection", IsProxyHop: true);
        }

        if (remote is null)
        {
            return new ResolvedClient("unknown", "connection", IsProxyHop: false);
        }
        var trusted = Trusted(options.TrustedProxies);
        if (trusted.Length == 0 || !IsTrusted(remote, trusted))
        {
            return new ResolvedClient(connectionText, "connection", IsProxyHop: options.BehindFrontEnd);
        }
        var hops = ForwardedHops(context.Request.Headers[ForwardedFor]);
        for (var i = hops.Count - 1; i >= 0; i--)
        {
            if (!TryParseAddress(hops[i], out var hop))
            {
                // A malformed entry ends the chain: nothing to its left can be believed either.
                break;
            }
            if (!IsTrusted(hop, trusted))
            {
                return new ResolvedClient(hop.ToString(), ForwardedFor, IsProxyHop: false);
            }
        }
        // Only trusted proxies (or nothing readable) between us and the caller: we cannot say who the client is.
        return new ResolvedClient(connectionText, "connection", IsProxyHop: true);
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
            network = new IPNetwork(address, address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128);
            return true;
        }
        return false;
    }

    /// <summary>
    /// Parses one forwarded address strictly: a dotted-quad IPv4 address or an IPv6 address (bracketed when a port
    /// follows), with an optional port that is dropped. Shorthand IPv4 forms (<c>1</c>, <c>1.2</c>, <c>0x7f.1</c>), zone
    /// ids, host names, lists and empty text are refused.
    /// </summary>
    public static bool TryParseAddress(string? text, out IPAddress address)
    {
        address = IPAddress.None;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        var span = text.AsSpan().Trim();
        if (span.Length > 64)
        {
            return false;
        }
        ReadOnlySpan<char> host;
        if (span[0] == '[')
        {
            var close = span.IndexOf(']');
            if (close < 0 || !IsPortOrNothing(span[(close + 1)..]))
            {
                return false;
            }
            host = span[1..close];
            if (!host.Contains(':'))
            {
                return false;
            }
        }
        else if (span.Count(':') == 1)
        {
            var colon = span.IndexOf(':');
            if (!IsPortOrNothing(span[colon..]))
            {
                return false;
            }
            host = span[..colon];
            if (!IsDottedQuad(host))
            {
                return false;
            }
        }
        else
        {
            host = span;
            if (!host.Contains(':') && !IsDottedQuad(host))
            {
                return false;
            }
        }
        if (host.Contains('%') || !IPAddress.TryParse(host, out var parsed))
        {
            return false;
        }
        address = Normalize(parsed);
        return true;
    }

    private static bool IsPortOrNothing(ReadOnlySpan<char> rest)
    {
        if (rest.IsEmpty)
        {
            return true;
        }
        return rest[0] == ':' && rest.Length is > 1 and <= 6 && !rest[1..].ContainsAnyExceptInRange('0', '9')
            && int.Parse(rest[1..], NumberStyles.None, CultureInfo.InvariantCulture) <= 65535;
    }

    private static bool IsDottedQuad(ReadOnlySpan<char> host)
    {
        var parts = 0;
        foreach (var range in host.Split('.'))
        {
            var part = host[range];
            if (part.IsEmpty || part.Length > 3 || part.ContainsAnyExceptInRange('0', '9'))
            {
                return false;
            }
            parts++;
        }
        return parts == 4;
    }

    private static List<string> ForwardedHops(StringValues values)
    {
        var hops = new List<string>();
        foreach (var value in values)
        {
            hops.AddRange((value ?? "").Split(',', StringSplitOptions.TrimEntries));
        }
        return hops;
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

    private IPNetwork[] Trusted(List<string> configured)
    {
        var current = _trusted;
        if (ReferenceEquals(configured, current.From))
        {
            return current.Parsed;
        }
        lock (_parseLock)
        {
            var parsed = new List<IPNetwork>();
            foreach (var entry in configured)
            {
                if (TryParseNetwork(entry, out var network))
                {
                    parsed.Add(network);
                }
            }
            _trusted = (configured, [.. parsed]);
            return _trusted.Parsed;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 4201, Level = LogLevel.Warning, Message = "The client address resolved to {Address} from {Source}, which is a proxy hop, not a client: failures from it are not counted towards lockouts. Check FuncProxy:ClientIpHeader and FuncProxy:TrustedProxies (logged once).")]
        public static partial void ProxyHopNotLockedOut(ILogger logger, string address, string source);
    }
}

/// <summary>A resolved caller address.</summary>
/// <param name="Address">The address as text (or <c>unknown</c>).</param>
/// <param name="Source">Where it came from: <c>connection</c>, <c>X-Forwarded-For</c> or the configured client IP header's name.</param>
/// <param name="IsProxyHop">
/// True when the address is a proxy's (a trusted proxy, or the front end when the configured header was missing or
/// malformed) rather than a client's: lockouts never count failures against it.
/// </param>
public readonly record struct ResolvedClient(string Address, string Source, bool IsProxyHop);
