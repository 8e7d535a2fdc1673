namespace FuncProxy.RateLimiting;

/// <summary>
/// The one clock every instance's windows are cut by: storage's. Each storage response's <c>Date</c> (whole seconds) bounds
/// the offset between storage's clock and ours: the server stamped it somewhere between our send and our receipt, and
/// the true time was within the second after the stamp. Intersecting those bounds over many responses narrows the
/// offset to a few milliseconds, so instances whose own clocks differ by seconds still agree on window boundaries.
/// </summary>
public sealed class LimiterClock
{
    private readonly TimeProvider _time;
    private readonly object _gate = new();
    private long _lowTicks = long.MinValue;
    private long _highTicks = long.MaxValue;
    private long _offsetTicks;

    public LimiterClock(TimeProvider time, bool useServerTime = true)
    {
        ArgumentNullException.ThrowIfNull(time);
        _time = time;
        UsesServerTime = useServerTime;
    }

    public bool UsesServerTime { get; }

    public TimeProvider LocalTime => _time;

    /// <summary>The current offset from the local clock to storage's (zero until storage has answered once).</summary>
    public TimeSpan Offset => TimeSpan.FromTicks(Volatile.Read(ref _offsetTicks));

    public DateTimeOffset UtcNow => _time.GetUtcNow() + Offset;

    /// <summary>The local time now, for stamping a storage request before <see cref="Observe"/>.</summary>
    public DateTimeOffset LocalNow => _time.GetUtcNow();

    /// <param name="serverDate">The response's <c>Date</c> header.</param>
    /// <param name="sentLocal">Local time just before the request was sent.</param>
    /// <param name="receivedLocal">Local time just after the response arrived.</param>
    public void Observe(DateTimeOffset serverDate, DateTimeOffset sentLocal, DateTimeOffset receivedLocal)
    {
        if (!UsesServerTime)
        {
            return;
        }
        var low = (serverDate - receivedLocal).Ticks;
        var high = (serverDate + TimeSpan.FromSeconds(1) - sentLocal).Ticks;
        lock (_gate)
        {
            var newLow = Math.Max(_lowTicks, low);
            var newHigh = Math.Min(_highTicks, high);
            if (newLow > newHigh)
            {
                // The bounds contradict each other: one of the clocks moved (or drifted). Start over from this sample.
                newLow = low;
                newHigh = high;
            }
            _lowTicks = newLow;
            _highTicks = newHigh;
            Volatile.Write(ref _offsetTicks, newLow + ((newHigh - newLow) / 2));
        }
    }
}
