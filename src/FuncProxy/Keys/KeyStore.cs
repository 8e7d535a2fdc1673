using System.Text.Json;
using Azure;
using Azure.Data.Tables;

namespace FuncProxy.Keys;

/// <summary>
/// Key records in the <c>keys</c> table: PartitionKey = key id, RowKey = <c>key</c>. The key's counters share the
/// partition, so one partition query can return both.
/// </summary>
public sealed class KeyStore
{
    internal const string RecordRowKey = "key";
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private readonly FuncProxyTables _tables;

    public KeyStore(FuncProxyTables tables)
    {
        ArgumentNullException.ThrowIfNull(tables);
        _tables = tables;
    }

    /// <summary>Reads a record straight from storage; null when there is none.</summary>
    public async Task<KeyRecord?> FindAsync(string id, CancellationToken cancellationToken = default)
    {
        if (!ApiKey.IsValidId(id))
        {
            return null;
        }
        var table = await _tables.GetKeysAsync(cancellationToken).ConfigureAwait(false);
        var response = await table.GetEntityIfExistsAsync<TableEntity>(id, RecordRowKey, cancellationToken: cancellationToken).ConfigureAwait(false);
        return response.HasValue ? FromEntity(response.Value!) : null;
    }

    /// <summary>Stores a new record; false when the id is taken already.</summary>
    public async Task<bool> TryAddAsync(KeyRecord record, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(record);
        var table = await _tables.GetKeysAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await table.AddEntityAsync(ToEntity(record), cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (RequestFailedException e) when (e.Status == 409)
        {
            return false;
        }
    }

    /// <summary>
    /// Replaces a record if it has not changed since it was read (its ETag). Returns the record as stored, with its new
    /// ETag, or null on a concurrent change (or when the record is gone).
    /// </summary>
    public async Task<KeyRecord?> TryReplaceAsync(KeyRecord record, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(record);
        var table = await _tables.GetKeysAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var etag = record.ETag is null ? ETag.All : new ETag(record.ETag);
            var response = await table.UpdateEntityAsync(ToEntity(record), etag, TableUpdateMode.Replace, cancellationToken).ConfigureAwait(false);
            return record with { ETag = response.Headers.ETag?.ToString() };
        }
        catch (RequestFailedException e) when (e.Status is 412 or 404)
        {
            return null;
        }
    }

    /// <summary>Every key record (row <c>key</c> of each partition), in id order.</summary>
    public async IAsyncEnumerable<KeyRecord> ListAsync([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var table = await _tables.GetKeysAsync(cancellationToken).ConfigureAwait(false);
        var filter = TableClient.CreateQueryFilter($"RowKey eq {RecordRowKey}");
        await foreach (var entity in table.QueryAsync<TableEntity>(filter, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            yield return FromEntity(entity);
        }
    }

    /// <summary>
    /// One page of key records in id order, after <paramref name="afterId"/>: owner and status are filtered by the table
    /// service (values passed through <see cref="TableClient.CreateQueryFilter(FormattableString)"/>, never spliced in), the
    /// upstream here, since allowed upstreams are stored as one list. <c>NextAfterId</c> is null on the last page.
    /// </summary>
    public async Task<(IReadOnlyList<KeyRecord> Records, string? NextAfterId)> QueryAsync(
        string? owner, KeyStatus? status, string? upstream, string? afterId, int limit, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        var table = await _tables.GetKeysAsync(cancellationToken).ConfigureAwait(false);
        var filter = TableClient.CreateQueryFilter($"RowKey eq {RecordRowKey} and PartitionKey gt {afterId ?? ""}");
        if (owner is not null)
        {
            filter += " and " + TableClient.CreateQueryFilter($"Owner eq {owner}");
        }
        if (status is { } s)
        {
            filter += " and " + TableClient.CreateQueryFilter($"Status eq {s.ToString()}");
        }
        var page = new List<KeyRecord>(Math.Min(limit, 1000));
        await foreach (var entity in table.QueryAsync<TableEntity>(filter, maxPerPage: Math.Min(limit + 1, 1000), cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            var record = FromEntity(entity);
            if (upstream is not null && !record.AllowsUpstream(upstream))
            {
                continue;
            }
            if (page.Count == limit)
            {
                return (page, page[^1].Id);
            }
            page.Add(record);
        }
        return (page, null);
    }

    internal static TableEntity ToEntity(KeyRecord r) => new(r.Id, RecordRowKey)
    {
        ["Name"] = r.Name,
        ["Owner"] = r.Owner,
        ["Status"] = r.Status.ToString(),
        ["CreatedAt"] = r.CreatedAt,
        ["ExpiresAt"] = r.ExpiresAt,
        ["AllowedUpstreams"] = string.Join(',', r.AllowedUpstreams),
        ["Limits"] = r.Limits is null ? null : JsonSerializer.Serialize(r.Limits, Json),
        ["Metadata"] = JsonSerializer.Serialize(r.Metadata, Json),
        ["AllowedModels"] = r.AllowedModels.Count == 0 ? null : JsonSerializer.Serialize(r.AllowedModels, Json),
        ["ModelAliases"] = r.ModelAliases.Count == 0 ? null : JsonSerializer.Serialize(r.ModelAliases, Json),
        ["ModelLimits"] = r.ModelLimits.Count == 0 ? null : JsonSerializer.Serialize(r.ModelLimits, Json),
        ["AllowedOrigins"] = r.AllowedOrigins.Count == 0 ? null : string.Join(' ', r.AllowedOrigins),
        ["SecretHash"] = r.SecretHash,
        ["PreviousSecretHash"] = r.PreviousSecretHash,
        ["PreviousSecretExpiresAt"] = r.PreviousSecretExpiresAt,
    };

    internal static KeyRecord FromEntity(TableEntity e)
    {
        var limits = e.GetString("Limits");
        var metadata = e.GetString("Metadata");
        var upstreams = e.GetString("AllowedUpstreams");
        var models = e.GetString("AllowedModels");
        var aliases = e.GetString("ModelAliases");
        var modelLimits = e.GetString("ModelLimits");
        var origins = e.GetString("AllowedOrigins");
        return new KeyRecord
        {
            Id = e.PartitionKey,
            Name = e.GetString("Name") ?? "",
            Owner = e.GetString("Owner"),
            Status = Enum.TryParse<KeyStatus>(e.GetString("Status"), out var status) ? status : KeyStatus.Disabled,
            CreatedAt = e.GetDateTimeOffset("CreatedAt") ?? DateTimeOffset.MinValue,
            ExpiresAt = e.GetDateTimeOffset("ExpiresAt"),
            AllowedUpstreams = string.IsNullOrEmpty(upstreams) ? [] : upstreams.Split(','),
            Limits = string.IsNullOrEmpty(limits) ? null : JsonSerializer.Deserialize<KeyLimits>(limits, Json),
            Metadata = string.IsNullOrEmpty(metadata) ? new Dictionary<string, string>() : JsonSerializer.Deserialize<Dictionary<string, string>>(metadata, Json) ?? [],
            AllowedModels = string.IsNullOrEmpty(models) ? [] : JsonSerializer.Deserialize<List<string>>(models, Json) ?? [],
            ModelAliases = string.IsNullOrEmpty(aliases) ? new Dictionary<string, string>()
                : new Dictionary<string, string>(JsonSerializer.Deserialize<Dictionary<string, string>>(aliases, Json) ?? [], StringComparer.OrdinalIgnoreCase),
            ModelLimits = string.IsNullOrEmpty(modelLimits) ? new Dictionary<string, KeyLimits>()
                : JsonSerializer.Deserialize<Dictionary<string, KeyLimits>>(modelLimits, Json) ?? [],
            AllowedOrigins = string.IsNullOrEmpty(origins) ? [] : origins.Split(' '),
            SecretHash = e.GetBinary("SecretHash") ?? [],
            PreviousSecretHash = e.GetBinary("PreviousSecretHash"),
            PreviousSecretExpiresAt = e.GetDateTimeOffset("PreviousSecretExpiresAt"),
            ETag = e.ETag.ToString(),
        };
    }
}
