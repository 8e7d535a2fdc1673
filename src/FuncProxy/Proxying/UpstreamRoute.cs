using System.Collections.Frozen;
using FuncProxy.Backends;

namespace FuncProxy.Proxying;

/// <summary>A configured upstream, ready to forward to: its pool of backends, failover and breaker settings, and limits.</summary>
public sealed class UpstreamRoute
{
    internal UpstreamRoute(string name, UpstreamOptions options, FuncProxyOptions root, Func<DateTimeOffset> now)
    {
        Name = name;
        var defaults = root.Proxy;
        MaxRequestBodyBytes = options.MaxRequestBodyBytes ?? defaults.MaxRequestBodyBytes;
        Failover = options.Failover;
        RetryOnStatus = options.Failover.EffectiveRetryOnStatus.ToFrozenSet();
        var timeout = options.Timeout ?? defaults.UpstreamTimeout;
        IReadOnlyList<Backend> backends = options.Backends.Count > 0
            ? [.. options.Backends.OrderBy(b => b.Value.Priority).ThenBy(b => b.Key, StringComparer.Ordinal)
                .Select(b => new Backend(name, b.Key, b.Value, timeout, root.Storage.ManagedIdentityClientId, options.Breaker))]
            : [new Backend(name, Backend.DefaultName, new BackendOptions
            {
                BaseUrl = options.BaseUrl ?? throw new ArgumentException($"Upstream '{name}' has no BaseUrl.", nameof(options)),
                SecretName = options.SecretName,
                AuthHeader = options.AuthHeader,
                AuthScheme = options.AuthScheme,
                Timeout = options.Timeout,
            }, timeout, root.Storage.ManagedIdentityClientId, options.Breaker)];
        Pool = new BackendPool(backends, now);
        IsPool = options.Backends.Count > 0;
        MapsModels = backends.Any(b => b.Deployments.Count > 0);
        KeepsBodyForReplay = (backends.Count > 1 && Failover.MaxAttempts > 1) || MapsModels || backends.Any(b => b.Auth != BackendAuth.None);
        Provider = options.Provider ?? InferProvider(backends);
        Cors = CrossOrigin.BuildPolicy(options.Cors);
    }

    public string Name { get; }

    /// <summary>True when configured with <c>Backends</c> (not a plain <c>BaseUrl</c>): only pools share their breakers between instances.</summary>
    public bool IsPool { get; }

    /// <summary>The backends calls go to, best first.</summary>
    public BackendPool Pool { get; }

    /// <summary>The OpenTelemetry <c>gen_ai.provider.name</c>, when known.</summary>
    public string? Provider { get; }

    public long MaxRequestBodyBytes { get; }

    /// <summary>True when a backend maps models to deployments (the body is then parsed whole for its model, per attempt).</summary>
    internal bool MapsModels { get; }

    /// <summary>
    /// True when a call may need its body again: another backend to fail over to, a credential to refresh after a 401, or
    /// a model to map. The body is then kept in memory (see <see cref="PoolForwarder"/>). Known once, not asked per call.
    /// </summary>
    internal bool KeepsBodyForReplay { get; }

    /// <summary>Who may call this upstream from a browser on another origin (<see cref="CrossOrigin"/>); null: nobody.</summary>
    public Microsoft.AspNetCore.Cors.Infrastructure.CorsPolicy? Cors { get; }

    public FailoverOptions Failover { get; }

    /// <summary>Upstream statuses that make a call move on to the next backend.</summary>
    public IReadOnlySet<int> RetryOnStatus { get; }

    /// <summary>Checks the client's path and query once for every backend: see <see cref="UpstreamPath"/>.</summary>
    public static bool TryParsePath(string? path, string? query, out UpstreamPath parsed) => UpstreamPath.TryParse(path, query, out parsed);

    private static string? InferProvider(IReadOnlyList<Backend> backends)
    {
        var host = backends[0].Origin;
        if (host.EndsWith(".openai.azure.com", StringComparison.OrdinalIgnoreCase) || host.EndsWith(".cognitiveservices.azure.com", StringComparison.OrdinalIgnoreCase)
            || host.EndsWith(".services.ai.azure.com", StringComparison.OrdinalIgnoreCase))
        {
            return "azure.ai.openai";
        }
        if (host.EndsWith("://api.openai.com", StringComparison.OrdinalIgnoreCase))
        {
            return "openai";
        }
        return host.EndsWith("://api.anthropic.com", StringComparison.OrdinalIgnoreCase) ? "anthropic" : null;
    }
}
