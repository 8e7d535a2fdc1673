using System.Buffers.Text;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.RegularExpressions;
using Azure;
using Azure.Data.Tables;
using FuncProxy.Keys;

namespace FuncProxy.Admin;

/// <summary>One audit event: who did what to which key, when, from where, with what result. Never key material.</summary>
public sealed record AuditEntry
{
    public required string Id { get; init; }
    public required DateTimeOffset Time { get; init; }
    /// <summary><c>admin-key:&lt;id&gt;</c>, <c>entra:&lt;subject&gt;</c>, <c>cli:&lt;user&gt;</c> or <c>anonymous</c>.</summary>
    public required string Actor { get; init; }
    /// <summary>e.g. <c>key.create</c>, <c>key.rotate</c>, <c>admin.auth_failed</c> (see docs/operations.md for the list).</summary>
    public required string Action { get; init; }
    /// <summary>The client key (or admin key) acted on, if any.</summary>
    public string? KeyId { get; init; }
    public required string ClientIp { get; init; }
    /// <summary><c>success</c>, <c>not_found</c>, <c>conflict</c>, <c>invalid</c>, <c>denied</c> or <c>locked_out</c>.</summary>
    public required string Result { get; init; }
    public string? RequestId { get; init; }
    /// <summary>Non-secret context: the names of changed fields, a grace period, a refusal reason.</summary>
    public string? Detail { get; init; }
}

/// <summary>The actor and connection an audited operation comes from.</summary>
public sealed record AuditContext(string Actor, string ClientIp, string? RequestId);

/// <summary>
/// The <c>audit</c> table. Each event is written twice, so both questions operators ask are one partition range query:
/// <list type="bullet">
/// <item>by time: PartitionKey <c>d&lt;yyyyMMdd&gt;</c> (UTC day), RowKey <c>&lt;inverted ticks, 19 digits&gt;-&lt;event id&gt;</c>;</item>
/// <item>by key: PartitionKey <c>k&lt;key id&gt;</c>, same RowKey.</item>
/// </list>
/// Inverted ticks make the newest event come first in a partition. The price is two writes per event and, for a
/// time query across days, one query per day (a day partition grows with admin traffic only, never with client calls).
/// The two rows are separate partitions, so no transaction ties them: a crash between them can leave an event in one
/// view only (logged). Table Storage has no TTL: <see cref="DeleteOlderThanAsync"/>, run on a schedule by
/// <see cref="AuditRetention"/>, enforces <see cref="AuditOptions.Retention"/>.
/// </summary>
public sealed class AuditLog
{
    /// <summary>The widest time range one query may span.</summary>
    public static readonly TimeSpan MaxRange = TimeSpan.FromDays(93);

    /// <summary>The most operations one table transaction may hold.</summary>
    private const int MaxTransactionSize = 100;

    private static readonly Regex CursorShape = new(@"^(d\d{8}|k[a-z2-7]{16})\|\d{19}-[0-9a-f]{12}$", RegexOptions.CultureInvariant);

    private readonly FuncProxyTables _tables;
    private readonly TimeProvider _time;

    public AuditLog(FuncProxyTables tables, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(tables);
        ArgumentNullException.ThrowIfNull(time);
        _tables = tables;
        _time = time;
    }

    /// <summary>Writes an event now (both rows); returns what was written.</summary>
    public async Task<AuditEntry> WriteAsync(AuditContext context, string action, string? keyId, string result, string? detail = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        var entry = new AuditEntry
        {
            Id = Guid.NewGuid().ToString("N")[..12],
            Time = _time.GetUtcNow(),
            Actor = context.Actor,
            Action = action,
            KeyId = keyId,
            ClientIp = context.ClientIp,
            Result = result,
            RequestId = context.RequestId,
            Detail = detail,
        };
        var table = await _tables.GetAuditAsync(cancellationToken).ConfigureAwait(false);
        var rowKey = RowKey(entry.Time, entry.Id);
        var writes = new List<Task> { table.AddEntityAsync(ToEntity(DayPartition(entry.Time), rowKey, entry), cancellationToken) };
        if (keyId is not null && ApiKey.IsValidId(keyId))
        {
            writes.Add(table.AddEntityAsync(ToEntity(KeyPartition(keyId), rowKey, entry), cancellationToken));
        }
        await Task.WhenAll(writes).ConfigureAwait(false);
        return entry;
    }

    /// <summary>
    /// Events in [<paramref name="from"/>, <paramref name="to"/>), newest first, for one key or all; at most
    /// <paramref name="limit"/>, with a cursor for the next page (null on the last).
    /// </summary>
    public async Task<(IReadOnlyList<AuditEntry> Entries, string? Next)> QueryAsync(
        string? keyId, DateTimeOffset from, DateTimeOffset to, int limit, string? cursor, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        var table = await _tables.GetAuditAsync(cancellationToken).ConfigureAwait(false);
        var lower = InvertedTicks(to) + ".";   // rows strictly older than 'to'
        var upper = InvertedTicks(from) + "."; // ... and not older than 'from'
        string? resumePartition = null;
        string? resumeAfter = null;
        if (cursor is not null)
        {
            (resumePartition, resumeAfter) = DecodeCursor(cursor) ?? throw new FormatException("Not a cursor from this API.");
        }

        var partitions = new List<string>();
        if (keyId is not null)
        {
            partitions.Add(KeyPartition(keyId));
        }
        else
        {
            for (var day = to.UtcDateTime.Date; day >= from.UtcDateTime.Date; day = day.AddDays(-1))
            {
                partitions.Add(DayPartition(day));
            }
        }
        if (resumePartition is not null)
        {
            var at = partitions.IndexOf(resumePartition);
            if (at < 0)
            {
                throw new FormatException("The cursor belongs to another query.");
            }
            partitions.RemoveRange(0, at);
        }

        var entries = new List<AuditEntry>();
        string? lastPartition = null;
        string? lastRowKey = null;
        foreach (var partition in partitions)
        {
            var after = partition == resumePartition && string.CompareOrdinal(resumeAfter, lower) > 0 ? resumeAfter! : lower;
            var filter = TableClient.CreateQueryFilter($"PartitionKey eq {partition} and RowKey gt {after} and RowKey lt {upper}");
            await foreach (var e in table.QueryAsync<TableEntity>(filter, maxPerPage: Math.Min(limit + 1, 1000), cancellationToken: cancellationToken).ConfigureAwait(false))
            {
                if (entries.Count == limit)
                {
                    // One more exists: the cursor resumes right after the last entry returned.
                    return (entries, EncodeCursor(lastPartition!, lastRowKey!));
                }
                entries.Add(FromEntity(e));
                lastPartition = partition;
                lastRowKey = e.RowKey;
            }
        }
        return (entries, null);
    }

    /// <summary>
    /// Deletes every event older than <paramref name="cutoff"/> from both views (the day partitions up to the cutoff's
    /// day and every key partition), at most <paramref name="maxDeletes"/> rows, in table transactions of up to 100
    /// deletes within one partition. Safe to run on several instances at once: a row another sweep deleted first is
    /// skipped. Returns the number of rows deleted.
    /// </summary>
    public async Task<int> DeleteOlderThanAsync(DateTimeOffset cutoff, int maxDeletes, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxDeletes, 1);
        var table = await _tables.GetAuditAsync(cancellationToken).ConfigureAwait(false);
        // Older rows have larger inverted ticks, so they sort after the cutoff's: "." sorts after the "-" that follows
        // the ticks, so a row at exactly the cutoff is kept.
        var older = InvertedTicks(cutoff) + ".";
        string[] filters =
        [
            TableClient.CreateQueryFilter($"PartitionKey ge {"d"} and PartitionKey le {DayPartition(cutoff)} and RowKey gt {older}"),
            TableClient.CreateQueryFilter($"PartitionKey ge {"k"} and PartitionKey lt {"l"} and RowKey gt {older}"),
        ];
        var deleted = 0;
        var batch = new List<TableTransactionAction>(MaxTransactionSize);
        foreach (var filter in filters)
        {
            await foreach (var row in table.QueryAsync<TableEntity>(filter, maxPerPage: 1000, select: ["PartitionKey", "RowKey"], cancellationToken: cancellationToken).ConfigureAwait(false))
            {
                if (batch.Count == MaxTransactionSize || (batch.Count > 0 && batch[0].Entity.PartitionKey != row.PartitionKey))
                {
                    deleted += await DeleteBatchAsync(table, batch, cancellationToken).ConfigureAwait(false);
                }
                if (deleted + batch.Count >= maxDeletes)
                {
                    break;
                }
                batch.Add(new TableTransactionAction(TableTransactionActionType.Delete, row, ETag.All));
            }
            deleted += await DeleteBatchAsync(table, batch, cancellationToken).ConfigureAwait(false);
            if (deleted >= maxDeletes)
            {
                break;
            }
        }
        return deleted;
    }

    /// <summary>
    /// Every event in [<paramref name="from"/>, <paramref name="to"/>), newest first, page by page: what
    /// <c>audit export</c> writes. No range limit; one query per day partition.
    /// </summary>
    public async IAsyncEnumerable<AuditEntry> ReadAllAsync(DateTimeOffset from, DateTimeOffset to, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        string? cursor = null;
        do
        {
            var (entries, next) = await QueryAsync(null, from, to, 1000, cursor, cancellationToken).ConfigureAwait(false);
            foreach (var entry in entries)
            {
                yield return entry;
            }
            cursor = next;
        }
        while (cursor is not null);
    }

    private static async Task<int> DeleteBatchAsync(TableClient table, List<TableTransactionAction> batch, CancellationToken cancellationToken)
    {
        if (batch.Count == 0)
        {
            return 0;
        }
        var count = batch.Count;
        try
        {
            await table.SubmitTransactionAsync(batch, cancellationToken).ConfigureAwait(false);
        }
        catch (TableTransactionFailedException e) when (e.Status == 404)
        {
            // Another sweep deleted one of these first; the transaction was all or nothing, so delete one by one.
            count = 0;
            foreach (var action in batch)
            {
                var response = await table.DeleteEntityAsync(action.Entity.PartitionKey, action.Entity.RowKey, ETag.All, cancellationToken).ConfigureAwait(false);
                count += response.Status == 404 ? 0 : 1;
            }
        }
        batch.Clear();
        return count;
    }

    internal static string DayPartition(DateTimeOffset time) => "d" + time.UtcDateTime.ToString("yyyyMMdd", CultureInfo.InvariantCulture);

    internal static string KeyPartition(string keyId) => "k" + keyId;

    private static string InvertedTicks(DateTimeOffset time) =>
        (DateTimeOffset.MaxValue.UtcTicks - time.UtcTicks).ToString("D19", CultureInfo.InvariantCulture);

    private static string RowKey(DateTimeOffset time, string id) => InvertedTicks(time) + "-" + id;

    private static string EncodeCursor(string partition, string rowKey) =>
        Base64Url.EncodeToString(Encoding.ASCII.GetBytes(partition + "|" + rowKey));

    private static (string Partition, string RowKey)? DecodeCursor(string cursor)
    {
        string text;
        try
        {
            text = Encoding.ASCII.GetString(Base64Url.DecodeFromChars(cursor));
        }
        catch (FormatException)
        {
            return null;
        }
        if (!CursorShape.IsMatch(text))
        {
            return null;
        }
        var bar = text.IndexOf('|', StringComparison.Ordinal);
        return (text[..bar], text[(bar + 1)..]);
    }

    /// <summary>True when <paramref name="cursor"/> has the shape of one this log hands out (no I/O).</summary>
    public static bool IsValidCursor(string? cursor) => cursor is { Length: <= 200 } && DecodeCursor(cursor) is not null;

    private static TableEntity ToEntity(string partition, string rowKey, AuditEntry e) => new(partition, rowKey)
    {
        ["EventId"] = e.Id,
        ["Time"] = e.Time,
        ["Actor"] = e.Actor,
        ["Action"] = e.Action,
        ["KeyId"] = e.KeyId,
        ["ClientIp"] = e.ClientIp,
        ["Result"] = e.Result,
        ["RequestId"] = e.RequestId,
        ["Detail"] = e.Detail,
    };

    private static AuditEntry FromEntity(TableEntity e) => new()
    {
        Id = e.GetString("EventId") ?? "",
        Time = e.GetDateTimeOffset("Time") ?? DateTimeOffset.MinValue,
        Actor = e.GetString("Actor") ?? "",
        Action = e.GetString("Action") ?? "",
        KeyId = e.GetString("KeyId"),
        ClientIp = e.GetString("ClientIp") ?? "",
        Result = e.GetString("Result") ?? "",
        RequestId = e.GetString("RequestId"),
        Detail = e.GetString("Detail"),
    };
}
