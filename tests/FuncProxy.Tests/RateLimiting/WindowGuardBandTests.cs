using FuncProxy.Keys;
using FuncProxy.RateLimiting;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace FuncProxy.Tests.RateLimiting;

/// <summary>
/// The guard band at a window's end (docs/rate-limiting.md, "The guarantee"): a window clock is never early and at most
/// <see cref="LimiterClock.MaxLag"/> late, so an instance hands out a window's permits only while its clock plus that lag is
/// still inside the window; every grant then falls in the real window it is counted in. Storage (its counters) is a real
/// Azurite; storage's time is a fake clock that the instances also run on, and each instance's knowledge of it (the
/// <c>Date</c> samples that set its offset bounds) is chosen by the test.
/// </summary>
public sealed class WindowGuardBandTests
{
    private const int Limit = 10;
    private static readonly DateTimeOffset Midnight = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Step = TimeSpan.FromMilliseconds(10);

    // One-permit blocks (limit / (2 x ExpectedInstances) rounds up to 1): an instance holds at most a permit or two ahead.
    private static LimitOptions Options() => new() { ExpectedInstances = Limit, UseStorageClock = true };

    [Fact]
    public async Task A_late_instance_does_not_spend_the_last_windows_permits_in_the_next_real_second()
    {
        var connection = await TestStorage.GetConnectionStringAsync();
        var prefix = TestStorage.NewTablePrefix();
        var storage = new FakeTimeProvider(Midnight);
        var onTime = new LimiterClock(storage);
        var late = new LimiterClock(storage);
        // A's samples pin the offset to within 2 ms; B's leave it between -200 and +20 ms: B's clock runs 200 ms late,
        // within its stated bound (MaxLag, 220 ms).
        Sample(storage, onTime, 0.001);
        Sample(storage, late, 0.200);
        Sample(storage, late, 0.980);
        Sample(storage, onTime, 0.999);
        var a = LimiterInstances.Create(connection, prefix, Options(), onTime);
        var b = LimiterInstances.Create(connection, prefix, Options(), late);
        var key = LimiterInstances.Key(new KeyLimits { RequestsPerSecond = Limit });
        var grants = new List<(DateTimeOffset From, DateTimeOffset To, DateTimeOffset Window)>();

        // Real second 1: B takes 3 of window 1 (its clock says 1.1 s).
        storage.SetUtcNow(Midnight.AddSeconds(1.3));
        for (var i = 0; i < 3; i++)
        {
            var (granted, window, _) = await LimiterInstances.AcquireAsync(b, key);
            Assert.True(granted);
            grants.Add((storage.GetUtcNow(), storage.GetUtcNow(), window));
        }

        // Real second 2: A, on time, spends all of window 2.
        storage.SetUtcNow(Midnight.AddSeconds(2.05));
        for (var i = 0; i < Limit; i++)
        {
            var (granted, window, _) = await LimiterInstances.AcquireAsync(a, key);
            Assert.True(granted, $"A's call {i} refused");
            grants.Add((storage.GetUtcNow(), storage.GetUtcNow(), window));
        }

        // Still real second 2, and B's clock says 1.9 s: window 1 has permits left, in storage and in B's lease.
        storage.SetUtcNow(Midnight.AddSeconds(2.1));
        var from = storage.GetUtcNow();
        var calls = Enumerable.Range(0, 4).Select(_ => LimiterInstances.AcquireAsync(b, key)).ToArray();
        await AdvanceUntilDoneAsync(storage, Task.WhenAll(calls), notPast: Midnight.AddSeconds(2.9));
        var to = storage.GetUtcNow();
        foreach (var call in calls)
        {
            var (granted, window, _) = await call;
            if (granted)
            {
                grants.Add((from, to, window));
            }
            // B decided in the window its clock reached after the band: window 2, which A had spent.
            Assert.Equal(Midnight.AddSeconds(2), window);
        }

        // Every grant is counted in the real second it was made in, so no real second admits more than the limit.
        Assert.All(grants, g => Assert.Equal(PolicyWindow.Second.StartOf(g.From), PolicyWindow.Second.StartOf(g.To)));
        Assert.All(grants, g => Assert.Equal(PolicyWindow.Second.StartOf(g.From), g.Window));
        Assert.All(grants.GroupBy(g => PolicyWindow.Second.StartOf(g.From)),
            second => Assert.True(second.Count() <= Limit, $"real second {second.Key:O} admitted {second.Count()} > {Limit}"));
    }

    [Fact]
    public async Task In_the_last_MaxLag_of_a_window_an_async_caller_waits_for_the_next_window_and_a_synchronous_one_is_refused_until_it()
    {
        var (limiter, storage) = await LimiterSampledAtAsync(0.200, 0.980); // offset within [-200, +20] ms: 200 ms late, MaxLag 220 ms
        var key = LimiterInstances.Key(new KeyLimits { RequestsPerSecond = Limit });
        storage.SetUtcNow(Midnight.AddSeconds(1.3));
        Assert.True((await LimiterInstances.AcquireAsync(limiter, key)).Granted); // warm: a lease of window 1 in memory

        // Real 2.1 s, the clock says 1.9 s: within MaxLag of window 1's end, so storage may already be in window 2.
        storage.SetUtcNow(Midnight.AddSeconds(2.1));
        using var attempt = (KeyRateLimiter.KeyLease)limiter.AttemptAcquire(new LimitRequest(key, 0));
        Assert.False(attempt.IsAcquired);
        Assert.InRange(attempt.RetryAfter, TimeSpan.FromMilliseconds(80), TimeSpan.FromMilliseconds(220)); // to window 1's end

        using var cancel = new CancellationTokenSource();
        var abandoned = limiter.AcquireAsync(new LimitRequest(key, 0), 1, cancel.Token).AsTask();
        var waiting = LimiterInstances.AcquireAsync(limiter, key);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => abandoned);

        await AdvanceUntilDoneAsync(storage, waiting, notPast: Midnight.AddSeconds(2.9));
        var (granted, window, _) = await waiting;
        Assert.True(granted);
        Assert.Equal(Midnight.AddSeconds(2), window);
        // The clock reached window 2 when storage's time was 2.2 s: the caller waited out the lag, not a claim.
        Assert.True(storage.GetUtcNow() >= Midnight.AddSeconds(2.2), $"granted at {storage.GetUtcNow():O}");
    }

    [Fact]
    public async Task A_call_whose_later_policy_waited_into_its_next_window_takes_the_earlier_policys_permit_again_in_its_current_window()
    {
        // The offset is known within [-399, +1] ms: MaxLag 400 ms. A per-second window's band is capped at a quarter of it
        // (250 ms), a minute's is not: at the clock's 59.7 s "rps" still grants and "rpm" waits for minute 1, by which time
        // the second "rps" granted in has ended.
        var (limiter, storage) = await LimiterSampledAtAsync(59.399, 59.999);
        var key = LimiterInstances.Key(new KeyLimits { RequestsPerSecond = 100, RequestsPerMinute = 1000 });
        storage.SetUtcNow(Midnight.AddSeconds(60.099));

        var call = limiter.AcquireAsync(new LimitRequest(key, 0), 1).AsTask();
        await AdvanceUntilDoneAsync(storage, call, notPast: Midnight.AddSeconds(60.9));
        using var lease = (KeyRateLimiter.KeyLease)await call;

        Assert.True(lease.IsAcquired);
        Assert.Equal(["rps", "rpm"], lease.Decisions.Select(d => d.Policy.Name));
        // Second 60 and minute 1 both start at 60 s: both permits belong to the windows the call was admitted in.
        Assert.All(lease.Decisions, d => Assert.Equal(Midnight.AddSeconds(60), d.WindowStart));
    }

    [Fact]
    public async Task Callers_waiting_in_the_band_narrow_it_although_a_saturated_key_only_claims_right_after_each_window_opens()
    {
        // A key whose permits all go in the first moments of each second: its claims, the clock's only storage samples, are
        // all sent just after storage's tick, so they bound how late the clock may be only by about a second, and the
        // band would stay at its cap (a quarter of the window) for good. Callers waiting in the band send a read into its
        // middle, which lands on one side of the tick or the other: the bound must come down. Real time, real Azurite.
        var connection = await TestStorage.GetConnectionStringAsync();
        var limiter = LimiterInstances.Create(connection, TestStorage.NewTablePrefix(), new LimitOptions { ExpectedInstances = 1 });
        var key = LimiterInstances.Key(new KeyLimits { RequestsPerSecond = 5 });
        // The first claim then goes out just after a tick too (a wait for a clock boundary, not for a condition).
        var now = DateTimeOffset.UtcNow;
        await Task.Delay(PolicyWindow.Second.EndOf(PolicyWindow.Second.StartOf(now)) - now);

        // Without the probe the bound stays near a second (824 ms measured); 500 ms tells the two apart with room for slow
        // round trips to Azurite on a busy machine (the bound cannot be narrower than a round trip).
        var narrow = TimeSpan.FromMilliseconds(500);
        var lags = new List<TimeSpan>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < Eventually.DefaultBound && (lags.Count < 2 || limiter.Clock.MaxLag >= narrow))
        {
            var calls = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => LimiterInstances.AcquireAsync(limiter, key)));
            lags.Add(limiter.Clock.MaxLag);
            if (!calls.All(c => c.Granted))
            {
                await Task.Delay(10); // pacing only: refusals are answered from memory at once
            }
        }

        Assert.True(limiter.Clock.MaxLag < narrow, $"MaxLag still {limiter.Clock.MaxLag} after {clock.Elapsed} (first {lags[0]})");
    }

    /// <summary>Feeds <paramref name="clock"/> a storage response stamped at <paramref name="second"/> (storage's time, whole-second <c>Date</c>) with no round trip.</summary>
    /// <summary>
    /// A limiter (on Azurite, a table prefix of its own) whose clock saw storage's time at <paramref name="first"/> and
    /// <paramref name="second"/> seconds after midnight, so it knows the offset within their gap; and storage's time.
    /// </summary>
    private static async Task<(KeyRateLimiter Limiter, FakeTimeProvider Storage)> LimiterSampledAtAsync(double first, double second)
    {
        var connection = await TestStorage.GetConnectionStringAsync();
        var storage = new FakeTimeProvider(Midnight);
        var clock = new LimiterClock(storage);
        Sample(storage, clock, first);
        Sample(storage, clock, second);
        return (LimiterInstances.Create(connection, TestStorage.NewTablePrefix(), Options(), clock), storage);
    }

    private static void Sample(FakeTimeProvider storage, LimiterClock clock, double second)
    {
        storage.SetUtcNow(Midnight.AddSeconds(second));
        clock.Observe(PolicyWindow.Second.StartOf(storage.GetUtcNow()), clock.LocalNow, clock.LocalNow);
    }

    /// <summary>
    /// Moves storage's time on in small steps while <paramref name="done"/> has not finished, never past
    /// <paramref name="notPast"/> (so what it decides stays in a known real second), then waits for it (it may still be
    /// waiting for a real storage claim).
    /// </summary>
    private static async Task AdvanceUntilDoneAsync(FakeTimeProvider storage, Task done, DateTimeOffset notPast)
    {
        while (!done.IsCompleted && storage.GetUtcNow() + Step <= notPast)
        {
            storage.Advance(Step);
            // Pacing only, not a wait for a condition: gives the callers' continuations and claims a moment to run.
            await Task.WhenAny(done, Task.Delay(20));
        }
        await done.WaitAsync(Eventually.DefaultBound);
    }
}
