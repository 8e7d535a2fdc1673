using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.RateLimiting;
using FuncProxy.Keys;
using FuncProxy.RateLimiting;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace FuncProxy.Tests.RateLimiting;

public sealed class DistributedLimiterTests
{
    private const int Limit = 100;

    private static LimitOptions Options(int instances) => new() { ExpectedInstances = instances };

    [Fact]
    public async Task Three_instances_hammering_one_key_never_admit_more_than_the_limit_in_any_window()
    {
        var storage = await TestStorage.GetConnectionStringAsync();
        var prefix = TestStorage.NewTablePrefix();
        var key = LimiterInstances.Key(new KeyLimits { RequestsPerSecond = Limit });
        var instances = Enumerable.Range(0, 3).Select(_ => LimiterInstances.Create(storage, prefix, Options(3))).ToArray();
        var admitted = new ConcurrentDictionary<DateTimeOffset, int>();
        var refused = 0;
        var until = Stopwatch.StartNew();

        var tasks = instances.SelectMany(instance => Enumerable.Range(0, 6).Select(_ => Task.Run(async () =>
        {
            // Until four windows have seen admissions and the limit has refused calls (conditions, however slow the
            // machine: a loaded one may need several windows to reach the limit), bounded generously.
            while ((admitted.Count < 4 || Volatile.Read(ref refused) == 0) && until.Elapsed < TimeSpan.FromSeconds(60))
            {
                var (granted, window, _) = await LimiterInstances.AcquireAsync(instance, key);
                if (granted)
                {
                    admitted.AddOrUpdate(window, 1, (_, n) => n + 1);
                }
                else
                {
                    Interlocked.Increment(ref refused);
                    await Task.Yield();
                }
            }
        })));
        await Task.WhenAll(tasks);

        Assert.True(admitted.Count >= 3, $"expected several windows, saw {admitted.Count}");
        Assert.All(admitted, w => Assert.True(w.Value <= Limit, $"window {w.Key:O} admitted {w.Value} > {Limit}"));
        Assert.True(refused > 0);
        // Rows of older windows are cleared as new windows start; the last two are still there to compare.
        foreach (var window in admitted.Keys.Order().TakeLast(2))
        {
            var used = await instances[0].Store.ReadUsedAsync(key.Id, instances[0].PoliciesFor(key)[0], window);
            Assert.InRange(used, admitted[window], Limit);
        }
    }

    [Fact]
    public async Task Three_instances_with_demand_at_twice_the_limit_admit_at_least_95_percent_of_it()
    {
        // Demand is paced on a fake clock shared by the three instances (storage is real): every 20 ms of that clock, four
        // calls spread over the instances, 200 a second in all against a limit of 100. A busy machine slows the run down
        // but cannot thin the demand out or end a window early, so what is measured is only how the leases share a window.
        var storage = await TestStorage.GetConnectionStringAsync();
        var prefix = TestStorage.NewTablePrefix();
        var time = new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var options = new LimitOptions { ExpectedInstances = 3, UseStorageClock = false };
        var key = LimiterInstances.Key(new KeyLimits { RequestsPerSecond = Limit });
        var instances = Enumerable.Range(0, 3).Select(_ => LimiterInstances.Create(storage, prefix, options, time)).ToArray();
        var admitted = new ConcurrentDictionary<DateTimeOffset, int>();
        var step = TimeSpan.FromMilliseconds(20);
        const int CallsPerStep = 4;
        var call = 0;

        for (var elapsed = TimeSpan.Zero; elapsed < TimeSpan.FromSeconds(5); elapsed += step)
        {
            await Task.WhenAll(Enumerable.Range(0, CallsPerStep).Select(async _ =>
            {
                var instance = instances[Interlocked.Increment(ref call) % instances.Length];
                var (granted, window, _) = await LimiterInstances.AcquireAsync(instance, key);
                if (granted)
                {
                    admitted.AddOrUpdate(window, 1, (_, n) => n + 1);
                }
            }));
            time.Advance(step);
        }

        // The first window starts cold (no demand measured yet); the ones after it had demand for all of their second.
        var full = admitted.OrderBy(w => w.Key).Skip(1).ToList();
        Assert.Equal(4, full.Count);
        Assert.All(full, w => Assert.InRange(w.Value, (int)(Limit * 0.95), Limit));
    }

    [Fact]
    public async Task The_storage_clock_of_a_real_Azurite_is_never_run_ahead_of()
    {
        // Azurite runs on this machine's clock, so storage's time is the local time: the limiter's clock must never be
        // ahead of it (the old estimate, the middle of the bounds, started up to half a second early). One-permit blocks
        // make every acquisition a claim, so every one is a Date sample.
        var storage = await TestStorage.GetConnectionStringAsync();
        var limiter = LimiterInstances.Create(storage, TestStorage.NewTablePrefix(), new LimitOptions { ExpectedInstances = 1, MaxLeaseBlock = 1 });
        var key = LimiterInstances.Key(new KeyLimits { RequestsPerSecond = 1_000_000 });
        var last = DateTimeOffset.MinValue;

        for (var i = 0; i < 150; i++)
        {
            Assert.True((await LimiterInstances.AcquireAsync(limiter, key)).Granted);
            var clock = limiter.Clock.UtcNow;
            var local = DateTimeOffset.UtcNow;
            Assert.True(clock <= local + TimeSpan.FromMilliseconds(1), $"claim {i}: limiter clock {clock:O} ahead of storage's (this machine's) {local:O}");
            Assert.True(clock >= last, $"claim {i}: limiter clock went back from {last:O} to {clock:O}");
            last = clock;
        }
        Assert.True(limiter.Clock.MaxLag < TimeSpan.FromSeconds(1), $"error bound {limiter.Clock.MaxLag} after 150 samples");
    }

    [Fact]
    public async Task An_instance_whose_clock_runs_ahead_takes_its_first_permits_in_storages_window_not_its_own()
    {
        // Azurite runs on this machine's clock; the instance's runs 3 s ahead of it. Its first call can only pick a window
        // by its own clock (no storage answer yet); the claim's answer shows that clock early, and the call must then be
        // decided in storage's window, not in the one 3 s ahead (which other instances will spend in full 3 s later).
        var storage = await TestStorage.GetConnectionStringAsync();
        var ahead = new FakeTimeProvider(DateTimeOffset.UtcNow + TimeSpan.FromSeconds(3));
        var limiter = LimiterInstances.Create(storage, TestStorage.NewTablePrefix(), new LimitOptions { ExpectedInstances = 1 }, ahead);
        var key = LimiterInstances.Key(new KeyLimits { RequestsPerSecond = Limit });

        var (granted, window, _) = await LimiterInstances.AcquireAsync(limiter, key);
        var storageNow = DateTimeOffset.UtcNow;

        Assert.True(granted);
        Assert.True(window <= storageNow, $"granted in window {window:O}, which storage ({storageNow:O}) has not reached");
        Assert.True(limiter.Clock.UtcNow <= storageNow, $"clock {limiter.Clock.UtcNow:O} is ahead of storage's {storageNow:O}");
    }

    [Fact]
    public async Task Many_concurrent_token_reservations_far_below_the_limit_are_never_refused_and_share_few_claims()
    {
        // 32 callers at once on one instance, each reserving about a thousand tokens, with a limit they cannot reach:
        // callers that find the lease empty wait for a claim together; none may be refused, and blocks must grow to
        // cover whole calls (not 1,000 tokens at a time).
        var storage = await TestStorage.GetConnectionStringAsync();
        var limiter = LimiterInstances.Create(storage, TestStorage.NewTablePrefix(), new LimitOptions());
        var key = LimiterInstances.Key(new KeyLimits { TokensPerMinute = 10_000_000_000 });
        var refused = 0;
        const int Calls = 3200;

        await Parallel.ForEachAsync(Enumerable.Range(0, Calls), new ParallelOptions { MaxDegreeOfParallelism = 32 }, async (_, _) =>
        {
            var (granted, _, lease) = await LimiterInstances.AcquireAsync(limiter, key, tokens: 1050);
            if (!granted)
            {
                Interlocked.Increment(ref refused);
            }
            lease.Dispose();
        });

        Assert.Equal(0, refused);
        Assert.True(limiter.Store.Operations < Calls / 10, $"{limiter.Store.Operations} storage operations for {Calls} calls");
    }

    [Fact]
    public async Task Counter_rows_of_past_windows_are_cleared_so_a_keys_partition_does_not_grow_forever()
    {
        var storage = await TestStorage.GetConnectionStringAsync();
        var prefix = TestStorage.NewTablePrefix();
        var limiter = LimiterInstances.Create(storage, prefix, new LimitOptions());
        var key = LimiterInstances.Key(new KeyLimits { RequestsPerSecond = 1000 });
        var windows = new HashSet<DateTimeOffset>();
        var clock = Stopwatch.StartNew();
        while (windows.Count < 6 && clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            var (granted, window, _) = await LimiterInstances.AcquireAsync(limiter, key);
            Assert.True(granted);
            windows.Add(window);
            await Task.Delay(20);
        }

        // The clean-up runs off the request path: wait for it as a condition.
        var table = new Azure.Data.Tables.TableClient(storage, prefix + FuncProxyTables.Keys);
        var rows = await Eventually.PollAsync(async () =>
        {
            var found = new List<string>();
            await foreach (var e in table.QueryAsync<Azure.Data.Tables.TableEntity>(Azure.Data.Tables.TableClient.CreateQueryFilter($"PartitionKey eq {key.Id}")))
            {
                found.Add(e.RowKey);
            }
            return found;
        }, found => found.Count <= 2);

        Assert.True(windows.Count >= 5, $"only {windows.Count} windows seen");
        // The current window and the one before it stay; everything older is gone.
        Assert.InRange(rows.Count, 1, 2);
        Assert.All(rows, r => Assert.StartsWith("ctr:rps:", r, StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_warm_hot_key_decides_from_memory_with_almost_no_storage_operations()
    {
        var storage = await TestStorage.GetConnectionStringAsync();
        var options = new LimitOptions { ExpectedInstances = 1, MaxLeaseBlock = 1000 };
        var limiter = LimiterInstances.Create(storage, TestStorage.NewTablePrefix(), options);
        var key = LimiterInstances.Key(new KeyLimits { RequestsPerHour = 10_000_000 });
        for (var i = 0; i < 2_000; i++)
        {
            Assert.True((await LimiterInstances.AcquireAsync(limiter, key)).Granted);
        }
        var before = limiter.Store.Operations;

        const int N = 20_000;
        for (var i = 0; i < N; i++)
        {
            Assert.True((await LimiterInstances.AcquireAsync(limiter, key)).Granted);
        }

        var perRequest = (limiter.Store.Operations - before) / (double)N;
        Assert.True(perRequest <= 0.02, $"{perRequest:F4} storage operations per admitted request");
    }

    [Fact]
    public async Task Refusals_are_answered_from_memory_until_the_window_resets()
    {
        var storage = await TestStorage.GetConnectionStringAsync();
        var time = new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var options = new LimitOptions { ExpectedInstances = 1, UseStorageClock = false };
        var limiter = LimiterInstances.Create(storage, TestStorage.NewTablePrefix(), options, time);
        var key = LimiterInstances.Key(new KeyLimits { RequestsPerMinute = 10 });
        var granted = 0;
        for (var i = 0; i < 12; i++)
        {
            granted += (await LimiterInstances.AcquireAsync(limiter, key)).Granted ? 1 : 0;
        }
        Assert.Equal(10, granted);
        var before = limiter.Store.Operations;

        for (var i = 0; i < 1_000; i++)
        {
            var (ok, _, lease) = await LimiterInstances.AcquireAsync(limiter, key);
            Assert.False(ok);
            Assert.True(lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter));
            Assert.Equal(TimeSpan.FromMinutes(1), retryAfter);
            Assert.True(lease.TryGetMetadata(MetadataName.ReasonPhrase, out var policy));
            Assert.Equal("rpm", policy);
        }
        Assert.Equal(before, limiter.Store.Operations);

        time.Advance(TimeSpan.FromMinutes(1));
        Assert.True((await LimiterInstances.AcquireAsync(limiter, key)).Granted);
    }

    [Fact]
    public async Task The_tightest_policy_decides_and_the_others_get_their_permits_back()
    {
        var storage = await TestStorage.GetConnectionStringAsync();
        var time = new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var limiter = LimiterInstances.Create(storage, TestStorage.NewTablePrefix(), new LimitOptions { UseStorageClock = false, RequestsPerMinute = 100 }, time);
        var key = LimiterInstances.Key(new KeyLimits { RequestsPerHour = 3 });
        var granted = 0;
        for (var i = 0; i < 5; i++)
        {
            granted += (await LimiterInstances.AcquireAsync(limiter, key)).Granted ? 1 : 0;
        }

        var (ok, _, lease) = await LimiterInstances.AcquireAsync(limiter, key);

        Assert.Equal(3, granted);
        Assert.False(ok);
        Assert.Equal("rph", lease.RefusingPolicy);
        var minute = lease.Decisions.Single(d => d.Policy.Name == "rpm");
        // 3 kept by rpm, plus this attempt's own (given back right after); the 2 earlier refusals were given back.
        Assert.Equal(100 - 4, minute.Remaining);
    }

    [Fact]
    public async Task The_synchronous_AttemptAcquire_answers_from_the_lease_only()
    {
        var storage = await TestStorage.GetConnectionStringAsync();
        var limiter = LimiterInstances.Create(storage, TestStorage.NewTablePrefix(), new LimitOptions { ExpectedInstances = 1 });
        var key = LimiterInstances.Key(new KeyLimits { RequestsPerHour = 1_000 });

        using var cold = limiter.AttemptAcquire(new LimitRequest(key, 0));
        Assert.False(cold.IsAcquired);
        // The failed attempt started a claim in the background; once it lands, memory has permits.
        using var warm = await Eventually.PollAsync(() => Task.FromResult(limiter.AttemptAcquire(new LimitRequest(key, 0))), l => l.IsAcquired);
        Assert.True(warm.IsAcquired);
    }
}
