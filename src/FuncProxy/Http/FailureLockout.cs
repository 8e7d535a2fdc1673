using System.Collections.Concurrent;

namespace FuncProxy.Http;

/// <summary>
/// Counts failed authentications per client IP and locks an IP out once it reaches the limit within the window, so
/// nobody can guess keys at speed. In memory, per instance: keys carry 256 random bits, so this is about noise and load,
/// not the only line of defence; an attacker spread over N instances gets at most N times the limit.
/// </summary>
public sealed class FailureLockout
{
    private const int MaxTrackedAddresses = 100_000;

    private readonly Func<(int MaxFailures, TimeSpan Window, TimeSpan Lockout)> _settings;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, Tally> _tallies = new(StringComparer.Ordinal);

    public FailureLockout(Func<(int MaxFailures, TimeSpan Window, TimeSpan Lockout)> settings, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(time);
        _settings = settings;
        _time = time;
    }

    /// <summary>When <paramref name="address"/> is locked out: how long it still is.</summary>
    public bool IsLockedOut(string address, out TimeSpan retryAfter)
    {
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

    /// <summary>Counts a failure; true when this one started a lockout (the moment to audit it).</summary>
    public bool RecordFailure(string address)
    {
        var (maxFailures, window, lockout) = _settings();
        if (maxFailures <= 0 || lockout <= TimeSpan.Zero)
        {
            return false;
        }
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
