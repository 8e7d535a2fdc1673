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
    private readonly Counter<long> _unpriced;
    private readonly Counter<double> _cost;
    private readonly Histogram<long> _tokenUsage;
    private readonly Histogram<double> _operationDuration;
    private readonly Histogram<double> _timeToFirstChunk;
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
        _unpriced = Meter.CreateCounter<long>("funcproxy.spend.unpriced", "{request}", "Calls with a body to a model the price table does not know, by upstream and model.");
        _cost = Meter.CreateCounter<double>("funcproxy.spend.cost", "USD", "What calls cost at the configured prices, by key, upstream and model.");
        // GenAI client metrics of OpenTelemetry semantic-conventions v1.41.0, with the bucket boundaries it advises.
        _tokenUsage = Meter.CreateHistogram<long>("gen_ai.client.token.usage", "{token}", "Number of input and output tokens used.",
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864] });
        var seconds = new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92] };
        _operationDuration = Meter.CreateHistogram<double>("gen_ai.client.operation.duration", "s", "GenAI operation duration.", advice: seconds);
        _timeToFirstChunk = Meter.CreateHistogram<double>("gen_ai.client.operation.time_to_first_chunk", "s",
            "Time to receive the first chunk of a streamed response, from when the gateway forwarded the request.", advice: seconds);
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

    // The per-call instruments check Enabled first: with no listener (no exporter configured) a call builds no tags and
    // boxes no status code.
    public void Request(string upstream, string outcome, int status)
    {
        if (_requests.Enabled)
        {
            _requests.Add(1, new TagList { { "funcproxy.upstream", upstream }, { "funcproxy.outcome", outcome }, { "http.response.status_code", status } });
        }
    }

    public void Refusal(string upstream, string reason) =>
        _refusals.Add(1, new TagList { { "funcproxy.upstream", upstream }, { "funcproxy.reason", reason } });

    public void UpstreamDuration(string upstream, int? status, TimeSpan elapsed)
    {
        if (_upstreamDuration.Enabled)
        {
            _upstreamDuration.Record(elapsed.TotalSeconds, new TagList { { "funcproxy.upstream", upstream }, { "http.response.status_code", status ?? 0 } });
        }
    }

    /// <summary>A call to a model without a price (<paramref name="model"/> null: the call named none the gateway could read).</summary>
    public void Unpriced(string upstream, string? model) =>
        _unpriced.Add(1, new TagList { { "funcproxy.upstream", upstream }, { "gen_ai.request.model", model ?? "" } });

    /// <summary>
    /// One model call's GenAI metrics and span attributes: duration, token usage by <c>gen_ai.token.type</c> (when reported),
    /// time to first chunk (streams only), <c>gen_ai.response.model</c> when the response named one, <c>error.type</c> (the
    /// HTTP status) on failure; and FuncProxy's cost counter.
    /// </summary>
    /// <summary>True when anything listens to the GenAI instruments (otherwise a call needs no <see cref="GenAiCall"/>).</summary>
    internal bool GenAiEnabled => _operationDuration.Enabled || _timeToFirstChunk.Enabled || _tokenUsage.Enabled || _cost.Enabled;

    internal void GenAiCompleted(GenAiCall call, string keyId, string upstream, Proxying.TokenUsage usage, string? responseModel,
        int status, TimeSpan duration, TimeSpan? timeToFirstChunk, long costMicroUsd)
    {
        if (call.Activity is null && !GenAiEnabled)
        {
            return;
        }
        var tags = new TagList
        {
            { "gen_ai.operation.name", call.Operation },
            { "gen_ai.provider.name", call.Provider },
            { "gen_ai.request.model", call.RequestModel },
        };
        if (responseModel is not null)
        {
            tags.Add("gen_ai.response.model", responseModel);
        }
        if (status >= 400)
        {
            tags.Add("error.type", status.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        _operationDuration.Record(duration.TotalSeconds, tags);
        if (timeToFirstChunk is { } first)
        {
            _timeToFirstChunk.Record(first.TotalSeconds, tags);
        }
        if (usage.InputTokens is { } input)
        {
            var t = tags;
            t.Add("gen_ai.token.type", "input");
            _tokenUsage.Record(input, t);
        }
        if (usage.OutputTokens is { } output)
        {
            var t = tags;
            t.Add("gen_ai.token.type", "output");
            _tokenUsage.Record(output, t);
        }
        if (costMicroUsd > 0)
        {
            _cost.Add(costMicroUsd / 1_000_000.0, new TagList { { "funcproxy.key_id", keyId }, { "funcproxy.upstream", upstream }, { "gen_ai.request.model", call.RequestModel } });
        }
        if (call.Activity is { } activity)
        {
            activity.SetTag("gen_ai.response.model", responseModel);
            activity.SetTag("gen_ai.usage.input_tokens", usage.InputTokens);
            activity.SetTag("gen_ai.usage.output_tokens", usage.OutputTokens);
            activity.SetTag("funcproxy.cost_usd", costMicroUsd / 1_000_000.0);
        }
    }

    public void BackendRequest(string upstream, string backend, string outcome, int? status)
    {
        if (_backendRequests.Enabled)
        {
            _backendRequests.Add(1, new TagList { { "funcproxy.upstream", upstream }, { "funcproxy.backend", backend }, { "funcproxy.outcome", outcome }, { "http.response.status_code", status ?? 0 } });
        }
    }

    public void Failover(string upstream, string backend, string reason) =>
        _failovers.Add(1, new TagList { { "funcproxy.upstream", upstream }, { "funcproxy.backend", backend }, { "funcproxy.reason", reason } });

    public void BreakerOpened(string upstream, string backend, Backends.BreakerReason reason) =>
        _breakerOpenings.Add(1, new TagList { { "funcproxy.upstream", upstream }, { "funcproxy.backend", backend }, { "funcproxy.reason", reason.ToString() } });

    public void KeyCache(bool hit) => (hit ? _keyCacheHits : _keyCacheMisses).Add(1);

    public void SecretCache(bool hit, string secretName) =>
        (hit ? _secretCacheHits : _secretCacheMisses).Add(1, new KeyValuePair<string, object?>("funcproxy.secret", secretName));
}
