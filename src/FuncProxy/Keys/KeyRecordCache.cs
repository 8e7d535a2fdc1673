using System.Collections.Concurrent;
using FuncProxy.Telemetry;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FuncProxy.Keys;

/// <summary>
/// Key records in memory for <see cref="KeyOptions.CacheDuration"/>. A record read in the second half of that time is
/// refreshed in the background (one read per key, however many requests), so a hot key never waits for storage and
/// a revoked key stops working within the cache duration on every instance.
/// </summary>
public sealed partial class KeyRecordCache
{
    private const int MaxEntries = 100_000;

    private readonly KeyStore _store;
    private readonly IOptionsMonitor<FuncProxyOptions> _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Entry>.AlternateLookup<ReadOnlySpan<char>> _bySpan;

    private readonly FuncProxyMetrics _metrics;

    public KeyRecordCache(KeyStore store, IOptionsMonitor<FuncProxyOptions> options, TimeProvider time, FuncProxyMetrics metrics, ILogger<KeyRecordCache> logger)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        _metrics = metrics;
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        _store = store;
        _bySpan = _entries.GetAlternateLookup<ReadOnlySpan<char>>();
        _options = options;
        _time = time;
        _logger = logger;
    }

    /// <summary>Storage reads made by this cache (for tests and benchmarks: zero per request once warm).</summary>
    public long StorageReads => Interlocked.Read(ref _storageReads);
    private long _storageReads;

    /// <summary>
    /// <see cref="GetAsync(string, CancellationToken)"/> for an id inside the presented key: a fresh cached record is found
    /// without making the id a string (every call of a warm key); anything else takes the string path.
    /// </summary>
    public ValueTask<KeyRecord?> GetAsync(ReadOnlySpan<char> id, CancellationToken cancellationToken)
    {
        if (_bySpan.TryGetValue(id, out var entry))
        {
            lock (entry)
            {
                if (TryFreshLocked(entry, _time.GetTimestamp(), _options.CurrentValue.Keys.CacheDuration, out var record))
                {
                    return ValueTask.FromResult(record);
                }
            }
        }
        return GetAsync(id.ToString(), cancellationToken);
    }

    /// <summary>The record for <paramref name="id"/>, or null when there is none.</summary>
    public ValueTask<KeyRecord?> GetAsync(string id, CancellationToken cancellationToken)
    {
        var options = _options.CurrentValue.Keys;
        var ttl = options.CacheDuration;
        var now = _time.GetTimestamp();
        if (!_entries.TryGetValue(id, out var entry))
        {
            // Count takes every lock of the dictionary: only when a new id is added, not on every call.
            if (_entries.Count >= MaxEntries)
            {
                Prune(now, ttl + options.StaleIfErrorFor);
            }
            entry = _entries.GetOrAdd(id, static _ => new Entry());
        }
        Task<KeyRecord?> pending;
        lock (entry)
        {
            if (TryFreshLocked(entry, now, ttl, out var fresh))
            {
                return ValueTask.FromResult(fresh);
            }
            if (entry.HasValue && _time.GetElapsedTime(entry.FetchedAt, now) < ttl)
            {
                // In the second half of its time: served, and refreshed in the background (one read however many ask).
                entry.Pending ??= RefreshAsync(id, entry);
                _metrics.KeyCache(hit: true);
                return ValueTask.FromResult(entry.Record);
            }
            pending = entry.Pending ??= RefreshAsync(id, entry);
            _metrics.KeyCache(hit: false);
        }
        return AwaitAsync(pending, entry, options, cancellationToken);
    }

    /// <summary>A hit in the first half of the record's time (under the entry's lock): served as it is, counted as a hit.</summary>
    private bool TryFreshLocked(Entry entry, long now, TimeSpan ttl, out KeyRecord? record)
    {
        record = entry.Record;
        if (!entry.HasValue || _time.GetElapsedTime(entry.FetchedAt, now) >= ttl / 2)
        {
            return false;
        }
        _metrics.KeyCache(hit: true);
        return true;
    }

    /// <summary>
    /// True when <paramref name="checksum"/> was verified for a key of <paramref name="id"/> that authenticated on this
    /// instance (<see cref="RememberChecksum"/>): its SHA-256 need not run again. Read without a lock, in constant time.
    /// </summary>
    public bool IsVerifiedChecksum(ReadOnlySpan<char> id, ReadOnlySpan<char> checksum) =>
        _bySpan.TryGetValue(id, out var entry) && Volatile.Read(ref entry.VerifiedChecksum) is var known and not 0 && known == Pack(checksum);

    /// <summary>
    /// Remembers the checksum of a key of <paramref name="id"/> whose secret matched. It is a check of the key's shape, not
    /// of its secret: remembering it lets no other key in (the secret's hash decides), it only saves the checksum's hash on
    /// the next call of the same key. The last one verified is kept (a key rotating between two secrets recomputes).
    /// </summary>
    public void RememberChecksum(ReadOnlySpan<char> id, ReadOnlySpan<char> checksum)
    {
        if (_bySpan.TryGetValue(id, out var entry))
        {
            Volatile.Write(ref entry.VerifiedChecksum, Pack(checksum));
        }
    }

    // The checksum's characters (base62: ASCII) in one number, 7 bits each, with a top bit so that no checksum packs to 0.
    private static long Pack(ReadOnlySpan<char> checksum)
    {
        long packed = 0;
        foreach (var c in checksum)
        {
            packed = (packed << 7) | (c & 0x7FL);
        }
        return packed | (1L << 62);
    }

    /// <summary>Drops this instance's copy of a record, e.g. right after an operator changed it here.</summary>
    public void Invalidate(string id) => _entries.TryRemove(id, out _);

    private async ValueTask<KeyRecord?> AwaitAsync(Task<KeyRecord?> pending, Entry entry, KeyOptions options, CancellationToken cancellationToken)
    {
        try
        {
            return await pending.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            lock (entry)
            {
                if (entry.HasValue && _time.GetElapsedTime(entry.FetchedAt) < options.CacheDuration + options.StaleIfErrorFor)
                {
                    Log.ServingStale(_logger, entry.Record?.Id ?? "(none)");
                    return entry.Record;
                }
            }
            throw new KeyStoreUnavailableException(e);
        }
    }

    private async Task<KeyRecord?> RefreshAsync(string id, Entry entry)
    {
        // Yield first so the caller's lock is released before any I/O starts.
        await Task.Yield();
        try
        {
            Interlocked.Increment(ref _storageReads);
            var record = await _store.FindAsync(id, CancellationToken.None).ConfigureAwait(false);
            lock (entry)
            {
                entry.Record = record;
                entry.FetchedAt = _time.GetTimestamp();
                entry.HasValue = true;
                entry.Pending = null;
            }
            return record;
        }
        catch (Exception e)
        {
            Log.RefreshFailed(_logger, id, e);
            lock (entry)
            {
                entry.Pending = null;
            }
            throw;
        }
    }

    private void Prune(long now, TimeSpan maxAge)
    {
        foreach (var (id, entry) in _entries)
        {
            if (entry.Pending is null && (!entry.HasValue || _time.GetElapsedTime(entry.FetchedAt, now) > maxAge || entry.Record is null))
            {
                _entries.TryRemove(id, out _);
            }
        }
    }

    private sealed class Entry
    {
        public KeyRecord? Record;
        public long FetchedAt;
        public bool HasValue;
        public Task<KeyRecord?>? Pending;
        public long VerifiedChecksum;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1101, Level = LogLevel.Warning, Message = "Key store unreachable; serving the cached record of key {KeyId}.")]
        public static partial void ServingStale(ILogger logger, string keyId);

        [LoggerMessage(EventId = 1102, Level = LogLevel.Warning, Message = "Reading key {KeyId} from the key store failed.")]
        public static partial void RefreshFailed(ILogger logger, string keyId, Exception exception);
    }
}

/// <summary>The key table could not be read and no usable cached record exists: the request gets 503, not 401.</summary>
public sealed class KeyStoreUnavailableException(Exception inner) : Exception("The key store is unavailable.", inner);
