using Azure;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FuncProxy.Admin;

/// <summary>
/// Enforces <see cref="AuditOptions.Retention"/>: one sweep deletes the audit events older than the retention, in
/// bounded batches (<see cref="AuditLog.DeleteOlderThanAsync"/>). The Functions host runs <see cref="SweepAsync"/> from a
/// timer function; the Kestrel host runs <see cref="AuditRetentionService"/>.
/// </summary>
public sealed partial class AuditRetention
{
    private readonly AuditLog _audit;
    private readonly IOptionsMonitor<FuncProxyOptions> _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;

    public AuditRetention(AuditLog audit, IOptionsMonitor<FuncProxyOptions> options, TimeProvider time, ILogger<AuditRetention> logger)
    {
        ArgumentNullException.ThrowIfNull(audit);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        _audit = audit;
        _options = options;
        _time = time;
        _logger = logger;
    }

    /// <summary>One sweep; returns the number of rows deleted (each event has one or two rows).</summary>
    public async Task<int> SweepAsync(CancellationToken cancellationToken = default)
    {
        var settings = _options.CurrentValue.Audit;
        var cutoff = _time.GetUtcNow() - settings.Retention;
        var deleted = await _audit.DeleteOlderThanAsync(cutoff, settings.MaxDeletesPerSweep, cancellationToken).ConfigureAwait(false);
        if (deleted > 0)
        {
            Log.Swept(_logger, deleted, cutoff, deleted >= settings.MaxDeletesPerSweep);
        }
        return deleted;
    }

    internal static partial class Log
    {
        [LoggerMessage(EventId = 4301, Level = LogLevel.Information, Message = "Audit retention deleted {Rows} rows older than {Cutoff:O} (more left for the next sweep: {More}).")]
        public static partial void Swept(ILogger logger, int rows, DateTimeOffset cutoff, bool more);

        [LoggerMessage(EventId = 4302, Level = LogLevel.Warning, Message = "An audit retention sweep failed; the next one retries.")]
        public static partial void SweepFailed(ILogger logger, Exception exception);
    }
}

/// <summary>The Kestrel host's audit retention: a sweep a minute after start, then every <see cref="AuditOptions.SweepInterval"/>.</summary>
public sealed class AuditRetentionService : BackgroundService
{
    private static readonly TimeSpan FirstSweepAfter = TimeSpan.FromMinutes(1);

    private readonly AuditRetention _retention;
    private readonly IOptionsMonitor<FuncProxyOptions> _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;

    public AuditRetentionService(AuditRetention retention, IOptionsMonitor<FuncProxyOptions> options, TimeProvider time, ILogger<AuditRetentionService> logger)
    {
        ArgumentNullException.ThrowIfNull(retention);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        _retention = retention;
        _options = options;
        _time = time;
        _logger = logger;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = _options.CurrentValue.Audit.SweepInterval;
        var wait = interval < FirstSweepAfter ? interval : FirstSweepAfter;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                await Task.Delay(wait, _time, stoppingToken).ConfigureAwait(false);
                try
                {
                    await _retention.SweepAsync(stoppingToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is RequestFailedException or HttpRequestException or InvalidOperationException)
                {
                    AuditRetention.Log.SweepFailed(_logger, e);
                }
                wait = _options.CurrentValue.Audit.SweepInterval;
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }
}
