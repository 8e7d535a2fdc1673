using System.Collections.Concurrent;
using System.Threading.RateLimiting;
using FuncProxy.Keys;
using FuncProxy.Telemetry;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FuncProxy.RateLimiting;

/// <summary>
/// One call to limit: whose key, how many tokens it expects to use (0 when no token policy applies), the key's
/// <see cref="KeyRecord.ModelLimits"/> pattern that applies to its model (null: none), and its most expensive outcome in
/// micro-dollars (0 when no budget applies).
/// </summary>
/// <remarks>A value, not an object: one is made for every limited call.</remarks>
public readonly record struct LimitRequest(KeyRecord Key, long Tokens, string? ModelPattern = null, long CostMicroUsd = 0);

/// <summary>
/// Every policy of every key on this instance, as one <see cref="PartitionedRateLimiter{TResource}"/>: the partition is the
/// key, a call takes one request permit from each request policy and its expected tokens from each token policy, and all
/// must agree (the tightest decides; what the others granted is put back). Storage is async, so only
/// <see cref="PartitionedRateLimiter{TResource}.AcquireAsync"/> can claim permits from it; <c>AttemptAcquire</c> answers from
/// what this instance already holds.
/// </summary>
public sealed class KeyRateLimiter : PartitionedRateLimiter<LimitRequest>
{
    private const int PruneAbove = 10_000;
    // A call takes a stale policy's permit again at most this often before it gives up (see RetakeStaleAsync).
    private const int MaxRetakePasses = 4;

    private readonly KeyPolicies _policies;
    private readonly LimiterContext _context;
    private readonly ConcurrentDictionary<(string KeyId, LimitPolicy Policy), PolicyLimiter> _limiters = new();

    public KeyRateLimiter(CounterStore store, LimiterClock clock, IOptionsMonitor<FuncProxyOptions> options, FuncProxyMetrics metrics, ILogger<KeyRateLimiter> logger)
        : this(store, clock, () => options.CurrentValue.Limits, logger)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        metrics.ObserveLimiter(store, Statistics);
    }

    public KeyRateLimiter(CounterStore store, LimiterClock clock, Func<LimitOptions> options, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(clock);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(logger);
        _policies = new KeyPolicies(options);
        _context = new LimiterContext(store, clock, new StorageHealth(), options, logger);
        Store = store;
        Clock = clock;
    }

    public CounterStore Store { get; }

    /// <summary>Lease hits and storage waits of every policy of every key on this instance.</summary>
    public LimiterStatistics Statistics => _context.Statistics;

    public LimiterClock Clock { get; }

    public IReadOnlyList<LimitPolicy> PoliciesFor(KeyRecord key) => _policies.For(key);

    /// <summary>The key's policies plus those of its per-model limits for <paramref name="modelPattern"/>.</summary>
    public IReadOnlyList<LimitPolicy> PoliciesFor(KeyRecord key, string? modelPattern) => _policies.For(key, modelPattern);

    public override RateLimiterStatistics? GetStatistics(LimitRequest resource)
    {
        ArgumentNullException.ThrowIfNull(resource.Key);
        var policies = _policies.For(resource.Key);
        return policies.Count == 0 ? null : LimiterFor(resource.Key.Id, policies[0]).GetStatistics();
    }

    protected override RateLimitLease AttemptAcquireCore(LimitRequest resource, int permitCount)
    {
        ArgumentNullException.ThrowIfNull(resource.Key);
        var policies = _policies.For(resource.Key, resource.ModelPattern);
        var decisions = new PolicyDecision[policies.Count];
        for (var i = 0; i < decisions.Length; i++)
        {
            var limiter = LimiterFor(resource.Key.Id, policies[i]);
            using var lease = (PolicyLimiter.PolicyLease)limiter.AttemptAcquire(checked((int)Amount(policies[i], resource, permitCount)));
            decisions[i] = lease.Decision;
            if (!lease.IsAcquired)
            {
                return Refuse(resource.Key.Id, decisions, i + 1);
            }
        }
        return new KeyLease(this, resource.Key.Id, decisions, decisions.Length);
    }

    protected override async ValueTask<RateLimitLease> AcquireAsyncCore(LimitRequest resource, int permitCount, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(resource.Key);
        var policies = _policies.For(resource.Key, resource.ModelPattern);
        // An array and an index, not a List and an enumerator: this runs on every limited call.
        var decisions = new PolicyDecision[policies.Count];
        var waited = false;
        for (var i = 0; i < decisions.Length; i++)
        {
            var policy = policies[i];
            var acquire = LimiterFor(resource.Key.Id, policy).AcquireAsync(Amount(policy, resource, permitCount), cancellationToken);
            waited |= !acquire.IsCompleted;
            var decision = await acquire.ConfigureAwait(false);
            decisions[i] = decision;
            if (!decision.IsGranted)
            {
                return Refuse(resource.Key.Id, decisions, i + 1);
            }
        }
        // Decisions all made from memory were made within microseconds of each other, each outside its window's guard band.
        return waited && decisions.Length > 1
            ? await RetakeStaleAsync(resource, permitCount, decisions, cancellationToken).ConfigureAwait(false)
            : new KeyLease(this, resource.Key.Id, decisions, decisions.Length);
    }

    /// <summary>
    /// A policy that waited (for a claim, or for its next window) may have outlasted the window an earlier policy of the
    /// same call granted in: a permit of a window that storage's time may have left must not admit the call. Such permits
    /// are given back and taken again in their policy's current window (the others' grants stand), until all hold at once.
    /// </summary>
    private async ValueTask<KeyLease> RetakeStaleAsync(LimitRequest resource, int permitCount, PolicyDecision[] decisions, CancellationToken cancellationToken)
    {
        for (var pass = 1; ; pass++)
        {
            var retook = false;
            for (var i = 0; i < decisions.Length; i++)
            {
                var stale = decisions[i];
                var limiter = LimiterFor(resource.Key.Id, stale.Policy);
                if (limiter.StillInWindow(stale))
                {
                    continue;
                }
                limiter.Return(stale.Amount, stale.WindowStart);
                if (pass > MaxRetakePasses)
                {
                    // Windows keep closing under this call (a pathologically slow storage): refuse rather than admit late.
                    decisions[i] = stale with { Verdict = Verdict.Refused, RetryAfter = TimeSpan.FromMilliseconds(100) };
                    return RefuseAt(resource.Key.Id, decisions, i);
                }
                retook = true;
                decisions[i] = await limiter.AcquireAsync(Amount(stale.Policy, resource, permitCount), cancellationToken).ConfigureAwait(false);
                if (!decisions[i].IsGranted)
                {
                    return RefuseAt(resource.Key.Id, decisions, i);
                }
            }
            if (!retook)
            {
                return new KeyLease(this, resource.Key.Id, decisions, decisions.Length);
            }
        }
    }

    /// <summary>Refuses with decision <paramref name="refused"/>, all the others granted: the refusal goes last, as <see cref="KeyLease"/> expects.</summary>
    private KeyLease RefuseAt(string keyId, PolicyDecision[] decisions, int refused)
    {
        var ordered = new PolicyDecision[decisions.Length];
        var n = 0;
        for (var i = 0; i < decisions.Length; i++)
        {
            if (i != refused)
            {
                ordered[n++] = decisions[i];
            }
        }
        ordered[n] = decisions[refused];
        return Refuse(keyId, ordered, ordered.Length);
    }

    private static long Amount(LimitPolicy policy, LimitRequest resource, int permitCount) => policy.Unit switch
    {
        PolicyUnit.Requests => permitCount,
        _ when permitCount == 0 => 0,
        PolicyUnit.Tokens => resource.Tokens,
        _ => resource.CostMicroUsd,
    };

    private KeyLease Refuse(string keyId, PolicyDecision[] decisions, int count)
    {
        // The last decision refused; give back what the ones before it granted.
        for (var i = 0; i < count - 1; i++)
        {
            var d = decisions[i];
            LimiterFor(keyId, d.Policy).Return(d.Amount, d.WindowStart);
        }
        return new KeyLease(this, keyId, decisions, count);
    }

    internal PolicyLimiter LimiterFor(string keyId, LimitPolicy policy)
    {
        if (_limiters.TryGetValue((keyId, policy), out var limiter))
        {
            return limiter;
        }
        if (_limiters.Count >= PruneAbove)
        {
            Prune();
        }
        return _limiters.GetOrAdd((keyId, policy), static (k, context) => new PolicyLimiter(k.KeyId, k.Policy, context), _context);
    }

    private void Prune()
    {
        foreach (var (k, limiter) in _limiters)
        {
            var idle = limiter.IdleDuration ?? TimeSpan.Zero;
            var window = limiter.Policy.Window.IsCalendarMonth ? TimeSpan.FromDays(31) : limiter.Policy.Window.Length;
            if (idle > window + window)
            {
                _limiters.TryRemove(k, out _);
            }
        }
    }

    /// <summary>
    /// The outcome across a key's policies. Granted: holds what each policy gave, so a token reservation can be settled
    /// against the real usage. Refused: <see cref="MetadataName.RetryAfter"/> and <see cref="MetadataName.ReasonPhrase"/>
    /// (the refusing policy's name).
    /// </summary>
    public sealed class KeyLease : RateLimitLease
    {
        private readonly KeyRateLimiter _owner;
        private readonly string _keyId;
        private readonly PolicyDecision[] _decisions;
        private readonly int _count;
        private int _settled;

        // decisions: the policies' answers in order; only the first count were asked (a refusal stops the rest).
        internal KeyLease(KeyRateLimiter owner, string keyId, PolicyDecision[] decisions, int count)
        {
            _owner = owner;
            _keyId = keyId;
            _decisions = decisions;
            _count = count;
            IsAcquired = count == decisions.Length && Array.TrueForAll(decisions, static d => d.IsGranted);
        }

        public override bool IsAcquired { get; }

        internal IReadOnlyList<PolicyDecision> Decisions => new ArraySegment<PolicyDecision>(_decisions, 0, _count);

        /// <summary>The same as <see cref="Decisions"/>, without boxing: for the request path.</summary>
        internal ReadOnlySpan<PolicyDecision> DecisionSpan => _decisions.AsSpan(0, _count);

        /// <summary>The policy that refused, when one did.</summary>
        internal PolicyDecision? Refusal => IsAcquired ? null : _decisions[_count - 1];

        /// <summary>True when the refusal is storage being down under <see cref="StorageFailureMode.Closed"/>, not a limit.</summary>
        public bool StorageUnavailable => Refusal?.Verdict == Verdict.Unavailable;

        public TimeSpan RetryAfter => Refusal?.RetryAfter ?? TimeSpan.Zero;

        public string? RefusingPolicy => Refusal?.Policy.Name;

        /// <summary>Tokens taken from each token policy (the reservation).</summary>
        public long ReservedTokens => Reserved(PolicyUnit.Tokens);

        public override IEnumerable<string> MetadataNames => IsAcquired ? [] : [MetadataName.RetryAfter.Name, MetadataName.ReasonPhrase.Name];

        public override bool TryGetMetadata(string metadataName, out object? metadata)
        {
            metadata = null;
            if (Refusal is not { } refusal)
            {
                return false;
            }
            if (metadataName == MetadataName.RetryAfter.Name)
            {
                metadata = refusal.RetryAfter;
            }
            else if (metadataName == MetadataName.ReasonPhrase.Name)
            {
                metadata = refusal.Policy.Name;
            }
            return metadata is not null;
        }

        /// <summary>The money reserved by each budget policy, in micro-dollars.</summary>
        public long ReservedMicroUsd => Reserved(PolicyUnit.MicroUsd);

        // The largest amount any granted policy of this unit took (0: none), without LINQ's iterators: read on every call.
        private long Reserved(PolicyUnit unit)
        {
            long max = 0;
            foreach (var d in DecisionSpan)
            {
                if (d.Policy.Unit == unit && d.IsGranted && d.Amount > max)
                {
                    max = d.Amount;
                }
            }
            return max;
        }

        /// <summary>Settles the token reservation only (budgets keep their reservation). See <see cref="Settle"/>.</summary>
        public void SettleTokens(long usedTokens) => Settle(usedTokens, null);

        /// <summary>
        /// Settles the reservations with what the call really used: unused units go back to this instance's lease (they are
        /// counted in storage already), units beyond the reservation are charged. A null <paramref name="usedMicroUsd"/>
        /// leaves budget reservations as they are (the cost is not known). Once only.
        /// </summary>
        public void Settle(long usedTokens, long? usedMicroUsd)
        {
            if (!IsAcquired || Interlocked.Exchange(ref _settled, 1) != 0)
            {
                return;
            }
            foreach (var d in DecisionSpan)
            {
                long used;
                if (d.Policy.Unit == PolicyUnit.Tokens)
                {
                    used = usedTokens;
                }
                else if (d.Policy.Unit == PolicyUnit.MicroUsd && usedMicroUsd is { } micros)
                {
                    used = micros;
                }
                else
                {
                    continue;
                }
                var limiter = _owner.LimiterFor(_keyId, d.Policy);
                if (used < d.Amount)
                {
                    limiter.Return(d.Amount - used, d.WindowStart);
                }
                else
                {
                    limiter.Charge(used - d.Amount);
                }
            }
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}
