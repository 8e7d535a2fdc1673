using System.Collections.Concurrent;

namespace FuncProxy.Http;

/// <summary>
/// Counts failed authentications per client IP and locks an IP out once it reaches the limit within the window, so
/// nobody can guess keys at speed. Shared by all instances (<see cref="LockoutOptions.Shared"/>, the default): failures
/// are counted in Table Storage with the limiter's leased counters (<see cref="IpCounters"/>, fixed windows), the instance
/// where the limit is reached locks the address out and writes it to the <see cref="LockoutBoard"/>, and the others
/// learn it within a sync interval. Checking whether an address is locked out is always answered from memory, so a call
/// that fails nothing costs no storage operation. Unshared: in memory per instance, from the first failure's time.
/// </summary>
public sealed class FailureLockout
{
    private const int MaxTrackedAddresses = 100_000;

    private readonly string _scope;
    private readonly Func<(int MaxFailures, TimeSpan Window, TimeSpan Lockout)> _settings;
    private readonly TimeProvider _time;
    private readonly IpCounters? _counters;
    private readonly LockoutBoard? _board;
    private readonly ConcurrentDictionary<string, Tally> _tallies = new(StringComparer.Ordinal);

    /// <param name="scope">What the address is locked out of (<c>keys</c>, <c>admin</c>): names its counters and lockout rows.</param>
    /// <param name="settings">The limit, window and lockout duration, read at each failure.</param>
    /// <param name="time">The clock.</param>
    /// <param name="counters">Shared failure counters; null (or with <paramref name="board"/> unshared): count in memory here.</param>
    /// <param name="board">Where lockouts are shared and learned; null: this instance only.</param>
    public FailureLockout(string scope, Func<(int MaxFailures, TimeSpan Window, TimeSpan Lockout)> settings, TimeProvider time,
        IpCounters? counters = null, LockoutBoard? board = null)
    {
        ArgumentNullException.ThrowIfNull(scope);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(time);
        _scope = scope;
        _settings = settings;
        _time = time;
        _board = board;
        _counters = board is { IsShared: true } ? counters : null;
    }

    /// <summary>When <paramref name="address"/> is locked out (here, or by another instance): how long it still is. From memory.</summary>
    public bool IsLockedOut(string address, out TimeSpan retryAfter)
    {
        if (_board is not null && _board.IsLockedOut(_scope, address, out retryAfter))
        {
            return true;
        }
        retryAfter = TimeSpan.Zero;
        if (!_tallies.TryGetValue(address, out var tally))
        {
            return false;
        }
        var now = _time.GetUtcNow();
        lock (tally)
        {
            if (tally.LockedUntil is { } until && now < until)
            {
                retryAfter = until - now;
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// Counts a failure; true when this one started a lockout (the moment to audit it). Shared: one conditional write to the
    /// address's counter (a failing call waits for storage; calls that fail nothing never do).
    /// </summary>
    public async ValueTask<bool> RecordFailureAsync(string address, CancellationToken cancellationToken = default)
    {
        var (maxFailures, window, lockout) = _settings();
        if (maxFailures <= 0 || lockout <= TimeSpan.Zero || IsLockedOut(address, out _))
        {
            return false;
        }
        if (_counters is null)
        {
            return RecordLocally(address, maxFailures, window, lockout);
        }
        var tripped = await _counters.CountFailureAsync(_scope, address, maxFailures, window, cancellationToken).ConfigureAwait(false);
        if (tripped is null)
        {
            // Storage could not count it: this instance does, alone, as without sharing (and still shares a lockout it trips).
            if (!RecordLocally(address, maxFailures, window, lockout))
            {
                return false;
            }
            _board!.Tripped(_scope, address, _time.GetUtcNow() + lockout);
            return true;
        }
        if (tripped == false)
        {
            return false;
        }
        var now = _time.GetUtcNow();
        var until = now + lockout;
        if (_tallies.Count >= MaxTrackedAddresses)
        {
            Prune(now, window);
        }
        var tally = _tallies.GetOrAdd(address, static _ => new Tally());
        lock (tally)
        {
            // Concurrent failures refused by the counter together: the first one locks out (and is audited), once.
            if (tally.LockedUntil is { } current && current > now)
            {
                return false;
            }
            tally.LockedUntil = until;
            tally.WindowStart = now;
        }
        _board!.Tripped(_scope, address, until);
        return true;
    }

    private bool RecordLocally(string address, int maxFailures, TimeSpan window, TimeSpan lockout)
    {
        var now = _time.GetUtcNow();
        if (_tallies.Count >= MaxTrackedAddresses)
        {
            Prune(now, window);
        }
        var tally = _tallies.GetOrAdd(address, static _ => new Tally());
        lock (tally)
        {
            if (tally.LockedUntil is { } until && now < until)
            {
                return false;
            }
            if (now - tally.WindowStart >= window)
            {
                tally.WindowStart = now;
                tally.Failures = 0;
            }
            tally.Failures++;
            if (tally.Failures >= maxFailures)
            {
                tally.LockedUntil = now + lockout;
                tally.Failures = 0;
                tally.WindowStart = now;
                return true;
            }
            return false;
        }
    }

    private void Prune(DateTimeOffset now, TimeSpan window)
    {
        foreach (var (address, tally) in _tallies)
        {
            lock (tally)
            {
                if ((tally.LockedUntil is null || tally.LockedUntil <= now) && now - tally.WindowStart >= window)
                {
                    _tallies.TryRemove(address, out _);
                }
            }
        }
    }

    private sealed class Tally
    {
        public DateTimeOffset WindowStart;
        public int Failures;
        public DateTimeOffset? LockedUntil;
    }
}
