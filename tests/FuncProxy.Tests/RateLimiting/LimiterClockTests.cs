using FuncProxy.RateLimiting;
using Microsoft.Extensions.Time.Testing;

namespace FuncProxy.Tests.RateLimiting;

public sealed class LimiterClockTests
{
    [Fact]
    public void Instances_whose_clocks_differ_by_seconds_agree_on_windows_after_seeing_storage_dates()
    {
        var server = new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var aheadBy = TimeSpan.FromSeconds(3.4);
        var behindBy = TimeSpan.FromSeconds(-2.7);
        var a = new FakeTimeProvider(server + aheadBy);
        var b = new FakeTimeProvider(server + behindBy);
        var clockA = new LimiterClock(a);
        var clockB = new LimiterClock(b);
        var random = new Random(7);
        var roundTrip = TimeSpan.FromMilliseconds(4);

        for (var i = 0; i < 60; i++)
        {
            foreach (var (time, clock, skew) in new[] { (a, clockA, aheadBy), (b, clockB, behindBy) })
            {
                var sent = time.GetUtcNow();
                time.Advance(roundTrip / 2);
                var serverNow = time.GetUtcNow() - skew;
                var date = new DateTimeOffset(serverNow.UtcTicks - (serverNow.UtcTicks % TimeSpan.TicksPerSecond), TimeSpan.Zero);
                time.Advance(roundTrip / 2);
                clock.Observe(date, sent, time.GetUtcNow());
            }
            var step = TimeSpan.FromMilliseconds(random.Next(50, 400));
            a.Advance(step);
            b.Advance(step);
        }

        Assert.InRange((clockA.UtcNow - clockB.UtcNow).Duration(), TimeSpan.Zero, TimeSpan.FromMilliseconds(20));
        Assert.InRange((clockA.Offset + aheadBy).Duration(), TimeSpan.Zero, TimeSpan.FromMilliseconds(20));
        // Local clocks alone would put these two in different 1-second windows.
        Assert.NotEqual(PolicyWindow.Second.StartOf(a.GetUtcNow()), PolicyWindow.Second.StartOf(b.GetUtcNow()));
    }

    [Fact]
    public void A_clock_that_jumps_is_followed_rather_than_trusted_forever()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var clock = new LimiterClock(time);
        clock.Observe(time.GetUtcNow(), time.GetUtcNow(), time.GetUtcNow());
        time.Advance(TimeSpan.FromSeconds(30)); // the local clock steps forward; storage's did not
        var now = time.GetUtcNow();
        clock.Observe(now - TimeSpan.FromSeconds(30), now, now);

        Assert.InRange((clock.Offset + TimeSpan.FromSeconds(30)).Duration(), TimeSpan.Zero, TimeSpan.FromSeconds(1));
    }
}
