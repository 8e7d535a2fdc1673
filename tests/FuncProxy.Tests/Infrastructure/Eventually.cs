using System.Diagnostics;

namespace FuncProxy.Tests.Infrastructure;

/// <summary>
/// Waits for a condition instead of a moment: tests run on busy machines where a fixed sleep is sometimes too short.
/// The bound is generous (a failure means the condition never came, not that it came late) and the probe is repeated
/// at a short interval, so a quick pass stays quick.
/// </summary>
public static class Eventually
{
    public static readonly TimeSpan DefaultBound = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan FirstInterval = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan MaxInterval = TimeSpan.FromSeconds(1);

    /// <summary>Probes until <paramref name="done"/> holds or <paramref name="bound"/> passes; returns the last result (disposing the others).</summary>
    public static async Task<T> PollAsync<T>(Func<Task<T>> probe, Func<T, bool> done, TimeSpan? bound = null)
    {
        ArgumentNullException.ThrowIfNull(probe);
        ArgumentNullException.ThrowIfNull(done);
        var clock = Stopwatch.StartNew();
        var interval = FirstInterval;
        while (true)
        {
            var result = await probe();
            if (done(result) || clock.Elapsed >= (bound ?? DefaultBound))
            {
                return result;
            }
            (result as IDisposable)?.Dispose();
            await Task.Delay(interval);
            interval = TimeSpan.FromTicks(Math.Min(interval.Ticks * 2, MaxInterval.Ticks));
        }
    }

    /// <summary>True once <paramref name="condition"/> holds; false when <paramref name="bound"/> passed first.</summary>
    public static async Task<bool> TrueAsync(Func<Task<bool>> condition, TimeSpan? bound = null) =>
        await PollAsync(condition, ok => ok, bound);
}
