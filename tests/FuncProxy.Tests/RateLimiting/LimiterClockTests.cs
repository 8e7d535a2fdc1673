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

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void The_clock_is_never_ahead_of_storage_never_goes_back_and_lags_by_at_most_its_stated_bound(int seed)
    {
        // Storage's clock is 2.3 s ahead of ours; round trips of 1-30 ms, split unevenly between the two legs, at random
        // phases of storage's second. The old estimate (the middle of the bounds) ran up to half a second early.
        var time = new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var storageAhead = TimeSpan.FromSeconds(2.3);
        var clock = new LimiterClock(time);
        var random = new Random(seed);
        var last = DateTimeOffset.MinValue;
        var lags = new List<TimeSpan>();

        for (var i = 0; i < 400; i++)
        {
            var sent = clock.LocalNow;
            time.Advance(TimeSpan.FromMilliseconds(random.Next(0, 15)));
            var stamped = time.GetUtcNow() + storageAhead;
            var date = new DateTimeOffset(stamped.UtcTicks - (stamped.UtcTicks % TimeSpan.TicksPerSecond), TimeSpan.Zero);
            time.Advance(TimeSpan.FromMilliseconds(random.Next(1, 15)));
            clock.Observe(date, sent, clock.LocalNow);

            var now = clock.UtcNow;
            var storageNow = time.GetUtcNow() + storageAhead;
            Assert.True(now <= storageNow, $"sample {i}: clock {now:O} is ahead of storage {storageNow:O}");
            Assert.True(now >= last, $"sample {i}: clock went back from {last:O} to {now:O}");
            Assert.True(storageNow - now <= clock.MaxLag, $"sample {i}: lag {storageNow - now} beyond the stated bound {clock.MaxLag}");
            lags.Add(storageNow - now);
            last = now;
            time.Advance(TimeSpan.FromMilliseconds(random.Next(1, 200)));
        }

        // Converged: late by a few milliseconds, not by the second the first sample allowed.
        Assert.True(lags[^1] < TimeSpan.FromMilliseconds(50), $"still {lags[^1]} late after 400 samples");
        Assert.True(clock.MaxLag < TimeSpan.FromMilliseconds(80), $"bound {clock.MaxLag} after 400 samples");
    }

    [Fact]
    public void A_reading_taken_before_storage_first_answered_does_not_hold_a_clock_that_runs_ahead_early_afterwards()
    {
        // The local clock is 3 s ahead of storage's. Before any answer the clock can only be the local one; once storage has
        // answered, it must not stay at that early reading until storage's time catches up (it used to, for 3 s).
        var time = new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 0, 0, 3, 500, TimeSpan.Zero));
        var storageAhead = TimeSpan.FromSeconds(-3);
        var clock = new LimiterClock(time);
        Assert.Equal(time.GetUtcNow(), clock.UtcNow);

        var sent = clock.LocalNow;
        time.Advance(TimeSpan.FromMilliseconds(2));
        var date = PolicyWindow.Second.StartOf(time.GetUtcNow() + storageAhead);
        time.Advance(TimeSpan.FromMilliseconds(2));
        clock.Observe(date, sent, clock.LocalNow);

        var answered = clock.UtcNow;
        Assert.True(answered <= time.GetUtcNow() + storageAhead, $"clock {answered:O} ahead of storage {time.GetUtcNow() + storageAhead:O}");
        time.Advance(TimeSpan.FromMilliseconds(300));
        Assert.True(clock.UtcNow > answered, "the clock stands still after the first answer");
        Assert.True(clock.UtcNow <= time.GetUtcNow() + storageAhead);
    }

    [Fact]
    public void When_storage_steps_back_the_clock_holds_still_instead_of_going_back()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 0, 0, 0, 500, TimeSpan.Zero));
        var clock = new LimiterClock(time);
        var date = new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);
        clock.Observe(date, clock.LocalNow, clock.LocalNow);
        var before = clock.UtcNow;

        time.Advance(TimeSpan.FromSeconds(1));
        clock.Observe(date - TimeSpan.FromSeconds(10), clock.LocalNow, clock.LocalNow); // storage's clock stepped 10 s back
        var held = clock.UtcNow;
        time.Advance(TimeSpan.FromSeconds(5));
        var stillHeld = clock.UtcNow;

        Assert.True(held >= before);
        Assert.Equal(held, stillHeld);
        Assert.True(clock.Offset < TimeSpan.FromSeconds(-9), $"offset {clock.Offset} should follow storage's step");
    }

    [Fact]
    public void Before_storage_answers_and_with_the_storage_clock_off_the_clock_is_the_local_one_and_still_never_goes_back()
    {
        var time = new SteppedWallClock { Now = new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero) };
        var fresh = new LimiterClock(time);
        var local = new LimiterClock(time, useServerTime: false);

        Assert.Equal(time.Now, fresh.UtcNow);
        Assert.Equal(TimeSpan.MaxValue, fresh.MaxLag);
        Assert.Equal(time.Now, local.UtcNow);
        var seen = local.UtcNow;
        time.Now -= TimeSpan.FromSeconds(3); // the wall clock steps back (FakeTimeProvider cannot)
        Assert.Equal(seen, local.UtcNow);
        Assert.Equal(seen, fresh.UtcNow); // the storage clock's local base is the monotonic timestamp, which did not move
    }

    /// <summary>A wall clock that can step back, with a timestamp that stands still.</summary>
    private sealed class SteppedWallClock : TimeProvider
    {
        public DateTimeOffset Now { get; set; }

        public override DateTimeOffset GetUtcNow() => Now;

        public override long GetTimestamp() => 0;
    }
}
