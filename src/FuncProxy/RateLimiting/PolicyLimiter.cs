using System.Threading.RateLimiting;
using Microsoft.Extensions.Logging;

namespace FuncProxy.RateLimiting;

/// <summary>How one policy answered one acquisition.</summary>
internal enum Verdict
{
    Granted,
    Refused,
    /// <summary>Storage is down and <see cref="StorageFailureMode.Closed"/> applies.</summary>
    Unavailable,
}

/// <summary>One policy's answer, with what the <c>RateLimit</c> header reports.</summary>
internal readonly record struct PolicyDecision(
    LimitPolicy Policy, Verdict Verdict, long Amount, DateTimeOffset WindowStart, DateTimeOffset WindowEnd, long Remaining, TimeSpan RetryAfter)
{
    public bool IsGranted => Verdict == Verdict.Granted;
}

/// <summary>Whether storage answered lately; while it does not, claims are not even tried until the retry interval passes.</summary>
internal sealed class StorageHealth
{
    private long _downUntilTicks;

    public bool IsAvailable(DateTimeOffset now) => now.UtcTicks >= Interlocked.Read(ref _downUntilTicks);

    /// <summary>True when this report turned a healthy state into a failing one (to log once).</summary>
    public bool ReportFailure(DateTimeOffset now, TimeSpan retryInterval) =>
        Interlocked.Exchange(ref _downUntilTicks, (now + retryInterval).UtcTicks) == 0;

    /// <summary>True when storage had been failing (to log the recovery once).</summary>
    public bool ReportSuccess() => Interlocked.Exchange(ref _downUntilTicks, 0) != 0;
}

/// <summary>The limiter's settings and shared parts, one per engine.</summary>
internal sealed record LimiterContext(CounterStore Store, LimiterClock Clock, StorageHealth Health, Func<LimitOptions> Options, ILogger Logger)
{
    public LimiterStatistics Statistics { get; } = new();

    /// <summary>One clock probe at a time per engine (see <see cref="PolicyLimiter"/>'s guard band).</summary>
    public ClockProbeGate ClockProbe { get; } = new();
}

/// <summary>Lets one storage read that only refines the window clock run at a time.</summary>
internal sealed class ClockProbeGate
{
    private int _busy;

    public bool TryEnter() => Interlocked.CompareExchange(ref _busy, 1, 0) == 0;

    public void Exit() => Volatile.Write(ref _busy, 0);
}

/// <summary>Decisions granted at once from permits leased in memory, and decisions that had to wait for a storage claim.</summary>
public sealed class LimiterStatistics
{
    private long _leaseHits;
    private long _storageWaits;

    public long LeaseHits => Interlocked.Read(ref _leaseHits);
    public long StorageWaits => Interlocked.Read(ref _storageWaits);

    internal void LeaseHit() => Interlocked.Increment(ref _leaseHits);
    internal void StorageWait() => Interlocked.Increment(ref _storageWaits);
}

/// <summary>
/// One policy of one key, on this instance: a <see cref="RateLimiter"/> over a fixed window whose permits live in Table
/// Storage. Permits are claimed from the window's counter row in blocks (one conditional write per block) and handed out
/// from memory; leased permits are already counted, so all instances together never admit more than the limit.
/// <list type="bullet">
/// <item>The block follows local demand (about <see cref="LimitOptions.LeaseDemandWindow"/> of it) and, near the limit,
/// shrinks to a fraction of what is left, so instances share the tail of a window fairly.</item>
/// <item>The next block is claimed in the background when half the current one is spent, so a hot key rarely waits.</item>
/// <item>Once storage says the window is spent, refusals are answered from memory until the window ends.</item>
/// <item><see cref="RateLimiter.AttemptAcquire"/> (synchronous) can only use permits already in memory; <see cref="RateLimiter.AcquireAsync"/>
/// may claim from storage.</item>
/// <item>In a window's guard band, its last <see cref="LimiterClock.MaxLag"/> (at most a quarter of it), nothing is handed
/// out: storage's time may already be in the next window. <see cref="AcquireAsync"/> waits for the next window,
/// <see cref="RateLimiter.AttemptAcquire"/> is refused until it.</item>
/// </list>
/// </summary>
internal sealed partial class PolicyLimiter : RateLimiter
{
    private enum ClaimOutcome
    {
        /// <summary>Storage answered; permits were granted (or the window is known to be spent).</summary>
        Answered,

        /// <summary>Every attempt lost to another instance's write.</summary>
        Contended,

        /// <summary>Storage could not be reached: the failure mode applies.</summary>
        Failed,
    }

    private const long Unknown = long.MaxValue;
    // A caller gives up (and is refused for a moment) after this many claims lost to other instances, or this many
    // rounds in all: claims that storage granted but other callers here used first do not count as lost.
    private const int MaxContendedRounds = 4;
    private const int MaxRounds = 32;
    // The guard band is at most this fraction (1/n) of the window; see InGuardBandLocked.
    private const int GuardBandCapDivisor = 4;
    private static readonly TimeSpan MinGuardWait = TimeSpan.FromMilliseconds(1);
    // Below this the band is about a round trip already: probing the clock would cost a read per window for nothing.
    private static readonly TimeSpan MinProbedBand = TimeSpan.FromMilliseconds(5);

    private readonly string _keyId;
    private readonly LimitPolicy _policy;
    private readonly LimiterContext _context;
    private readonly object _gate = new();

    // The current window, as this instance sees it.
    private DateTimeOffset _windowStart = DateTimeOffset.MinValue;
    private DateTimeOffset _windowEnd = DateTimeOffset.MinValue;
    private long _local;            // claimed from storage (so counted there), not yet handed out
    private long _admitted;         // handed out here in this window (leases and, while storage is down, the local share)
    private long _debt;             // spent here but not yet added to the storage counter
    private long _storageRemaining = Unknown;
    private CounterRow? _row;
    private Task<ClaimOutcome>? _claim;

    // Demand, carried across windows.
    private long _demandSinceClaim;
    private long _lastClaimTimestamp;
    private double _rate;
    private long _lastBlock;
    private long _lastActivityTimestamp;
    private double _meanAmount;

    private long _successfulLeases;
    private long _failedLeases;

    public PolicyLimiter(string keyId, LimitPolicy policy, LimiterContext context)
    {
        _keyId = keyId;
        _policy = policy;
        _context = context;
        _lastActivityTimestamp = context.Clock.LocalTime.GetTimestamp();
    }

    public LimitPolicy Policy => _policy;

    public override TimeSpan? IdleDuration => _context.Clock.LocalTime.GetElapsedTime(Interlocked.Read(ref _lastActivityTimestamp));

    public override RateLimiterStatistics? GetStatistics()
    {
        lock (_gate)
        {
            return new RateLimiterStatistics
            {
                CurrentAvailablePermits = _local,
                CurrentQueuedCount = 0,
                TotalSuccessfulLeases = _successfulLeases,
                TotalFailedLeases = _failedLeases,
            };
        }
    }

    protected override RateLimitLease AttemptAcquireCore(int permitCount) => ToLease(Decide(permitCount, mayClaim: false));

    protected override async ValueTask<RateLimitLease> AcquireAsyncCore(int permitCount, CancellationToken cancellationToken) =>
        ToLease(await AcquireAsync((long)permitCount, cancellationToken).ConfigureAwait(false));

    /// <summary>
    /// Takes <paramref name="amount"/> units (0: only reports the state), claiming from storage when memory has too few,
    /// and waiting for the next window when the current one is in its guard band (see <see cref="InGuardBandLocked"/>).
    /// </summary>
    public async ValueTask<PolicyDecision> AcquireAsync(long amount, CancellationToken cancellationToken)
    {
        var contended = 0;
        var round = 1;
        while (true)
        {
            Task<ClaimOutcome>? claim;
            TimeSpan untilNextWindow;
            lock (_gate)
            {
                var decision = TryDecideLocked(amount, countDemand: round == 1, mayClaim: true, out claim, out untilNextWindow);
                if (decision is { } d)
                {
                    return d;
                }
            }
            if (claim is null)
            {
                // The window's last MaxLag: storage may already be in the next one. Waiting for it is not a claim round.
                StartClockProbe(untilNextWindow);
                await Task.Delay(untilNextWindow, _context.Clock.LocalTime, cancellationToken).ConfigureAwait(false);
                continue;
            }
            var outcome = await claim.WaitAsync(cancellationToken).ConfigureAwait(false);
            lock (_gate)
            {
                if (outcome == ClaimOutcome.Failed)
                {
                    var now = _context.Clock.UtcNow;
                    RollLocked(now);
                    if (amount > 0 && InGuardBandLocked(now, out _))
                    {
                        // The fallback grants too: not in the band either (the next round waits or decides).
                        round++;
                        continue;
                    }
                    return FallBackLocked(amount, now);
                }
                if ((outcome == ClaimOutcome.Contended && ++contended >= MaxContendedRounds) || round >= MaxRounds)
                {
                    // Claims keep losing to other instances: refuse this one rather than spin (never over-admits).
                    return RefuseLocked(amount, _context.Clock.UtcNow, TimeSpan.FromMilliseconds(100));
                }
            }
            round++;
        }
    }

    /// <summary>
    /// Callers wait in the band, so it should be narrow, and only samples taken near storage's tick narrow it: a claim made
    /// right after a window opens (the usual moment for a saturated key) says how late the clock may be at most by a whole
    /// second. One read sent in the middle of the band lands on one side of the tick or the other and halves the
    /// uncertainty; band by band the bounds close in to about a round trip. Best effort, one at a time per engine, never
    /// on the caller's path.
    /// </summary>
    private void StartClockProbe(TimeSpan untilEnd)
    {
        TimeSpan band;
        DateTimeOffset windowStart;
        lock (_gate)
        {
            band = GuardBandLocked((_windowEnd - _windowStart) / GuardBandCapDivisor);
            windowStart = _windowStart;
        }
        if (band < MinProbedBand || !_context.ClockProbe.TryEnter())
        {
            return;
        }
        var delay = untilEnd - (band / 2);
        _ = ProbeClockAsync(delay > TimeSpan.Zero ? delay : TimeSpan.Zero, windowStart);
    }

    private async Task ProbeClockAsync(TimeSpan delay, DateTimeOffset windowStart)
    {
        try
        {
            await Task.Delay(delay, _context.Clock.LocalTime).ConfigureAwait(false);
            using var timeout = new CancellationTokenSource(_context.Options().StorageTimeout);
            // Any response carries a Date; this window's counter row is as cheap a read as any, and CounterStore observes it.
            await _context.Store.ReadUsedAsync(_keyId, _policy, windowStart, timeout.Token).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // Only refines the clock: a failed probe changes nothing, and claims report storage trouble.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
        finally
        {
            _context.ClockProbe.Exit();
        }
    }

    /// <summary>
    /// Whether a grant of this policy made earlier in the same call may still be used now: its window is the current one
    /// and not yet in its guard band. False when a later policy of the call waited (for a claim, or for its own next
    /// window) long enough for this one's window to close, as far as storage's time may be.
    /// </summary>
    public bool StillInWindow(PolicyDecision decision)
    {
        if (decision.Amount == 0)
        {
            return true;
        }
        lock (_gate)
        {
            var now = _context.Clock.UtcNow;
            RollLocked(now);
            return decision.WindowStart == _windowStart && !InGuardBandLocked(now, out _);
        }
    }

    /// <summary>Gives back units taken in <paramref name="windowStart"/> but not used (a token reservation larger than the usage).</summary>
    public void Return(long amount, DateTimeOffset windowStart)
    {
        if (amount <= 0)
        {
            return;
        }
        lock (_gate)
        {
            // They are counted in storage already, so they can be handed out here again (not in the window's guard band);
            // in a later window they are gone.
            if (windowStart == _windowStart)
            {
                _local += amount;
                _admitted -= amount;
            }
        }
    }

    /// <summary>Charges units used beyond what was taken (usage larger than the reservation), in the current window.</summary>
    public void Charge(long amount)
    {
        if (amount <= 0)
        {
            return;
        }
        lock (_gate)
        {
            RollLocked(_context.Clock.UtcNow);
            var fromLocal = Math.Min(_local, amount);
            _local -= fromLocal;
            _admitted += amount;
            _debt += amount - fromLocal;
            if (_debt > 0 && _claim is null)
            {
                // Tell storage now, so other instances stop admitting what was spent here.
                _claim = ClaimAsync(0, 0);
            }
        }
    }

    private PolicyDecision Decide(long amount, bool mayClaim)
    {
        lock (_gate)
        {
            return TryDecideLocked(amount, countDemand: true, mayClaim, out _, out _) ?? RefuseLocked(amount, _context.Clock.UtcNow, TimeSpan.Zero);
        }
    }

    /// <summary>
    /// Decides from memory when it can; otherwise returns null and either the claim to wait for or, with no claim, how
    /// long until the clock leaves the current window (it is in its guard band: wait, then decide again).
    /// </summary>
    private PolicyDecision? TryDecideLocked(long amount, bool countDemand, bool mayClaim, out Task<ClaimOutcome>? claim, out TimeSpan untilNextWindow)
    {
        claim = null;
        untilNextWindow = TimeSpan.Zero;
        var now = _context.Clock.UtcNow;
        RollLocked(now);
        _lastActivityTimestamp = _context.Clock.LocalTime.GetTimestamp();
        if (amount > 0 && InGuardBandLocked(now, out var untilEnd))
        {
            // Nothing of this window is handed out (leased, returned or fallback units alike), and no claim is started for it.
            if (mayClaim)
            {
                // At least a millisecond: the clock's lower bound ages a little slower than local time.
                untilNextWindow = untilEnd > MinGuardWait ? untilEnd : MinGuardWait;
                return null;
            }
            return RefuseLocked(amount, now, untilEnd);
        }
        if (countDemand)
        {
            _demandSinceClaim += amount;
            if (amount > 0)
            {
                _meanAmount = _meanAmount == 0 ? amount : (0.9 * _meanAmount) + (0.1 * amount);
            }
        }
        if (_local >= amount)
        {
            _local -= amount;
            _admitted += amount;
            _successfulLeases++;
            if (countDemand)
            {
                // First look: granted without waiting for storage.
                _context.Statistics.LeaseHit();
            }
            if (amount > 0 && _local <= _lastBlock / 2 && _claim is null && _storageRemaining > 0 && _context.Health.IsAvailable(now))
            {
                _claim = ClaimAsync(0, 0);
            }
            return Decision(Verdict.Granted, amount, now, TimeSpan.Zero);
        }
        if (_storageRemaining != Unknown && _storageRemaining + _local < amount)
        {
            // Storage said so at the last claim: refuse from memory until the window ends.
            return RefuseLocked(amount, now, _windowEnd - now);
        }
        if (!_context.Health.IsAvailable(now))
        {
            return FallBackLocked(amount, now);
        }
        if (!mayClaim)
        {
            _claim ??= ClaimAsync(amount, 0);
            return RefuseLocked(amount, now, TimeSpan.Zero);
        }
        claim = _claim ??= ClaimAsync(amount, amount - _local);
        _context.Statistics.StorageWait();
        return null;
    }

    /// <summary>
    /// True when <paramref name="now"/> is in the current window's guard band: its last <see cref="LimiterClock.MaxLag"/>
    /// (at most a quarter of the window), where storage's time may already be in the next window. The clock is never
    /// early and at most MaxLag late, so a grant made before the band falls in the real window it is counted in; one made
    /// in it might not (the late-instance half of issue 8 item 10). No band before storage has answered once, or with the
    /// local clock (<see cref="LimitOptions.UseStorageClock"/> false): there are no bounds to keep then.
    /// </summary>
    private bool InGuardBandLocked(DateTimeOffset now, out TimeSpan untilEnd)
    {
        untilEnd = _windowEnd - now;
        // Capped, so a clock that has seen one sample (bounds a second wide) cannot freeze a per-second window. Most
        // decisions are far from the end and never ask the clock for its bound.
        var cap = (_windowEnd - _windowStart) / GuardBandCapDivisor;
        return untilEnd <= cap && untilEnd <= GuardBandLocked(cap);
    }

    /// <summary>The width of the current window's guard band (see <see cref="InGuardBandLocked"/>); zero without bounds.</summary>
    private TimeSpan GuardBandLocked(TimeSpan cap)
    {
        if (!_context.Clock.UsesServerTime)
        {
            return TimeSpan.Zero;
        }
        var lag = _context.Clock.MaxLag;
        if (lag == TimeSpan.MaxValue)
        {
            return TimeSpan.Zero;
        }
        return lag < cap ? lag : cap;
    }

    private void RollLocked(DateTimeOffset now)
    {
        if (now >= _windowStart && now < _windowEnd)
        {
            return;
        }
        // Back only across the clock's first storage answer: the window taken from the local clock before it was early,
        // so it is dropped with what it held (counted in storage, never handed out).
        var start = _policy.Window.StartOf(now);
        _windowStart = start;
        _windowEnd = _policy.Window.EndOf(start);
        _local = 0;
        _admitted = 0;
        _debt = 0;
        _storageRemaining = Unknown;
        _row = null;
    }

    /// <summary>Starts a claim sized to demand; runs without the lock and applies its outcome under it. Never throws.</summary>
    private async Task<ClaimOutcome> ClaimAsync(long amount, long need)
    {
        DateTimeOffset windowStart;
        CounterRow? row;
        long want, debt;
        var options = _context.Options();
        lock (_gate)
        {
            windowStart = _windowStart;
            row = _row;
            debt = _debt;
            need = Math.Max(0, need);
            want = need == 0 && amount == 0 && _debt > 0 && _local > 0 ? 0 : BlockSizeLocked(options, Math.Max(need, amount));
        }
        try
        {
            await Task.Yield();
            using var timeout = new CancellationTokenSource(options.StorageTimeout);
            var claim = await _context.Store.ClaimAsync(_keyId, _policy, windowStart, row, want, Math.Max(need, 1), debt, timeout.Token).ConfigureAwait(false);
            if (_context.Health.ReportSuccess())
            {
                Log.StorageRecovered(_context.Logger, _keyId, _policy.Name);
            }
            lock (_gate)
            {
                if (windowStart == _windowStart && !claim.Contended)
                {
                    _local += claim.Granted;
                    _debt -= claim.DebtWritten;
                    _row = claim.Row;
                    _storageRemaining = Math.Max(0, _policy.Limit - claim.Row!.Used);
                    _lastBlock = Math.Max(claim.Granted, 1);
                }
                else if (claim.Contended)
                {
                    _row = null;
                    Log.ClaimContended(_context.Logger, _keyId, _policy.Name, CounterStore.MaxAttempts);
                }
                _claim = null;
            }
            return claim.Contended ? ClaimOutcome.Contended : ClaimOutcome.Answered;
        }
#pragma warning disable CA1031 // Storage trouble of any kind (HTTP, timeout, auth) must become the configured failure mode, never a 500.
        catch (Exception e)
#pragma warning restore CA1031
        {
            var now = _context.Clock.UtcNow;
            if (_context.Health.ReportFailure(now, options.StorageRetryInterval))
            {
                Log.StorageFailed(_context.Logger, _keyId, _policy.Name, options.StorageFailureMode, e);
            }
            lock (_gate)
            {
                // The write may have landed: our ETag would then be stale, so read before the next write.
                _row = null;
                _claim = null;
            }
            return ClaimOutcome.Failed;
        }
    }

    private long BlockSizeLocked(LimitOptions options, long need)
    {
        var nowTimestamp = _context.Clock.LocalTime.GetTimestamp();
        if (_lastClaimTimestamp != 0)
        {
            var elapsed = Math.Max(_context.Clock.LocalTime.GetElapsedTime(_lastClaimTimestamp, nowTimestamp).TotalSeconds, 0.001);
            var sample = _demandSinceClaim / elapsed;
            _rate = _rate == 0 ? sample : (0.5 * _rate) + (0.5 * sample);
        }
        _lastClaimTimestamp = nowTimestamp;
        _demandSinceClaim = 0;

        var block = (long)Math.Ceiling(_rate * options.LeaseDemandWindow.TotalSeconds);
        // MaxLeaseBlock counts calls: a token policy's block scales with the tokens a call here usually reserves.
        block = Math.Clamp(block, 1, (long)Math.Ceiling(options.MaxLeaseBlock * Math.Max(1, _meanAmount)));
        // Near the limit, take only a fraction of what is left, so the other instances get their share of the tail.
        var left = _storageRemaining == Unknown ? _policy.Limit : _storageRemaining;
        var share = (long)Math.Ceiling(left / (2.0 * options.ExpectedInstances));
        block = Math.Min(block, Math.Max(share, 1));
        return Math.Max(block, need);
    }

    /// <summary>Storage cannot be asked: the configured failure mode answers.</summary>
    private PolicyDecision FallBackLocked(long amount, DateTimeOffset now)
    {
        var options = _context.Options();
        switch (options.StorageFailureMode)
        {
            case StorageFailureMode.Open:
                _admitted += amount;
                _successfulLeases++;
                return Decision(Verdict.Granted, amount, now, TimeSpan.Zero);
            case StorageFailureMode.LocalShare:
                var share = (long)Math.Ceiling(_policy.Limit / (double)options.ExpectedInstances);
                if (_admitted + amount <= share)
                {
                    _admitted += amount;
                    // Written to the counter with the next claim once storage is back (same window only).
                    _debt += amount;
                    _successfulLeases++;
                    return Decision(Verdict.Granted, amount, now, TimeSpan.Zero);
                }
                return RefuseLocked(amount, now, _windowEnd - now);
            default:
                _failedLeases++;
                return Decision(Verdict.Unavailable, amount, now, options.StorageRetryInterval);
        }
    }

    private PolicyDecision RefuseLocked(long amount, DateTimeOffset now, TimeSpan retryAfter)
    {
        _failedLeases++;
        return Decision(Verdict.Refused, amount, now, retryAfter < TimeSpan.Zero ? TimeSpan.Zero : retryAfter);
    }

    private PolicyDecision Decision(Verdict verdict, long amount, DateTimeOffset now, TimeSpan retryAfter)
    {
        // What this instance can still vouch for: what storage had left at the last claim, plus what it holds.
        var remaining = _storageRemaining == Unknown ? Math.Max(0, _policy.Limit - _admitted) : _storageRemaining + _local;
        return new PolicyDecision(_policy, verdict, amount, _windowStart, _windowEnd, Math.Min(remaining, _policy.Limit), retryAfter);
    }

    private static PolicyLease ToLease(PolicyDecision decision) => new(decision);

    /// <summary>A single policy's lease. Permits of a fixed window are spent when granted: disposing returns nothing.</summary>
    internal sealed class PolicyLease(PolicyDecision decision) : RateLimitLease
    {
        public PolicyDecision Decision { get; } = decision;

        public override bool IsAcquired => Decision.IsGranted;

        public override IEnumerable<string> MetadataNames =>
            IsAcquired ? [] : [MetadataName.RetryAfter.Name, MetadataName.ReasonPhrase.Name];

        public override bool TryGetMetadata(string metadataName, out object? metadata)
        {
            if (!IsAcquired && metadataName == MetadataName.RetryAfter.Name)
            {
                metadata = Decision.RetryAfter;
                return true;
            }
            if (!IsAcquired && metadataName == MetadataName.ReasonPhrase.Name)
            {
                metadata = Decision.Policy.Name;
                return true;
            }
            metadata = null;
            return false;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3001, Level = LogLevel.Warning, Message = "Rate-limit storage failed for key {KeyId}, policy {Policy}; limiter falls back to {FailureMode} until it answers again.")]
        public static partial void StorageFailed(ILogger logger, string keyId, string policy, StorageFailureMode failureMode, Exception exception);

        [LoggerMessage(EventId = 3002, Level = LogLevel.Information, Message = "Rate-limit storage answers again (key {KeyId}, policy {Policy}).")]
        public static partial void StorageRecovered(ILogger logger, string keyId, string policy);

        [LoggerMessage(EventId = 3003, Level = LogLevel.Warning, Message = "Counter claim for key {KeyId}, policy {Policy} lost {Attempts} times to other instances; refusing this request.")]
        public static partial void ClaimContended(ILogger logger, string keyId, string policy, int attempts);
    }
}
