using System.Globalization;
using Azure.Data.Tables;

namespace FuncProxy.Admin;

/// <summary>A key's metered use in one hour on one upstream.</summary>
public sealed record UsageRow(DateTimeOffset Hour, string Upstream, long Requests, long InputTokens, long OutputTokens);

/// <summary>Reads a key's metered use; the management API and the CLI report it, the metering step writes it.</summary>
public interface IUsageReader
{
    /// <summary>Rows for hours that start in [<paramref name="from"/>, <paramref name="to"/>), oldest first.</summary>
    Task<IReadOnlyList<UsageRow>> ReadAsync(string keyId, DateTimeOffset from, DateTimeOffset to, CancellationToken cancellationToken = default);
}

/// <summary>
/// Reads the <c>usage</c> table. ASSUMED LAYOUT, to reconcile with the metering branch that writes it:
/// PartitionKey = key id; RowKey = UTC hour stamp <c>yyyyMMddHH</c> followed by the upstream name (an optional single
/// separator such as <c>_</c> or <c>|</c> between them is skipped); properties <c>Requests</c>, <c>InputTokens</c>,
/// <c>OutputTokens</c> (Int32 or Int64). A range is one partition query on the RowKey prefix. If the writer settles on
/// another layout, only this class changes (or the writer registers its own <see cref="IUsageReader"/>).
/// </summary>
public sealed class TableUsageReader : IUsageReader
{
    private const string HourFormat = "yyyyMMddHH";
    private readonly FuncProxyTables _tables;

    public TableUsageReader(FuncProxyTables tables)
    {
        ArgumentNullException.ThrowIfNull(tables);
        _tables = tables;
    }

    public async Task<IReadOnlyList<UsageRow>> ReadAsync(string keyId, DateTimeOffset from, DateTimeOffset to, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(keyId);
        var table = await _tables.GetUsageAsync(cancellationToken).ConfigureAwait(false);
        // Hour stamps sort as text. 'from' rounds down to its hour; an hour that has begun before 'to' counts.
        var end = to.UtcDateTime;
        var endHour = new DateTime(end.Ticks - (end.Ticks % TimeSpan.TicksPerHour), DateTimeKind.Utc);
        if (endHour < end)
        {
            endHour = endHour.AddHours(1);
        }
        var lower = from.UtcDateTime.ToString(HourFormat, CultureInfo.InvariantCulture);
        var upper = endHour.ToString(HourFormat, CultureInfo.InvariantCulture);
        var filter = TableClient.CreateQueryFilter($"PartitionKey eq {keyId} and RowKey ge {lower} and RowKey lt {upper}");
        var rows = new List<UsageRow>();
        await foreach (var e in table.QueryAsync<TableEntity>(filter, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            if (e.RowKey.Length < HourFormat.Length
                || !DateTime.TryParseExact(e.RowKey.AsSpan(0, HourFormat.Length), HourFormat, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var hour))
            {
                continue;
            }
            // The metering writer (RateLimiting/UsageMeter) keys rows as "{hour}|{upstream}|{instance}": each instance keeps
            // its own cumulative row, so the instance part is dropped here and the caller's totals add them up.
            var rest = e.RowKey[HourFormat.Length..].TrimStart('_', '|', '-', ':');
            var bar = rest.IndexOf('|', StringComparison.Ordinal);
            var upstream = bar >= 0 ? rest[..bar] : rest;
            rows.Add(new UsageRow(new DateTimeOffset(hour, TimeSpan.Zero), upstream, Number(e, "Requests"), Number(e, "InputTokens"), Number(e, "OutputTokens")));
        }
        return rows;
    }

    private static long Number(TableEntity e, string name) => e.TryGetValue(name, out var v) && v is not null
        ? v switch
        {
            long l => l,
            int i => i,
            double d => (long)d,
            string s when long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var parsed) => parsed,
            _ => 0,
        }
        : 0;
}
