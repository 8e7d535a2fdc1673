using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace FuncProxy.Telemetry;

/// <summary>
/// The engine's traces and metrics, under one name (<see cref="Name"/>) for both the <see cref="ActivitySource"/> and the
/// <see cref="Meter"/>. Tags carry key ids, upstream names and reasons, never key material or secrets.
/// </summary>
public sealed class FuncProxyMetrics
{
    public const string Name = "FuncProxy";

    /// <summary>One span per proxied call.</summary>
    public static readonly ActivitySource ActivitySource = new(Name);

    private readonly Counter<long> _requests;
    private readonly Counter<long> _refusals;
    private readonly Histogram<double> _upstreamDuration;
    private readonly Counter<long> _keyCacheHits;
    private readonly Counter<long> _keyCacheMisses;
    private readonly Counter<long> _secretCacheHits;
    private readonly Counter<long> _secretCacheMisses;
    private readonly Counter<long> _backendRequests;
    private readonly Counter<long> _failovers;
    private readonly Counter<long> _breakerOpenings;

    public FuncProxyMetrics(IMeterFactory meterFactory)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);
        Meter = meterFactory.Create(Name);
        _requests = Meter.CreateCounter<long>("funcproxy.requests", "{request}", "Client calls handled, by upstream and outcome.");
        _refusals = Meter.CreateCounter<long>("funcproxy.refusals", "{request}", "Client calls refused by the gateway, by reason.");
        _upstreamDuration = Meter.CreateHistogram<double>("funcproxy.upstream.duration", "s", "Time from forwarding to the end of the upstream's answer.");
        _keyCacheHits = Meter.CreateCounter<long>("funcproxy.key_cache.hits", "{lookup}", "Key record lookups answered from memory.");
        _keyCacheMisses = Meter.CreateCounter<long>("funcproxy.key_cache.misses", "{lookup}", "Key record lookups that waited for storage.");
        _secretCacheHits = Meter.CreateCounter<long>("funcproxy.secret_cache.hits", "{lookup}", "Secret lookups answered from memory.");
        _secretCacheMisses = Meter.CreateCounter<long>("funcproxy.secret_cache.misses", "{lookup}", "Secret lookups that waited for the secret source.");
        _backendRequests = Meter.CreateCounter<long>("funcproxy.backend.requests", "{request}", "Attempts sent to each backend of a pool, by outcome and status.");
        _failovers = Meter.CreateCounter<long>("funcproxy.backend.failovers", "{attempt}", "Attempts that moved a call on to another backend, by the backend left and why.");
        _breakerOpenings = Meter.CreateCounter<long>("funcproxy.backend.breaker_openings", "{opening}", "Circuit breakers opened, by backend and reason (RetryAfter, ConsecutiveFailures, Shared).");
    }

    public Meter Meter { get; }

    /// <summary>The distributed limiter's storage operations and conflicts, and its decisions from memory vs. waits for storage.</summary>
    internal void ObserveLimiter(RateLimiting.CounterStore store, RateLimiting.LimiterStatistics statistics)
    {
        Meter.CreateObservableCounter("funcproxy.limiter.storage_operations", () => store.Operations, "{operation}", "Counter row reads and writes of the rate limiter.");
        Meter.CreateObservableCounter("funcproxy.limiter.conflicts", () => store.Conflicts, "{operation}", "Counter writes that lost to another instance (412/409).");
        Meter.CreateObservableCounter("funcproxy.limiter.lease_hits", () => statistics.LeaseHits, "{decision}", "Limiter decisions answered from permits leased in memory.");
        Meter.CreateObservableCounter("funcproxy.limiter.storage_waits", () => statistics.StorageWaits, "{decision}", "Limiter decisions that waited for a claim from storage.");
    }

    public void Request(string upstream, string outcome, int status) =>
        _requests.Add(1, new TagList { { "funcproxy.upstream", upstream }, { "funcproxy.outcome", outcome }, { "http.response.status_code", status } });

    public void Refusal(string upstream, string reason) =>
        _refusals.Add(1, new TagList { { "funcproxy.upstream", upstream }, { "funcproxy.reason", reason } });

    public void UpstreamDuration(string upstream, int? status, TimeSpan elapsed) =>
        _upstreamDuration.Record(elapsed.TotalSeconds, new TagList { { "funcproxy.upstream", upstream }, { "http.response.status_code", status ?? 0 } });

    public void BackendRequest(string upstream, string backend, string outcome, int? status) =>
        _backendRequests.Add(1, new TagList { { "funcproxy.upstream", upstream }, { "funcproxy.backend", backend }, { "funcproxy.outcome", outcome }, { "http.response.status_code", status ?? 0 } });

    public void Failover(string upstream, string backend, string reason) =>
        _failovers.Add(1, new TagList { { "funcproxy.upstream", upstream }, { "funcproxy.backend", backend }, { "funcproxy.reason", reason } });

    public void BreakerOpened(string upstream, string backend, Backends.BreakerReason reason) =>
        _breakerOpenings.Add(1, new TagList { { "funcproxy.upstream", upstream }, { "funcproxy.backend", backend }, { "funcproxy.reason", reason.ToString() } });

    public void KeyCache(bool hit) => (hit ? _keyCacheHits : _keyCacheMisses).Add(1);

    public void SecretCache(bool hit, string secretName) =>
        (hit ? _secretCacheHits : _secretCacheMisses).Add(1, new KeyValuePair<string, object?>("funcproxy.secret", secretName));
}
