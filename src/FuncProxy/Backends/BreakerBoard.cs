using System.Threading.Channels;
using Azure;
using Azure.Data.Tables;
using FuncProxy.Proxying;
using FuncProxy.RateLimiting;
using FuncProxy.Telemetry;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FuncProxy.Backends;

/// <summary>
/// Shares the opened circuit breakers of backend pools (upstreams configured with <c>Backends</c>) between instances through the <c>breakers</c> table (PartitionKey = upstream,
/// RowKey = backend, <c>OpenUntil</c>). An instance whose breaker opens writes one small row, off the request path; every
/// instance reads the rows still open with one query each <see cref="ProxyOptions.BreakerSyncInterval"/> and stays away from
/// those backends as long. No call ever waits for this table, and once warm a call costs it no storage operation.
/// Rows hold storage's time (the offset <see cref="LimiterClock"/> keeps from the limiter's storage calls; zero while no
/// limit has been checked), so instances with skewed clocks still agree; each instance converts to and from its own clock,
/// which its breakers run on.
/// </summary>
public sealed partial class BreakerBoard : BackgroundService
{
    private readonly FuncProxyTables _tables;
    private readonly UpstreamCatalog _catalog;
    private readonly LimiterClock _clock;
    private readonly ProxyOptions _options;
    private readonly FuncProxyMetrics _metrics;
    private readonly ILogger _logger;
    private readonly string _instance = Guid.NewGuid().ToString("N")[..12];
    private readonly bool _sharing;
    private readonly Channel<Opening> _openings = Channel.CreateBounded<Opening>(
        new BoundedChannelOptions(1000) { SingleReader = true, FullMode = BoundedChannelFullMode.DropOldest });
    private long _reads;
    private long _writes;

    public BreakerBoard(FuncProxyTables tables, UpstreamCatalog catalog, LimiterClock clock, IOptions<FuncProxyOptions> options, FuncProxyMetrics metrics, ILogger<BreakerBoard> logger)
    {
        ArgumentNullException.ThrowIfNull(tables);
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(clock);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(metrics);
        ArgumentNullException.ThrowIfNull(logger);
        _tables = tables;
        _catalog = catalog;
        _clock = clock;
        _options = options.Value.Proxy;
        // An upstream with a plain BaseUrl keeps its breaker to itself: nothing to read or write without a pool.
        _sharing = _options.ShareBreakers && catalog.Routes.Any(r => r.IsPool);
        _metrics = metrics;
        _logger = logger;
    }

    /// <summary>Queries made on the <c>breakers</c> table: one per sync interval, whatever the traffic.</summary>
    public long Reads => Interlocked.Read(ref _reads);

    /// <summary>Rows written: one per breaker opening on this instance.</summary>
    public long Writes => Interlocked.Read(ref _writes);

    /// <summary>A breaker opened on this instance until <paramref name="until"/> (local clock): tell the others (queued; written by the background loop).</summary>
    internal void Opened(Backend backend, DateTimeOffset until, BreakerReason reason)
    {
        if (_sharing && _catalog.Find(backend.Upstream) is { IsPool: true })
        {
            _openings.Writer.TryWrite(new Opening(backend.Upstream, backend.Name, until, reason));
        }
    }

    /// <summary>Reads the breakers other instances opened and applies them here. Called by the background loop and by tests.</summary>
    public async Task RefreshAsync(CancellationToken cancellationToken = default)
    {
        var table = await _tables.GetBreakersAsync(cancellationToken).ConfigureAwait(false);
        var filter = TableClient.CreateQueryFilter($"OpenUntil gt {_clock.UtcNow.UtcDateTime}");
        Interlocked.Increment(ref _reads);
        try
        {
            await foreach (var page in table.QueryAsync<TableEntity>(filter, cancellationToken: cancellationToken).AsPages().ConfigureAwait(false))
            {
                foreach (var row in page.Values)
                {
                    if (row.GetDateTimeOffset("OpenUntil") is { } until
                        && _catalog.Find(row.PartitionKey)?.Pool.Find(row.RowKey) is { } backend
                        && backend.Breaker.Learn(until - _clock.Offset, _clock.LocalNow))
                    {
                        _metrics.BreakerOpened(backend.Upstream, backend.Name, BreakerReason.Shared);
                        Log.Learned(_logger, backend.Upstream, backend.Name, until);
                    }
                }
            }
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            _tables.Forget(FuncProxyTables.Breakers);
            throw;
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!_sharing)
        {
            return;
        }
        await Task.WhenAll(WriteLoopAsync(stoppingToken), ReadLoopAsync(stoppingToken)).ConfigureAwait(false);
    }

    private async Task ReadLoopAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(_options.BreakerSyncInterval, _clock.LocalTime);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    await RefreshAsync(stoppingToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is RequestFailedException or HttpRequestException or IOException or TimeoutException or OperationCanceledException
                    && !stoppingToken.IsCancellationRequested)
                {
                    // Breakers keep working locally; the next tick tries again.
                    Log.ReadFailed(_logger, e.GetType().Name);
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
            await foreach (var opening in _openings.Reader.ReadAllAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    var table = await _tables.GetBreakersAsync(stoppingToken).ConfigureAwait(false);
                    await table.UpsertEntityAsync(new TableEntity(opening.Upstream, opening.Backend)
                    {
                        ["OpenUntil"] = opening.Until + _clock.Offset,
                        ["Reason"] = opening.Reason.ToString(),
                        ["Instance"] = _instance,
                    }, TableUpdateMode.Replace, stoppingToken).ConfigureAwait(false);
                    Interlocked.Increment(ref _writes);
                }
                catch (Exception e) when (e is RequestFailedException or HttpRequestException or IOException or TimeoutException)
                {
                    if (e is RequestFailedException { Status: 404 })
                    {
                        _tables.Forget(FuncProxyTables.Breakers);
                    }
                    // Only this opening goes unshared; this instance still honours it.
                    Log.WriteFailed(_logger, opening.Upstream, opening.Backend, e.GetType().Name);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private readonly record struct Opening(string Upstream, string Backend, DateTimeOffset Until, BreakerReason Reason);

    private static partial class Log
    {
        [LoggerMessage(EventId = 2111, Level = LogLevel.Information, Message = "Backend {Upstream}/{Backend} was opened by another instance until {OpenUntil}.")]
        public static partial void Learned(ILogger logger, string upstream, string backend, DateTimeOffset openUntil);

        [LoggerMessage(EventId = 2112, Level = LogLevel.Warning, Message = "Reading shared breakers failed ({ErrorType}); breakers stay local until the next try.")]
        public static partial void ReadFailed(ILogger logger, string errorType);

        [LoggerMessage(EventId = 2113, Level = LogLevel.Warning, Message = "Sharing the opened breaker of {Upstream}/{Backend} failed ({ErrorType}).")]
        public static partial void WriteFailed(ILogger logger, string upstream, string backend, string errorType);
    }
}
