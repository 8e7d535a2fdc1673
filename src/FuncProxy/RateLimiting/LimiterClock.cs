namespace FuncProxy.RateLimiting;

/// <summary>
/// The one clock every instance's windows are cut by: storage's. Each storage response's <c>Date</c> (whole seconds)
/// bounds the offset between storage's clock and ours: the server stamped it somewhere between our send and our
/// receipt, and the true time was within the second after the stamp. Intersecting those bounds over many responses
/// narrows them to a few milliseconds, so instances whose own clocks differ by seconds still agree on window boundaries.
/// <para>
/// Guarantees (see docs/rate-limiting.md): once storage has answered, <see cref="UtcNow"/> never goes backwards and is
/// never ahead of storage's clock: it uses the <em>lower</em> bound of the offset, so a window opens at storage's
/// boundary or up to <see cref="MaxLag"/> after it, never before. An early clock would let an instance spend the next
/// window's permits while the current one is still being spent elsewhere (more than the limit in one real second); a
/// late one would spend the current window's permits after storage's time has left it, which is why the limiter hands out
/// nothing in a window's last <see cref="MaxLag"/> (its guard band, see <see cref="PolicyLimiter"/>). Before the first
/// answer it is the local clock, which may be ahead of storage's: the first answer can move it back, once. Local time is
/// the monotonic timestamp, so a step of the machine's wall clock moves nothing; bounds widen with age by
/// <see cref="MaxDriftRate"/> to allow for the two clocks' rates.
/// </para>
/// </summary>
public sealed class LimiterClock
{
    /// <summary>How far two clocks' rates may differ (quartz clocks: tens of ppm); a sample's bounds widen by this per second of age.</summary>
    public const double MaxDriftRate = 200e-6;

    private readonly TimeProvider _time;
    private readonly object _gate = new();
    private readonly DateTimeOffset _startUtc;
    private readonly long _startTimestamp;
    // The offset's bounds, replaced whole under _gate by Observe and read without a lock (every limited call reads the
    // clock a few times; a shared lock there was contended by every call in flight). Null until storage has answered.
    private Bounds? _bounds;
    private long _lastIssuedTicks = long.MinValue;

    /// <summary>The offset's lower and upper bounds (ticks) as of local time <paramref name="At"/>; they widen with age by <see cref="MaxDriftRate"/>.</summary>
    private sealed record Bounds(long Low, long High, long At)
    {
        private long Drift(long localTicks) => (long)(Math.Max(0, localTicks - At) * MaxDriftRate);

        public long AgedLow(long localTicks) => Low - Drift(localTicks);

        public long AgedHigh(long localTicks) => High + Drift(localTicks);
    }

    public LimiterClock(TimeProvider time, bool useServerTime = true)
    {
        ArgumentNullException.ThrowIfNull(time);
        _time = time;
        UsesServerTime = useServerTime;
        _startUtc = time.GetUtcNow();
        _startTimestamp = time.GetTimestamp();
    }

    public bool UsesServerTime { get; }

    public TimeProvider LocalTime => _time;

    /// <summary>
    /// The offset from the local clock to storage's that <see cref="UtcNow"/> applies: the lower bound of what the samples
    /// allow (zero until storage has answered once).
    /// </summary>
    public TimeSpan Offset
    {
        get
        {
            var bounds = Volatile.Read(ref _bounds);
            return TimeSpan.FromTicks(bounds is null ? 0 : bounds.AgedLow(LocalNow.UtcTicks));
        }
    }

    /// <summary>
    /// How far <see cref="UtcNow"/> may be behind storage's clock: the width of the offset's bounds (the error bound of
    /// docs/rate-limiting.md). <see cref="TimeSpan.MaxValue"/> until storage has answered once.
    /// </summary>
    public TimeSpan MaxLag
    {
        get
        {
            if (Volatile.Read(ref _bounds) is not { } bounds)
            {
                return TimeSpan.MaxValue;
            }
            var now = LocalNow.UtcTicks;
            return TimeSpan.FromTicks(bounds.AgedHigh(now) - bounds.AgedLow(now));
        }
    }

    /// <summary>
    /// Storage's time as far as it is known never to be early, and never earlier than a value returned since storage first
    /// answered. Before that, the local clock.
    /// </summary>
    public DateTimeOffset UtcNow
    {
        get
        {
            long candidate;
            if (UsesServerTime)
            {
                var local = LocalNow.UtcTicks;
                if (Volatile.Read(ref _bounds) is not { } bounds)
                {
                    // No bounds yet: the local clock (monotonic by itself), not recorded as a floor. A floor set by a
                    // local clock that is ahead of storage's would hold the clock early after the first answer.
                    return new DateTimeOffset(local, TimeSpan.Zero);
                }
                candidate = local + bounds.AgedLow(local);
            }
            else
            {
                candidate = _time.GetUtcNow().UtcTicks;
            }
            // Never backwards: a contradicting sample (storage's clock stepped back) or a wall-clock step holds the clock
            // still until it catches up, which only makes windows longer, never shorter.
            var last = Interlocked.Read(ref _lastIssuedTicks);
            while (candidate > last)
            {
                var seen = Interlocked.CompareExchange(ref _lastIssuedTicks, candidate, last);
                if (seen == last)
                {
                    return new DateTimeOffset(candidate, TimeSpan.Zero);
                }
                last = seen;
            }
            return new DateTimeOffset(last, TimeSpan.Zero);
        }
    }

    /// <summary>
    /// The local time now, for stamping a storage request before <see cref="Observe"/>: with the storage clock, the
    /// monotonic timestamp anchored at the wall clock's reading at start (immune to later steps of the wall clock).
    /// </summary>
    public DateTimeOffset LocalNow => UsesServerTime ? _startUtc + _time.GetElapsedTime(_startTimestamp) : _time.GetUtcNow();

    /// <param name="serverDate">The response's <c>Date</c> header.</param>
    /// <param name="sentLocal">Local time (<see cref="LocalNow"/>) just before the request was sent.</param>
    /// <param name="receivedLocal">Local time (<see cref="LocalNow"/>) just after the response arrived.</param>
    public void Observe(DateTimeOffset serverDate, DateTimeOffset sentLocal, DateTimeOffset receivedLocal)
    {
        if (!UsesServerTime)
        {
            return;
        }
        // Storage's time at our receipt was at least the stamp's whole second; at our send, less than a second past it.
        var low = (serverDate - receivedLocal).Ticks;
        var high = (serverDate + TimeSpan.FromSeconds(1) - sentLocal).Ticks;
        var at = receivedLocal.UtcTicks;
        lock (_gate)
        {
            if (_bounds is not { } bounds)
            {
                Volatile.Write(ref _bounds, new Bounds(low, high, at));
                return;
            }
            var newLow = Math.Max(bounds.AgedLow(at), low);
            var newHigh = Math.Min(bounds.AgedHigh(at), high);
            if (newLow > newHigh)
            {
                // The bounds contradict each other: one of the clocks stepped. Start over from this sample.
                (newLow, newHigh) = (low, high);
            }
            Volatile.Write(ref _bounds, new Bounds(newLow, newHigh, Math.Max(at, bounds.At)));
        }
    }
}
