using FuncProxy.Keys;
using FuncProxy.RateLimiting;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace FuncProxy.Tests.RateLimiting;

public sealed class StorageOutageTests
{
    private const int Limit = 100;
    private const int ExpectedInstances = 4;
    private const int MaxLeaseBlock = 5;

    [Theory]
    [InlineData(StorageFailureMode.LocalShare)]
    [InlineData(StorageFailureMode.Closed)]
    [InlineData(StorageFailureMode.Open)]
    public async Task When_storage_stops_the_failure_mode_holds_and_the_limiter_recovers_when_it_returns(StorageFailureMode mode)
    {
        await using var azurite = await AzuriteProcess.StartAsync(AzuriteProcess.FreePort());
        var time = new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 0, 0, 1, TimeSpan.Zero));
        var options = new LimitOptions
        {
            StorageFailureMode = mode,
            ExpectedInstances = ExpectedInstances,
            MaxLeaseBlock = MaxLeaseBlock,
            UseStorageClock = false,
            // Generous: on a loaded machine a healthy Azurite can take seconds to answer, and a claim that times out is an
            // outage to the limiter. The outage below is a stopped process (connection refused), which fails at once.
            StorageTimeout = TimeSpan.FromSeconds(30),
            StorageRetryInterval = TimeSpan.FromSeconds(2),
        };
        var limiter = LimiterInstances.Create(azurite.ConnectionString, TestStorage.NewTablePrefix(), options, time);
        var key = LimiterInstances.Key(new KeyLimits { RequestsPerMinute = Limit });
        for (var i = 0; i < 10; i++)
        {
            Assert.True((await LimiterInstances.AcquireAsync(limiter, key)).Granted);
        }

        await azurite.StopAsync();
        var granted = 0;
        var refused = 0;
        var unavailable = 0;
        for (var i = 0; i < 60; i++)
        {
            var (ok, _, lease) = await LimiterInstances.AcquireAsync(limiter, key);
            granted += ok ? 1 : 0;
            unavailable += lease.StorageUnavailable ? 1 : 0;
            refused += !ok && !lease.StorageUnavailable ? 1 : 0;
        }

        switch (mode)
        {
            case StorageFailureMode.LocalShare:
                // This instance's share of the window is limit / expected instances, including what it admitted before.
                Assert.Equal(Limit / ExpectedInstances - 10, granted);
                Assert.Equal(0, unavailable);
                break;
            case StorageFailureMode.Closed:
                // Only permits already leased (counted in storage) are handed out: the current block and the one claimed ahead.
                Assert.InRange(granted, 0, 2 * MaxLeaseBlock);
                Assert.Equal(60 - granted, unavailable);
                break;
            case StorageFailureMode.Open:
                Assert.Equal(60, granted);
                break;
        }

        await azurite.StartAgainAsync();
        // Recovery is a condition to wait for, not a moment: a claim the restarted emulator fails (still warming up) puts the
        // limiter back in its failure mode for the retry interval, which the fake clock then skips.
        var (recovered, window, after) = (false, default(DateTimeOffset), (KeyRateLimiter.KeyLease?)null);
        var used = 0L;
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (!(recovered && used >= 1) && waited.Elapsed < TimeSpan.FromSeconds(60))
        {
            time.Advance(options.StorageRetryInterval);
            (recovered, window, after) = await LimiterInstances.AcquireAsync(limiter, key);
            used = await ReadUsedOrZeroAsync(limiter, key, window);
        }

        Assert.False(after!.StorageUnavailable);
        Assert.True(recovered, "the limiter did not admit from storage again within 60 s of its return");
        Assert.True(used >= 1, "nothing reached the counter within 60 s of storage's return");
        if (mode == StorageFailureMode.LocalShare)
        {
            // What the local share admitted during the outage beyond its leases (which storage counted already, before this
            // emulator restarted empty) was written to the counter with the first claim after it.
            Assert.True(used >= granted - (2 * MaxLeaseBlock), $"counter {used} should include most of the {granted} admitted during the outage");
        }
    }

    private static async Task<long> ReadUsedOrZeroAsync(KeyRateLimiter limiter, KeyRecord key, DateTimeOffset window)
    {
        try
        {
            return await limiter.Store.ReadUsedAsync(key.Id, limiter.PoliciesFor(key)[0], window);
        }
        catch (Azure.RequestFailedException)
        {
            return 0; // the restarted emulator has no table until the limiter's first claim creates it
        }
    }
}
