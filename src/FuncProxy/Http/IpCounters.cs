using System.Collections.Concurrent;
using FuncProxy.RateLimiting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FuncProxy.Http;

/// <summary>
/// Per-IP counters shared by every instance, on the distributed limiter's counter rows (<see cref="CounterStore"/>: one
/// row per address and window, conditional ETag writes, windows aligned to UTC on storage's clock), in the <c>keys</c>
/// table under the partition <c>ip:{scope}:{address}</c> (never read as a key: key queries ask for the row <c>key</c>):
/// <list type="bullet">
/// <item>Failures (refused keys, failed admin authentications) are counted one by one, one claim per failure, never
/// leased ahead: a permit leased but unused on one instance would lock an address out before it reached the limit.
/// Only a failure costs a storage operation; a request that fails nothing costs none.</item>
/// <item>Admin calls per address and minute go through the limiter itself (<see cref="PolicyLimiter"/>, leased blocks),
/// so a busy operator costs one claim per block, not per call. Near the limit, permits other instances hold may make an
/// instance refuse a little early; all instances together never admit more than the limit.</item>
/// </list>
/// While storage cannot be reached, failures are counted by each instance alone (the caller's fallback) and admin calls
/// at the configured share (<see cref="LimitOptions.ExpectedInstances"/>).
/// </summary>
public sealed partial class IpCounters
{
    private const int PruneAbove = 10_000;

    private readonly CounterStore _store;
    private readonly LimiterClock _clock;
    private readonly IOptionsMonitor<FuncProxyOptions> _options;
    private readonly ILogger _logger;
    private readonly LimiterContext _calls;
    private readonly ConcurrentDictionary<(long Limit, long Seconds), LimitPolicy> _failurePolicies = new();
    private readonly ConcurrentDictionary<(string Scope, string Address), PolicyLimiter> _limiters = new();

    public IpCounters(CounterStore store, LimiterClock clock, IOptionsMonitor<FuncProxyOptions> options, ILogger<IpCounters> logger)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(clock);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(logger);
        _store = store;
        _clock = clock;
        _options = options;
        _logger = logger;
        _calls = new LimiterContext(store, clock, new StorageHealth(), () => CallOptions(options.CurrentValue.Limits), logger);
    }

    /// <summary>
    /// Counts one failure of <paramref name="address"/> in <paramref name="scope"/>: true when it is the
    /// <paramref name="maxFailures"/>-th in the current window of all instances together (the moment to lock out), false
    /// below that, null when storage could not count it (the caller counts it alone).
    /// </summary>
    public async ValueTask<bool?> CountFailureAsync(string scope, string address, int maxFailures, TimeSpan window, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(scope);
        ArgumentNullException.ThrowIfNull(address);
        if (maxFailures <= 1)
        {
            return maxFailures == 1;
        }
        // The limit is the failures still tolerated: the one the counter refuses is the one that trips the lockout.
        var seconds = Math.Max(1, (long)Math.Ceiling(window.TotalSeconds));
        var policy = _failurePolicies.GetOrAdd((maxFailures - 1, seconds),
            static k => new LimitPolicy("fail", PolicyUnit.Requests, k.Limit, PolicyWindow.Of(TimeSpan.FromSeconds(k.Seconds))));
        var windowStart = policy.Window.StartOf(_clock.UtcNow);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(_options.CurrentValue.Limits.StorageTimeout);
            var claim = await _store.ClaimAsync(PartitionKey(scope, address), policy, windowStart, known: null, want: 1, need: 1, debt: 0, timeout.Token).ConfigureAwait(false);
            return claim.Contended ? null : claim.Granted == 0;
        }
        catch (Exception e) when (FuncProxyTables.IsStorageFailure(e) && !cancellationToken.IsCancellationRequested)
        {
            Log.CountFailed(_logger, scope, FuncProxyTables.Describe(e));
            return null;
        }
    }

    /// <summary>Takes one of <paramref name="perMinute"/> calls of <paramref name="address"/> in <paramref name="scope"/>; refused: how long until the window ends.</summary>
    public async ValueTask<(bool Admitted, TimeSpan RetryAfter)> TakeCallAsync(string scope, string address, int perMinute, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(scope);
        ArgumentNullException.ThrowIfNull(address);
        var decision = await LimiterFor(_calls, scope, address, "rpm", perMinute, TimeSpan.FromMinutes(1)).AcquireAsync(1, cancellationToken).ConfigureAwait(false);
        return (decision.IsGranted, decision.IsGranted ? TimeSpan.Zero : decision.RetryAfter);
    }

    /// <summary>The partition of a counter: <c>ip:{scope}:{address}</c>.</summary>
    public static string PartitionKey(string scope, string address) => $"ip:{scope}:{address}";

    private PolicyLimiter LimiterFor(LimiterContext context, string scope, string address, string name, long limit, TimeSpan window)
    {
        var seconds = Math.Max(1, (long)Math.Ceiling(window.TotalSeconds));
        var key = (scope + "/" + name, address);
        if (_limiters.TryGetValue(key, out var existing) && existing.Policy.Limit == limit && existing.Policy.Window.Length.TotalSeconds == seconds)
        {
            return existing;
        }
        if (_limiters.Count > PruneAbove)
        {
            Prune();
        }
        var policy = new LimitPolicy(name, PolicyUnit.Requests, limit, PolicyWindow.Of(TimeSpan.FromSeconds(seconds)));
        var created = new PolicyLimiter(PartitionKey(scope, address), policy, context);
        return _limiters.AddOrUpdate(key, created, (_, current) =>
            current.Policy.Limit == limit && current.Policy.Window.Length.TotalSeconds == seconds ? current : created);
    }

    private void Prune()
    {
        foreach (var (key, limiter) in _limiters)
        {
            if (limiter.IdleDuration > limiter.Policy.Window.Length)
            {
                _limiters.TryRemove(key, out _);
            }
        }
    }

    // Admin calls: the limiter's own settings, but never refused wholesale while storage is down (Closed) nor unlimited (Open).
    private static LimitOptions CallOptions(LimitOptions limits) => new()
    {
        StorageFailureMode = StorageFailureMode.LocalShare,
        ExpectedInstances = limits.ExpectedInstances,
        StorageTimeout = limits.StorageTimeout,
        StorageRetryInterval = limits.StorageRetryInterval,
        LeaseDemandWindow = limits.LeaseDemandWindow,
        MaxLeaseBlock = limits.MaxLeaseBlock,
    };

    private static partial class Log
    {
        [LoggerMessage(EventId = 4214, Level = LogLevel.Warning, Message = "Counting a failure of scope {Scope} in storage failed ({Reason}); this instance counts it alone.")]
        public static partial void CountFailed(ILogger logger, string scope, string reason);
    }
}
