namespace FuncProxy.Tests.Infrastructure;

/// <summary>Counters shared through storage use fixed windows aligned to UTC; a test that counts within one waits out a nearly spent one.</summary>
public static class FixedWindows
{
    /// <summary>
    /// Waits for the next window when less than <paramref name="margin"/> is left of the current one, so the counting that
    /// follows does not straddle a window boundary (a wait for a clock boundary, not for a condition: nothing to poll).
    /// </summary>
    public static async Task AwayFromEndAsync(TimeSpan window, TimeSpan margin)
    {
        var now = DateTimeOffset.UtcNow;
        var elapsed = TimeSpan.FromTicks((now - DateTimeOffset.UnixEpoch).Ticks % window.Ticks);
        var left = window - elapsed;
        if (left < margin)
        {
            await Task.Delay(left + TimeSpan.FromMilliseconds(200));
        }
    }
}
