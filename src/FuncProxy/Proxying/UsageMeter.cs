using System.Globalization;
using System.Threading.Channels;
using Azure;
using Azure.Data.Tables;
using FuncProxy.Keys;
using FuncProxy.RateLimiting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FuncProxy.Proxying;

/// <summary>One call's usage, as recorded off the request path: the model sent (null: none named), its cost in micro-dollars, and the backend that served it.</summary>
internal readonly record struct UsageRecord(string KeyId, string Upstream, DateTimeOffset At, TokenUsage Usage, string? Model = null, long CostMicroUsd = 0,
    string Backend = Backends.Backend.DefaultName);

/// <summary>
/// A key's metered use in one hour on one upstream, model ("" when the calls named none) and backend, summed over the
/// instances that served it. <see cref="CostMicroUsd"/>: what the calls cost at the configured prices (a call without
/// reported usage counts what its budget reservation charged).
/// </summary>
public sealed record UsageRow(DateTimeOffset Hour, string Upstream, long Requests, long InputTokens, long OutputTokens, long RequestsWithoutUsage,
    string Model = "", long CachedInputTokens = 0, long CostMicroUsd = 0)
{
    /// <summary>The backend of the upstream's pool that served the calls (<c>default</c> for an upstream with one <c>BaseUrl</c>).</summary>
    public string Backend { get; init; } = Backends.Backend.DefaultName;
}

/// <summary>Reads a key's metered use; the management API and the CLI report it, <see cref="UsageMeter"/> writes and reads it.</summary>
public interface IUsageReader
{
    /// <summary>Rows for hours that start in [<paramref name="from"/>, <paramref name="to"/>), oldest first.</summary>
    Task<IReadOnlyList<UsageRow>> ReadAsync(string keyId, DateTimeOffset from, DateTimeOffset to, CancellationToken cancellationToken = default);
}

/// <summary>
/// Step 7 of the request path: reads each call's token usage from the response as it streams, settles the token and
/// money reservations with it (once per client call, however many backends were tried), and meters it into the
/// <c>usage</c> table per key, hour, upstream, model and backend. The request path only
/// writes to a channel; a background loop adds up and flushes every <see cref="LimitOptions.UsageFlushInterval"/> and
/// on shutdown. Each instance writes its own rows (PartitionKey = key id, RowKey =
/// <c>{yyyyMMddHH}|{upstream}|{model, key-safe}|{backend}|{instance}</c>; rows written before models or backends were
/// metered lack those parts and read as model "" and backend <c>default</c>)
/// with cumulative totals, so writes never conflict and need no read; a key's usage is the sum over instances
/// (<see cref="ReadAsync"/>). Rows of one key go in table transactions of up to 100.
/// </summary>
public sealed partial class UsageMeter : BackgroundService, IUsageReader
{
    private const int MaxPending = 100_000;
    private static readonly TimeSpan AddUpInterval = TimeSpan.FromMilliseconds(100);
    private const string HourFormat = "yyyyMMddHH";

    private readonly FuncProxyTables _tables;
    private readonly IOptionsMonitor<FuncProxyOptions> _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Channel<UsageRecord> _channel = Channel.CreateBounded<UsageRecord>(
        new BoundedChannelOptions(MaxPending) { SingleReader = true, FullMode = BoundedChannelFullMode.DropWrite });
    private readonly Dictionary<(string KeyId, string Hour, string Upstream, string Model, string Backend), Row> _rows = [];
    private readonly SemaphoreSlim _flushing = new(1, 1);
    private readonly string _instance = Guid.NewGuid().ToString("N")[..12];
    private long _dropped;
    private DateTimeOffset _lastHour;
    private string _lastHourText = "";

    public UsageMeter(FuncProxyTables tables, IOptionsMonitor<FuncProxyOptions> options, TimeProvider time, ILogger<UsageMeter> logger)
    {
        ArgumentNullException.ThrowIfNull(tables);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        _tables = tables;
        _options = options;
        _time = time;
        _logger = logger;
    }

    /// <summary>Starts metering a call: from here on the response body is read for usage as it streams.</summary>
    public Metering Begin(HttpContext context, KeyRecord key, string upstream, Admission admission) =>
        Begin(context, key, upstream, admission, null, null, stripUsageChunk: false, null, null);

    /// <summary>
    /// Starts metering a call to <paramref name="model"/> (the model sent; null: none named) priced at <paramref name="price"/>
    /// (null: unpriced). With <paramref name="stripUsageChunk"/> the final usage-only chunk of a chat completions stream is
    /// kept from the client (it did not ask for it; the gateway did).
    /// </summary>
    internal Metering Begin(HttpContext context, KeyRecord key, string upstream, Admission admission, string? model, Spend.ModelPrice? price, bool stripUsageChunk,
        Telemetry.GenAiCall? genAi, Telemetry.FuncProxyMetrics? metrics)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(admission);
        var reader = new UsageReadingStream(context.Response.Body, context.Response, stripUsageChunk);
        context.Response.Body = reader;
        return new Metering(this, context, key.Id, upstream, admission, reader, _time.GetUtcNow(), model, price)
        {
            GenAi = genAi,
            Metrics = metrics,
        };
    }

    /// <summary>Records written by calls and not yet added up (tests).</summary>
    internal int Pending => _channel.Reader.Count;

    internal void Record(UsageRecord record)
    {
        if (!_channel.Writer.TryWrite(record) && Interlocked.Increment(ref _dropped) % 1000 == 1)
        {
            Log.Dropped(_logger, Interlocked.Read(ref _dropped));
        }
    }

    /// <summary>Writes what was recorded so far. Called by the background loop, on shutdown, and by tests.</summary>
    public async Task FlushAsync(CancellationToken cancellationToken = default)
    {
        await _flushing.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            DrainLocked();
            if (!_rows.Values.Any(r => r.Dirty))
            {
                // Nothing to write: storage is not touched (a host stopped before its first call needs no storage).
                return;
            }
            var table = await _tables.GetUsageAsync(cancellationToken).ConfigureAwait(false);
            foreach (var partition in _rows.Where(r => r.Value.Dirty).GroupBy(r => r.Key.KeyId))
            {
                foreach (var batch in partition.Chunk(100))
                {
                    var actions = batch.Select(r => new TableTransactionAction(TableTransactionActionType.UpsertReplace, new TableEntity(r.Key.KeyId,
                        $"{r.Key.Hour}|{r.Key.Upstream}|{Keys.ModelPattern.KeySafe(r.Key.Model)}|{r.Key.Backend}|{_instance}")
                    {
                        ["Upstream"] = r.Key.Upstream,
                        ["Model"] = r.Key.Model,
                        ["Backend"] = r.Key.Backend,
                        ["CachedInputTokens"] = r.Value.CachedInputTokens,
                        ["CostMicroUsd"] = r.Value.CostMicroUsd,
                        ["Hour"] = r.Value.Hour,
                        ["Requests"] = r.Value.Requests,
                        ["InputTokens"] = r.Value.InputTokens,
                        ["OutputTokens"] = r.Value.OutputTokens,
                        ["RequestsWithoutUsage"] = r.Value.WithoutUsage,
                    })).ToList();
                    try
                    {
                        await table.SubmitTransactionAsync(actions, cancellationToken).ConfigureAwait(false);
                    }
                    catch (RequestFailedException e) when (e.Status == 404)
                    {
                        _tables.Forget(FuncProxyTables.Usage);
                        throw;
                    }
                    foreach (var r in batch)
                    {
                        r.Value.Dirty = false;
                    }
                }
            }
            // Past hours are final once written; keep the current and the previous one (late settlements).
            var keepFrom = _time.GetUtcNow().AddHours(-2);
            foreach (var old in _rows.Where(r => !r.Value.Dirty && r.Value.Hour < keepFrom).Select(r => r.Key).ToList())
            {
                _rows.Remove(old);
            }
        }
        finally
        {
            _flushing.Release();
        }
    }

    /// <summary>
    /// A key's usage for the hours that start in [<paramref name="from"/>, <paramref name="to"/>), per hour, upstream and backend,
    /// summed over the instances that served it, oldest first. One partition query on the hour prefix of the row keys.
    /// </summary>
    public async Task<IReadOnlyList<UsageRow>> ReadAsync(string keyId, DateTimeOffset from, DateTimeOffset to, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(keyId);
        var table = await _tables.GetUsageAsync(cancellationToken).ConfigureAwait(false);
        // Hour stamps sort as text: 'from' rounds down to its hour, and an hour that has begun before 'to' counts.
        var end = to.UtcDateTime;
        var endHour = new DateTime(end.Ticks - (end.Ticks % TimeSpan.TicksPerHour), DateTimeKind.Utc);
        if (endHour < end)
        {
            endHour = endHour.AddHours(1);
        }
        var lower = from.UtcDateTime.ToString(HourFormat, CultureInfo.InvariantCulture);
        var upper = endHour.ToString(HourFormat, CultureInfo.InvariantCulture);
        var filter = TableClient.CreateQueryFilter($"PartitionKey eq {keyId} and RowKey ge {lower} and RowKey lt {upper}");
        var sums = new SortedDictionary<(DateTimeOffset Hour, string Upstream, string Model, string Backend), UsageRow>();
        await foreach (var e in table.QueryAsync<TableEntity>(filter, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            if (e.GetDateTimeOffset("Hour") is not { } hour || e.GetString("Upstream") is not { } upstream)
            {
                continue;
            }
            var model = e.GetString("Model") ?? "";
            // Rows written before backend pools have no Backend: their upstream had its one default backend.
            var backend = e.GetString("Backend") ?? Backends.Backend.DefaultName;
            var at = (hour.ToUniversalTime(), upstream, model, backend);
            var s = sums.GetValueOrDefault(at) ?? new UsageRow(at.Item1, upstream, 0, 0, 0, 0, model) { Backend = backend };
            sums[at] = s with
            {
                Requests = s.Requests + (e.GetInt64("Requests") ?? 0),
                InputTokens = s.InputTokens + (e.GetInt64("InputTokens") ?? 0),
                OutputTokens = s.OutputTokens + (e.GetInt64("OutputTokens") ?? 0),
                RequestsWithoutUsage = s.RequestsWithoutUsage + (e.GetInt64("RequestsWithoutUsage") ?? 0),
                CachedInputTokens = s.CachedInputTokens + (e.GetInt64("CachedInputTokens") ?? 0),
                CostMicroUsd = s.CostMicroUsd + (e.GetInt64("CostMicroUsd") ?? 0),
            };
        }
        return [.. sums.Values];
    }

    /// <summary>Adds up what the channel holds into the rows to write (under <see cref="_flushing"/>).</summary>
    private void DrainLocked()
    {
        while (_channel.Reader.TryRead(out var r))
        {
            var hour = new DateTimeOffset(r.At.Year, r.At.Month, r.At.Day, r.At.Hour, 0, 0, TimeSpan.Zero);
            if (hour != _lastHour)
            {
                (_lastHour, _lastHourText) = (hour, hour.ToString(HourFormat, CultureInfo.InvariantCulture));
            }
            var id = (r.KeyId, _lastHourText, r.Upstream, r.Model ?? "", r.Backend);
            if (!_rows.TryGetValue(id, out var row))
            {
                _rows[id] = row = new Row(hour);
            }
            row.Requests++;
            row.InputTokens += r.Usage.InputTokens ?? 0;
            row.OutputTokens += r.Usage.OutputTokens ?? 0;
            row.CachedInputTokens += r.Usage.CachedInputTokens ?? 0;
            row.CostMicroUsd += r.CostMicroUsd;
            row.WithoutUsage += r.Usage.IsKnown ? 0 : 1;
            row.Dirty = true;
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var adding = AddUpAsync(stoppingToken);
        using var timer = new PeriodicTimer(_options.CurrentValue.Limits.UsageFlushInterval, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                await TryFlushAsync(stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        await adding.ConfigureAwait(false);
    }

    /// <summary>
    /// Adds up the channel into the rows a few times a second, between flushes: the channel then holds a fraction of a
    /// second of calls, not a whole flush interval's (which, past <see cref="MaxPending"/> calls per interval, would drop
    /// usage, and grows the channel's buffer to megabytes). In batches, so a busy gateway does not wake this loop per call.
    /// </summary>
    private async Task AddUpAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (await _channel.Reader.WaitToReadAsync(stoppingToken).ConfigureAwait(false))
            {
                await _flushing.WaitAsync(stoppingToken).ConfigureAwait(false);
                try
                {
                    DrainLocked();
                }
                finally
                {
                    _flushing.Release();
                }
                await Task.Delay(AddUpInterval, _time, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// Writes what is still in memory, whatever state storage is in: a failure is logged in one line (how many rows were
    /// lost and why), never thrown, so that stopping the host is always clean. The host's shutdown timeout bounds it.
    /// </summary>
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (FuncProxyTables.IsStorageFailure(e))
        {
            Log.FinalFlushFailed(_logger, _rows.Count(r => r.Value.Dirty) + _channel.Reader.Count, FuncProxyTables.Describe(e));
        }
    }

    private async Task TryFlushAsync(CancellationToken cancellationToken)
    {
        try
        {
            await FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (FuncProxyTables.IsStorageFailure(e))
        {
            // Totals stay in memory and go with the next flush.
            Log.FlushFailed(_logger, e);
        }
    }

    public override void Dispose()
    {
        _flushing.Dispose();
        base.Dispose();
    }

    private sealed class Row(DateTimeOffset hour)
    {
        public DateTimeOffset Hour { get; } = hour;
        public long Requests;
        public long InputTokens;
        public long OutputTokens;
        public long CachedInputTokens;
        public long CostMicroUsd;
        public long WithoutUsage;
        public bool Dirty;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3020, Level = LogLevel.Warning, Message = "Usage could not be written; it stays in memory for the next flush.")]
        public static partial void FlushFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 3022, Level = LogLevel.Warning, Message = "Usage could not be written at shutdown: {Rows} row(s) of metered usage are lost. {Reason}")]
        public static partial void FinalFlushFailed(ILogger logger, int rows, string reason);

        [LoggerMessage(EventId = 3021, Level = LogLevel.Warning, Message = "Usage metering is behind: {Dropped} records dropped so far.")]
        public static partial void Dropped(ILogger logger, long dropped);
    }
}

/// <summary>
/// One call being metered. Disposed when the response has ended: settles the token reservation with the usage read
/// (no usage reported on a successful response: the reservation stands; on a failed one it is returned) and, when the
/// call reached the upstream, records it in the usage table.
/// </summary>
public sealed class Metering : IDisposable
{
    private readonly UsageMeter _meter;
    private readonly HttpContext _context;
    private readonly string _keyId;
    private readonly string _upstream;
    private readonly Admission _admission;
    private readonly UsageReadingStream _reader;
    private readonly DateTimeOffset _startedAt;
    private readonly string? _model;
    private readonly Spend.ModelPrice? _price;
    private long _forwardedAt;

    internal Telemetry.GenAiCall? GenAi { get; init; }

    internal Telemetry.FuncProxyMetrics? Metrics { get; init; }

    internal Metering(UsageMeter meter, HttpContext context, string keyId, string upstream, Admission admission, UsageReadingStream reader, DateTimeOffset startedAt,
        string? model, Spend.ModelPrice? price)
    {
        _model = model;
        _price = price;
        _meter = meter;
        _context = context;
        _keyId = keyId;
        _upstream = upstream;
        _admission = admission;
        _reader = reader;
        _startedAt = startedAt;
    }

    private string? _backend;
    private bool _forwarded;

    public TokenUsage Usage => _reader.Usage;

    /// <summary>
    /// The call goes to <paramref name="backend"/> now (the last one named served it); a call the gateway answered itself
    /// (e.g. 503 for a missing secret) is not metered. The GenAI duration runs from the first attempt.
    /// </summary>
    public void Forwarding(string backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        _backend = backend;
        if (!_forwarded)
        {
            _forwarded = true;
            _forwardedAt = System.Diagnostics.Stopwatch.GetTimestamp();
        }
    }

    /// <summary>The response has been copied: writes what the usage-chunk filter still holds (an event without its blank line).</summary>
    public ValueTask CompleteAsync() => _reader.CompleteAsync();

    /// <summary>What the call cost (micro-dollars), once it ended: from the reported usage, else the budget reservation that stands.</summary>
    public long CostMicroUsd { get; private set; }

    public void Dispose()
    {
        var usage = _reader.Usage;
        long cost;
        if (usage.IsKnown)
        {
            cost = _price?.CostMicroUsd(usage) ?? 0;
            _admission.Settle(usage.Total, _price is null ? null : cost);
        }
        else if (_context.Response.StatusCode >= 400)
        {
            // Refused by the gateway or the upstream: nothing was generated, so nothing is charged.
            cost = 0;
            _admission.Settle(0, 0);
        }
        else
        {
            // Succeeded without reporting usage: the reservations stand, and the money reserved is what it cost.
            cost = _admission.ReservedMicroUsd;
        }
        CostMicroUsd = cost;
        if (_forwarded)
        {
            _meter.Record(new UsageRecord(_keyId, _upstream, _startedAt, usage, _model, cost, _backend ?? Backends.Backend.DefaultName));
            if (GenAi is { } call && Metrics is { } metrics)
            {
                var end = System.Diagnostics.Stopwatch.GetTimestamp();
                TimeSpan? firstChunk = _reader.IsStream && _reader.FirstWriteTimestamp != 0
                    ? System.Diagnostics.Stopwatch.GetElapsedTime(_forwardedAt, _reader.FirstWriteTimestamp) : null;
                metrics.GenAiCompleted(call, _keyId, _upstream, usage, _reader.ResponseModel, _context.Response.StatusCode,
                    System.Diagnostics.Stopwatch.GetElapsedTime(_forwardedAt, end), firstChunk, cost);
            }
        }
    }
}
