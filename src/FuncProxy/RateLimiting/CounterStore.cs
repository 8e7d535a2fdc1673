using System.Globalization;
using System.Security.Cryptography;
using Azure;
using Azure.Data.Tables;

namespace FuncProxy.RateLimiting;

/// <summary>What this instance last knew of a counter row: the units claimed so far by all instances, and the row's ETag.</summary>
internal sealed record CounterRow(long Used, ETag ETag);

/// <summary>The result of one claim: what was granted, the row as written (or read), and how much debt was written with it.</summary>
internal readonly record struct Claim(long Granted, CounterRow? Row, long DebtWritten, bool Contended);

/// <summary>
/// Window counters in the <c>keys</c> table, in the key's own partition: PartitionKey = key id,
/// RowKey = <c>ctr:{policy}:{window start, Unix seconds}</c>, <c>Used</c> = units claimed by all instances together.
/// A claim is one conditional (ETag) write of <c>Used + block</c>; a 412 (another instance wrote first) costs a read and
/// another try, a few times at most, with jitter so the contenders spread out.
/// </summary>
public sealed class CounterStore
{
    internal const int MaxAttempts = 6;
    private const string UsedColumn = "Used";
    private const string LimitColumn = "Limit";

    private readonly FuncProxyTables _tables;
    private readonly LimiterClock _clock;
    private long _operations;
    private long _conflicts;

    public CounterStore(FuncProxyTables tables, LimiterClock clock)
    {
        ArgumentNullException.ThrowIfNull(tables);
        ArgumentNullException.ThrowIfNull(clock);
        _tables = tables;
        _clock = clock;
    }

    /// <summary>Storage requests made (reads and writes), for tests and benchmarks.</summary>
    public long Operations => Interlocked.Read(ref _operations);

    /// <summary>Writes refused because another instance wrote first (412) or created the row first (409).</summary>
    public long Conflicts => Interlocked.Read(ref _conflicts);

    public static string RowKey(LimitPolicy policy, DateTimeOffset windowStart)
    {
        ArgumentNullException.ThrowIfNull(policy);
        return string.Create(CultureInfo.InvariantCulture, $"ctr:{policy.Name}:{windowStart.ToUnixTimeSeconds()}");
    }

    /// <summary>Reads a window's counter (for tests, tools and benchmarks): the units claimed so far, 0 when there is no row.</summary>
    public async Task<long> ReadUsedAsync(string keyId, LimitPolicy policy, DateTimeOffset windowStart, CancellationToken cancellationToken = default)
    {
        var row = await ReadAsync(keyId, RowKey(policy, windowStart), cancellationToken).ConfigureAwait(false);
        return row?.Used ?? 0;
    }

    /// <summary>
    /// Claims up to <paramref name="want"/> units (at least <paramref name="need"/>, else none) from the window's counter,
    /// adding <paramref name="debt"/> (units already spent here that storage has not seen) in the same write.
    /// </summary>
    /// <remarks><c>known</c> is the row as this instance last wrote it; null to read it first.</remarks>
    internal async Task<Claim> ClaimAsync(string keyId, LimitPolicy policy, DateTimeOffset windowStart, CounterRow? known,
        long want, long need, long debt, CancellationToken cancellationToken)
    {
        var rowKey = RowKey(policy, windowStart);
        var row = known;
        var read = known is not null;
        for (var attempt = 1; attempt <= MaxAttempts; attempt++)
        {
            try
            {
                if (!read)
                {
                    row = await ReadAsync(keyId, rowKey, cancellationToken).ConfigureAwait(false);
                    read = true;
                }
                var used = row?.Used ?? 0;
                var remaining = Math.Max(0, policy.Limit - used);
                var granted = remaining >= need ? Math.Min(want, remaining) : 0;
                if (granted == 0 && debt == 0)
                {
                    return new Claim(0, row ?? new CounterRow(0, default), 0, Contended: false);
                }
                var entity = new TableEntity(keyId, rowKey)
                {
                    [UsedColumn] = used + granted + debt,
                    [LimitColumn] = policy.Limit,
                };
                var created = row is null || row.ETag == default;
                var written = await WriteAsync(entity, row, cancellationToken).ConfigureAwait(false);
                if (created)
                {
                    // Exactly one instance creates each window's row: it also clears the rows of windows before the last.
                    _ = PruneOlderWindowsAsync(keyId, policy, windowStart);
                }
                return new Claim(granted, new CounterRow(used + granted + debt, written), debt, Contended: false);
            }
            catch (RequestFailedException e) when (e.Status == 404 && e.ErrorCode == "TableNotFound")
            {
                // The table is gone (deleted, or an emulator restarted empty): create it again on the next try.
                _tables.Forget(FuncProxyTables.Keys);
                read = false;
            }
            catch (RequestFailedException e) when (e.Status is 412 or 409 or 404)
            {
                // Another instance wrote (or created, or the row is gone): read the row again and retry.
                Interlocked.Increment(ref _conflicts);
                read = false;
            }
            // Jitter only, but RandomNumberGenerator keeps CA5394 (AnalysisModeSecurity) quiet without a suppression,
            // and this line runs only after a conflict, so its cost does not matter.
            await Task.Delay(RandomNumberGenerator.GetInt32(1, 4 * attempt), cancellationToken).ConfigureAwait(false);
        }
        return new Claim(0, null, 0, Contended: true);
    }

    /// <summary>
    /// Deletes this policy's counter rows older than the window before <paramref name="windowStart"/>, off the request path
    /// and best effort (what fails now goes with the next window's creation). The previous window's row stays: an instance
    /// may still be finishing it. Counters would otherwise pile up in the key's partition forever (Table Storage has no TTL).
    /// </summary>
    private async Task PruneOlderWindowsAsync(string keyId, LimitPolicy policy, DateTimeOffset windowStart)
    {
        try
        {
            var previous = policy.Window.StartOf(windowStart.AddTicks(-1));
            // Unix seconds are 10 digits until 2286, so these row keys sort by time; "ctr:rpm:" never reaches "ctr:rpmonth:".
            var lower = $"ctr:{policy.Name}:";
            var upper = RowKey(policy, previous);
            var table = await _tables.GetKeysAsync(CancellationToken.None).ConfigureAwait(false);
            var filter = TableClient.CreateQueryFilter($"PartitionKey eq {keyId} and RowKey ge {lower} and RowKey lt {upper}");
            Interlocked.Increment(ref _operations);
            var stale = new List<TableTransactionAction>();
            await foreach (var e in table.QueryAsync<TableEntity>(filter, select: ["PartitionKey", "RowKey"]).ConfigureAwait(false))
            {
                stale.Add(new TableTransactionAction(TableTransactionActionType.Delete, e, ETag.All));
            }
            foreach (var batch in stale.Chunk(100))
            {
                Interlocked.Increment(ref _operations);
                await table.SubmitTransactionAsync(batch).ConfigureAwait(false);
            }
        }
#pragma warning disable CA1031 // Best effort by design: a failed clean-up must never surface; the next window tries again.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    private async Task<CounterRow?> ReadAsync(string keyId, string rowKey, CancellationToken cancellationToken)
    {
        var table = await _tables.GetKeysAsync(cancellationToken).ConfigureAwait(false);
        var sent = _clock.LocalNow;
        Interlocked.Increment(ref _operations);
        var response = await table.GetEntityIfExistsAsync<TableEntity>(keyId, rowKey, [UsedColumn], cancellationToken).ConfigureAwait(false);
        Observe(response.GetRawResponse(), sent);
        if (!response.HasValue)
        {
            return null;
        }
        var entity = response.Value!;
        return new CounterRow(entity.GetInt64(UsedColumn) ?? 0, entity.ETag);
    }

    private async Task<ETag> WriteAsync(TableEntity entity, CounterRow? row, CancellationToken cancellationToken)
    {
        var table = await _tables.GetKeysAsync(cancellationToken).ConfigureAwait(false);
        var sent = _clock.LocalNow;
        Interlocked.Increment(ref _operations);
        Response response = row is null || row.ETag == default
            ? await table.AddEntityAsync(entity, cancellationToken).ConfigureAwait(false)
            : await table.UpdateEntityAsync(entity, row.ETag, TableUpdateMode.Replace, cancellationToken).ConfigureAwait(false);
        Observe(response, sent);
        return response.Headers.ETag ?? throw new InvalidOperationException("Table Storage answered a write without an ETag.");
    }

    private void Observe(Response response, DateTimeOffset sent)
    {
        if (response.Headers.Date is { } date)
        {
            _clock.Observe(date, sent, _clock.LocalNow);
        }
    }
}
