namespace FuncProxy.Backends;

/// <summary>Why a breaker opened.</summary>
public enum BreakerReason
{
    /// <summary>The backend said how long to stay away (<c>Retry-After</c> or <c>retry-after-ms</c> on a 429 or 503).</summary>
    RetryAfter,

    /// <summary><see cref="BreakerOptions.ConsecutiveFailures"/> failures in a row, or a failed probe.</summary>
    ConsecutiveFailures,

    /// <summary>Another instance opened it (read from the <c>breakers</c> table).</summary>
    Shared,
}

/// <summary>
/// One backend's circuit breaker. Closed: calls go through and failures in a row are counted. Open until a time: no calls.
/// After that time (half-open): exactly one call goes through as a probe; its success closes the breaker, its failure
/// opens it again for <see cref="BreakerOptions.BreakDuration"/>. Times are this instance's clock; <see cref="BreakerBoard"/>
/// converts them to storage's clock to share them, so a correction of the offset estimate never shortens a local opening.
/// </summary>
internal sealed class CircuitBreaker(BreakerOptions options)
{
    private readonly object _gate = new();
    private int _failures;
    private DateTimeOffset _openUntil = DateTimeOffset.MinValue;
    private bool _opened;
    private bool _probing;

    // True while closed with no failure counted: the state of nearly every call. Read without the lock, so healthy calls
    // (look, enter, succeed) never contend on it; every change to the state under the lock sets it again.
    private volatile bool _clean = true;

    /// <summary>When the breaker opens or stays open past <paramref name="now"/>; null when calls may go (closed, or a probe is due).</summary>
    public DateTimeOffset? OpenUntil(DateTimeOffset now)
    {
        if (_clean)
        {
            return null;
        }
        lock (_gate)
        {
            if (_openUntil > now)
            {
                return _openUntil;
            }
            // Half-open with its probe under way: others wait for its verdict, for as long as a call may take.
            return _opened && _probing ? now : null;
        }
    }

    /// <summary>Claims the right to send a call. In half-open state only one caller gets it, as the probe.</summary>
    public bool TryEnter(DateTimeOffset now, out bool isProbe)
    {
        if (_clean)
        {
            isProbe = false;
            return true;
        }
        lock (_gate)
        {
            isProbe = false;
            if (_openUntil > now)
            {
                return false;
            }
            if (_opened)
            {
                if (_probing)
                {
                    return false;
                }
                _probing = isProbe = true;
            }
            return true;
        }
    }

    /// <summary>The backend answered well: the breaker closes and the failure count starts over.</summary>
    public void Succeeded()
    {
        if (_clean)
        {
            return;
        }
        lock (_gate)
        {
            _failures = 0;
            _opened = false;
            _probing = false;
            _openUntil = DateTimeOffset.MinValue;
            _clean = true;
        }
    }

    /// <summary>A call ended with no verdict on the backend (the client went away): a probe slot is given back.</summary>
    public void Released(bool wasProbe)
    {
        if (!wasProbe)
        {
            return;
        }
        lock (_gate)
        {
            _probing = false;
        }
    }

    /// <summary>Counts a failure; returns when the breaker is open until, if this failure opened it (or pushed it further out).</summary>
    public (DateTimeOffset Until, BreakerReason Reason)? Failed(DateTimeOffset now, TimeSpan? retryAfter, bool wasProbe)
    {
        lock (_gate)
        {
            _clean = false;
            _failures++;
            _probing = false;
            DateTimeOffset until;
            BreakerReason reason;
            if (retryAfter is { } wait && wait > TimeSpan.Zero)
            {
                until = now + (wait < options.MaxRetryAfter ? wait : options.MaxRetryAfter);
                reason = BreakerReason.RetryAfter;
            }
            else if (_failures >= options.ConsecutiveFailures || wasProbe)
            {
                until = now + options.BreakDuration;
                reason = BreakerReason.ConsecutiveFailures;
            }
            else
            {
                return null;
            }
            if (until <= _openUntil)
            {
                return null;
            }
            _openUntil = until;
            _opened = true;
            return (until, reason);
        }
    }

    /// <summary>Another instance opened this backend until <paramref name="until"/>: stay away as long, without writing it again.</summary>
    public bool Learn(DateTimeOffset until, DateTimeOffset now)
    {
        lock (_gate)
        {
            if (until <= now || until <= _openUntil)
            {
                return false;
            }
            _clean = false;
            _openUntil = until;
            _opened = true;
            return true;
        }
    }
}
