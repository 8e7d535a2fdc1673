using System.Collections.Frozen;
using FuncProxy.RateLimiting;
using Microsoft.Extensions.Options;

namespace FuncProxy.Proxying;

/// <summary>The configured upstreams by name (case-insensitive), built once from options.</summary>
public sealed class UpstreamCatalog
{
    private readonly FrozenDictionary<string, UpstreamRoute> _routes;

    public UpstreamCatalog(IOptions<FuncProxyOptions> options, LimiterClock clock)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(clock);
        var value = options.Value;
        // Breakers are judged by the local clock; the breakers table converts to and from the storage-aligned clock.
        _routes = value.Upstreams
            .Where(u => u.Value.BaseUrl is not null || u.Value.Backends.Count > 0)
            .ToFrozenDictionary(u => u.Key, u => new UpstreamRoute(u.Key, u.Value, value, () => clock.LocalNow), StringComparer.OrdinalIgnoreCase);
    }

    public IEnumerable<UpstreamRoute> Routes => _routes.Values;

    public UpstreamRoute? Find(string? name) => name is not null && _routes.TryGetValue(name, out var route) ? route : null;

    /// <summary>The configured name for <paramref name="name"/> (any case), or null: a lookup that makes no string.</summary>
    internal string? NameOf(ReadOnlySpan<char> name) =>
        _routes.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(name, out var route) ? route.Name : null;

    public static bool IsValidName(string? name) =>
        name is { Length: > 0 and <= 64 } && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');
}
