using System.Collections.Concurrent;
using FuncProxy.Telemetry;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FuncProxy.Secrets;

/// <summary>A secret value as served by <see cref="SecretCache"/>, with the generation it was read in.</summary>
public sealed record CachedSecret(string? Value, long Generation);

/// <summary>
/// Upstream credentials in memory. Refresh ahead: after <see cref="KeyVaultOptions.RefreshAfter"/> the cached value is still
/// served while one background read per name fetches the new one (single flight). Stale-if-error: while the source fails, the
/// last value is served for up to <see cref="KeyVaultOptions.StaleIfErrorFor"/>. <see cref="Invalidate"/> (after an upstream 401)
/// forces the next caller to read afresh, so a rotation in Key Vault needs no restart.
/// </summary>
public sealed partial class SecretCache
{
    private readonly ISecretSource _source;
    private readonly IOptionsMonitor<FuncProxyOptions> _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.OrdinalIgnoreCase);
    private long _sourceReads;

    private readonly FuncProxyMetrics _metrics;

    public SecretCache(ISecretSource source, IOptionsMonitor<FuncProxyOptions> options, TimeProvider time, FuncProxyMetrics metrics, ILogger<SecretCache> logger)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        _metrics = metrics;
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        _source = source;
        _options = options;
        _time = time;
        _logger = logger;
    }

    /// <summary>Reads made from the source (Key Vault): zero per request once warm.</summary>
    public long SourceReads => Interlocked.Read(ref _sourceReads);

    public ValueTask<CachedSecret> GetAsync(string name, CancellationToken cancellationToken)
    {
        var entry = _entries.GetOrAdd(name, static _ => new Entry());
        Task<CachedSecret> pending;
        lock (entry)
        {
            if (entry.Current is { } current && !entry.Invalidated)
            {
                if (_time.GetElapsedTime(entry.FetchedAt) >= _options.CurrentValue.KeyVault.RefreshAfter)
                {
                    entry.Pending ??= RefreshAsync(name, entry);
                }
                _metrics.SecretCache(hit: true, name);
                return ValueTask.FromResult(current);
            }
            pending = entry.Pending ??= RefreshAsync(name, entry);
            _metrics.SecretCache(hit: false, name);
        }
        return AwaitAsync(name, entry, pending, cancellationToken);
    }

    /// <summary>
    /// Marks the value of generation <paramref name="generation"/> as rejected, so the next read goes to the source.
    /// A newer generation (another request already refreshed) is left alone.
    /// </summary>
    public void Invalidate(string name, long generation)
    {
        if (_entries.TryGetValue(name, out var entry))
        {
            lock (entry)
            {
                if (entry.Current?.Generation == generation)
                {
                    entry.Invalidated = true;
                }
            }
        }
    }

    private async ValueTask<CachedSecret> AwaitAsync(string name, Entry entry, Task<CachedSecret> pending, CancellationToken cancellationToken)
    {
        try
        {
            return await pending.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            lock (entry)
            {
                if (entry.Current is { } stale && _time.GetElapsedTime(entry.FetchedAt) < _options.CurrentValue.KeyVault.RefreshAfter + _options.CurrentValue.KeyVault.StaleIfErrorFor)
                {
                    Log.ServingStale(_logger, name);
                    return stale;
                }
            }
            throw new SecretUnavailableException(name, e);
        }
    }

    private async Task<CachedSecret> RefreshAsync(string name, Entry entry)
    {
        await Task.Yield();
        try
        {
            Interlocked.Increment(ref _sourceReads);
            var value = await _source.GetSecretAsync(name, CancellationToken.None).ConfigureAwait(false);
            lock (entry)
            {
                var generation = (entry.Current?.Generation ?? 0) + 1;
                entry.Current = new CachedSecret(value, generation);
                entry.FetchedAt = _time.GetTimestamp();
                entry.Invalidated = false;
                entry.Pending = null;
                return entry.Current;
            }
        }
        catch (Exception e)
        {
            Log.RefreshFailed(_logger, name, e.GetType().Name);
            lock (entry)
            {
                entry.Pending = null;
            }
            throw;
        }
    }

    private sealed class Entry
    {
        public CachedSecret? Current;
        public long FetchedAt;
        public bool Invalidated;
        public Task<CachedSecret>? Pending;
    }

    private static partial class Log
    {
        // The exception itself is not logged: SDK messages can echo request details; its type is enough to act on.
        [LoggerMessage(EventId = 1201, Level = LogLevel.Warning, Message = "Reading secret {SecretName} failed ({ErrorType}).")]
        public static partial void RefreshFailed(ILogger logger, string secretName, string errorType);

        [LoggerMessage(EventId = 1202, Level = LogLevel.Warning, Message = "Secret source unreachable; serving the cached value of {SecretName}.")]
        public static partial void ServingStale(ILogger logger, string secretName);
    }
}

/// <summary>The secret source failed and no usable cached value exists.</summary>
public sealed class SecretUnavailableException(string name, Exception inner)
    : Exception($"Secret '{name}' is unavailable.", inner)
{
    public string SecretName { get; } = name;
}
