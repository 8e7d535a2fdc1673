using FuncProxy.Keys;
using FuncProxy.RateLimiting;
using Microsoft.Extensions.Logging.Abstractions;

namespace FuncProxy.Tests.RateLimiting;

/// <summary>Engine instances as separate Function instances would have them: own storage client, clock, leases and caches.</summary>
internal static class LimiterInstances
{
    private static readonly TimeSpan DefaultStorageTimeout = new LimitOptions().StorageTimeout;

    /// <remarks>
    /// Unless the test chose its own, the storage timeout is generous: on a loaded machine a healthy Azurite can take
    /// seconds to answer, and at the default 2 s a slow claim would count as an outage and switch the failure mode on.
    /// </remarks>
    public static KeyRateLimiter Create(string connectionString, string tablePrefix, LimitOptions options, TimeProvider? time = null)
    {
        if (options.StorageTimeout == DefaultStorageTimeout)
        {
            options.StorageTimeout = TimeSpan.FromSeconds(30);
        }
        var service = FuncProxyTables.CreateServiceClient(new StorageOptions { ConnectionString = connectionString });
        var tables = new FuncProxyTables(service, tablePrefix);
        var clock = new LimiterClock(time ?? TimeProvider.System, options.UseStorageClock);
        return new KeyRateLimiter(new CounterStore(tables, clock), clock, () => options, NullLogger.Instance);
    }

    /// <summary>
    /// An instance whose window clock is the test's own: storage's <c>Date</c>s go to a separate clock, so the test decides
    /// what <paramref name="clock"/> knows of storage's time (its offset and its <see cref="LimiterClock.MaxLag"/>).
    /// </summary>
    public static KeyRateLimiter Create(string connectionString, string tablePrefix, LimitOptions options, LimiterClock clock)
    {
        if (options.StorageTimeout == DefaultStorageTimeout)
        {
            options.StorageTimeout = TimeSpan.FromSeconds(30);
        }
        var service = FuncProxyTables.CreateServiceClient(new StorageOptions { ConnectionString = connectionString });
        var tables = new FuncProxyTables(service, tablePrefix);
        return new KeyRateLimiter(new CounterStore(tables, new LimiterClock(TimeProvider.System)), clock, () => options, NullLogger.Instance);
    }

    public static KeyRecord Key(KeyLimits limits) => new()
    {
        Id = "k" + Guid.NewGuid().ToString("N")[..12],
        Name = "test",
        CreatedAt = DateTimeOffset.UnixEpoch,
        SecretHash = [],
        AllowedUpstreams = [KeyRecord.AnyUpstream],
        Limits = limits,
    };

    /// <summary>Acquires one request; returns the decision of the key's single policy.</summary>
    public static async Task<(bool Granted, DateTimeOffset Window, KeyRateLimiter.KeyLease Lease)> AcquireAsync(KeyRateLimiter limiter, KeyRecord key, long tokens = 0)
    {
        var lease = (KeyRateLimiter.KeyLease)await limiter.AcquireAsync(new LimitRequest(key, tokens), 1);
        return (lease.IsAcquired, lease.Decisions[0].WindowStart, lease);
    }
}
