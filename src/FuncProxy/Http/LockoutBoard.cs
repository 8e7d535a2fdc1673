using System.Collections.Concurrent;
using System.Threading.Channels;
using Azure;
using Azure.Data.Tables;
using FuncProxy.RateLimiting;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FuncProxy.Http;

/// <summary>
/// Shares per-IP lockouts between instances through the <c>lockouts</c> table (PartitionKey = scope, <c>keys</c> or
/// <c>admin</c>; RowKey = address; <c>LockedUntil</c>), as <see cref="Backends.BreakerBoard"/> shares breakers: the
/// instance where a lockout trips writes one row, off the request path; every instance reads the rows still in force with
/// one query each <see cref="LockoutOptions.SyncInterval"/> and refuses those addresses from memory as long. No call ever
/// waits for this table. Rows hold storage's time (<see cref="LimiterClock"/>), so instances with skewed clocks agree.
/// Expired rows are deleted by a sweep every ten minutes.
/// </summary>
public sealed partial class LockoutBoard : BackgroundService
{
    /// <summary>The scope of refused client keys on the proxy path.</summary>
    public const string KeysScope = "keys";

    /// <summary>The scope of failed admin authentications and admin calls.</summary>
    public const string AdminScope = "admin";

    private static readonly TimeSpan SweepEvery = TimeSpan.FromMinutes(10);
    private static readonly TimeSpan KeepExpired = TimeSpan.FromHours(1);

    private readonly FuncProxyTables _tables;
    private readonly LimiterClock _clock;
    private readonly LockoutOptions _options;
    private readonly ILogger _logger;
    private readonly string _instance = Guid.NewGuid().ToString("N")[..12];
    private readonly ConcurrentDictionary<(string Scope, string Address), DateTimeOffset> _learned = new();
    private readonly Channel<Lockout> _trips = Channel.CreateBounded<Lockout>(
        new BoundedChannelOptions(10_000) { SingleReader = true, FullMode = BoundedChannelFullMode.DropOldest });
    private long _reads;
    private long _writes;
    private DateTimeOffset _lastSweep;

    public LockoutBoard(FuncProxyTables tables, LimiterClock clock, IOptions<FuncProxyOptions> options, ILogger<LockoutBoard> logger)
    {
        ArgumentNullException.ThrowIfNull(tables);
        ArgumentNullException.ThrowIfNull(clock);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(logger);
        _tables = tables;
        _clock = clock;
        _options = options.Value.Lockouts;
        _logger = logger;
        _lastSweep = clock.LocalNow;
    }

    /// <summary>True when lockouts and failure counts are shared (<see cref="LockoutOptions.Shared"/>).</summary>
    public bool IsShared => _options.Shared;

    /// <summary>Queries made on the <c>lockouts</c> table: one per sync interval, whatever the traffic (plus a sweep every ten minutes).</summary>
    public long Reads => Interlocked.Read(ref _reads);

    /// <summary>Rows written: one per lockout that tripped on this instance.</summary>
    public long Writes => Interlocked.Read(ref _writes);

    /// <summary>A lockout tripped here until <paramref name="until"/> (local clock): tell the others (queued; written by the background loop).</summary>
    public void Tripped(string scope, string address, DateTimeOffset until)
    {
        if (_options.Shared)
        {
            _trips.Writer.TryWrite(new Lockout(scope, address, until));
        }
    }

    /// <summary>When another instance locked <paramref name="address"/> out of <paramref name="scope"/> and it still is: for how long (from memory).</summary>
    public bool IsLockedOut(string scope, string address, out TimeSpan retryAfter)
    {
        retryAfter = TimeSpan.Zero;
        // TryGetValue alone: it takes no lock, while IsEmpty takes every lock of the dictionary when it is empty (the usual
        // case), which every call contended for.
        if (!_learned.TryGetValue((scope, address), out var until))
        {
            return false;
        }
        var now = _clock.LocalNow;
        if (now >= until)
        {
            _learned.TryRemove(KeyValuePair.Create((scope, address), until));
            return false;
        }
        retryAfter = until - now;
        return true;
    }

    /// <summary>Reads the lockouts in force and applies them here. Called by the background loop and by tests.</summary>
    public async Task RefreshAsync(CancellationToken cancellationToken = default)
    {
        var table = await _tables.GetLockoutsAsync(cancellationToken).ConfigureAwait(false);
        var filter = TableClient.CreateQueryFilter($"LockedUntil gt {_clock.UtcNow.UtcDateTime}");
        Interlocked.Increment(ref _reads);
        try
        {
            await foreach (var page in table.QueryAsync<TableEntity>(filter, select: ["PartitionKey", "RowKey", "LockedUntil"], cancellationToken: cancellationToken).AsPages().ConfigureAwait(false))
            {
                foreach (var row in page.Values)
                {
                    if (row.GetDateTimeOffset("LockedUntil") is not { } until)
                    {
                        continue;
                    }
                    var local = until - _clock.Offset;
                    var key = (row.PartitionKey, row.RowKey);
                    var learned = false;
                    _learned.AddOrUpdate(key, _ => { learned = true; return local; }, (_, known) => local > known ? local : known);
                    if (learned)
                    {
                        Log.Learned(_logger, row.RowKey, row.PartitionKey, until);
                    }
                }
            }
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            _tables.Forget(FuncProxyTables.Lockouts);
            throw;
        }
        foreach (var (key, until) in _learned)
        {
            if (until <= _clock.LocalNow)
            {
                _learned.TryRemove(KeyValuePair.Create(key, until));
            }
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!_options.Shared)
        {
            return;
        }
        await Task.WhenAll(WriteLoopAsync(stoppingToken), ReadLoopAsync(stoppingToken)).ConfigureAwait(false);
    }

    private async Task ReadLoopAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(_options.SyncInterval, _clock.LocalTime);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    await RefreshAsync(stoppingToken).ConfigureAwait(false);
                    if (_clock.LocalNow - _lastSweep >= SweepEvery)
                    {
                        _lastSweep = _clock.LocalNow;
                        await SweepAsync(stoppingToken).ConfigureAwait(false);
                    }
                }
                catch (Exception e) when (FuncProxyTables.IsStorageFailure(e) && !stoppingToken.IsCancellationRequested)
                {
                    // Lockouts keep working locally; the next tick tries again.
                    Log.ReadFailed(_logger, FuncProxyTables.Describe(e));
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task WriteLoopAsync(CancellationToken stoppingToken)
    {
        try
        {
            await foreach (var trip in _trips.Reader.ReadAllAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    var table = await _tables.GetLockoutsAsync(stoppingToken).ConfigureAwait(false);
                    await table.UpsertEntityAsync(new TableEntity(trip.Scope, trip.Address)
                    {
                        ["LockedUntil"] = trip.Until + _clock.Offset,
                        ["Instance"] = _instance,
                    }, TableUpdateMode.Replace, stoppingToken).ConfigureAwait(false);
                    Interlocked.Increment(ref _writes);
                }
                catch (Exception e) when (FuncProxyTables.IsStorageFailure(e) && !stoppingToken.IsCancellationRequested)
                {
                    if (e is RequestFailedException { Status: 404 })
                    {
                        _tables.Forget(FuncProxyTables.Lockouts);
                    }
                    // Only this lockout goes unshared; this instance still enforces it.
                    Log.WriteFailed(_logger, trip.Address, trip.Scope, FuncProxyTables.Describe(e));
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task SweepAsync(CancellationToken cancellationToken)
    {
        var table = await _tables.GetLockoutsAsync(cancellationToken).ConfigureAwait(false);
        var filter = TableClient.CreateQueryFilter($"LockedUntil lt {(_clock.UtcNow - KeepExpired).UtcDateTime}");
        Interlocked.Increment(ref _reads);
        await foreach (var row in table.QueryAsync<TableEntity>(filter, select: ["PartitionKey", "RowKey"], cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            await table.DeleteEntityAsync(row.PartitionKey, row.RowKey, ETag.All, cancellationToken).ConfigureAwait(false);
        }
    }

    private readonly record struct Lockout(string Scope, string Address, DateTimeOffset Until);

    private static partial class Log
    {
        [LoggerMessage(EventId = 4211, Level = LogLevel.Information, Message = "{ClientIp} was locked out of {Scope} by another instance until {LockedUntil}.")]
        public static partial void Learned(ILogger logger, string clientIp, string scope, DateTimeOffset lockedUntil);

        [LoggerMessage(EventId = 4212, Level = LogLevel.Warning, Message = "Reading shared lockouts failed ({Reason}); lockouts stay local until the next try.")]
        public static partial void ReadFailed(ILogger logger, string reason);

        [LoggerMessage(EventId = 4213, Level = LogLevel.Warning, Message = "Sharing the lockout of {ClientIp} from {Scope} failed ({Reason}).")]
        public static partial void WriteFailed(ILogger logger, string clientIp, string scope, string reason);
    }
}
