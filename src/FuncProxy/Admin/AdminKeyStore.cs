using Azure;
using Azure.Data.Tables;
using FuncProxy.Keys;

namespace FuncProxy.Admin;

/// <summary>An admin key as stored: its secret only as a hash (under its own hash domain).</summary>
public sealed record AdminKeyRecord
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public required DateTimeOffset CreatedAt { get; init; }
    public string? CreatedBy { get; init; }
    public DateTimeOffset? RevokedAt { get; init; }
    public required byte[] SecretHash { get; init; }

    public bool IsRevoked => RevokedAt is not null;

    public bool SecretMatches(string secret) => KeyHasher.Matches(Id, secret, SecretHash, KeyHasher.AdminDomain);
}

/// <summary>A newly minted admin key: shown once.</summary>
public sealed record IssuedAdminKey(string Value, AdminKeyRecord Record);

/// <summary>
/// Admin keys (<c>fpa_...</c>) in the <c>keys</c> table under the one partition <c>admin</c>, RowKey = admin key id: client
/// key partitions are 16-character ids, so the two never meet, and listing admin keys is one partition query. They are
/// created and revoked only with the CLI (the operator's storage credentials), so a stolen admin key cannot mint more.
/// Every admin call reads its record: admin calls are rare, and a revoked admin key stops at once.
/// </summary>
public sealed class AdminKeyStore
{
    internal const string Partition = "admin";
    private readonly FuncProxyTables _tables;
    private readonly TimeProvider _time;

    public AdminKeyStore(FuncProxyTables tables, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(tables);
        ArgumentNullException.ThrowIfNull(time);
        _tables = tables;
        _time = time;
    }

    public async Task<IssuedAdminKey> CreateAsync(string name, string? createdBy, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var table = await _tables.GetKeysAsync(cancellationToken).ConfigureAwait(false);
        for (var attempt = 0; attempt < 5; attempt++)
        {
            var key = ApiKey.GenerateAdmin();
            var record = new AdminKeyRecord
            {
                Id = key.Id,
                Name = name,
                CreatedAt = _time.GetUtcNow(),
                CreatedBy = createdBy,
                SecretHash = KeyHasher.Hash(key.Id, key.Secret, KeyHasher.AdminDomain),
            };
            try
            {
                await table.AddEntityAsync(ToEntity(record), cancellationToken).ConfigureAwait(false);
                return new IssuedAdminKey(key.Value, record);
            }
            catch (RequestFailedException e) when (e.Status == 409)
            {
            }
        }
        throw new InvalidOperationException("Could not find a free admin key id.");
    }

    public async Task<AdminKeyRecord?> FindAsync(string id, CancellationToken cancellationToken = default)
    {
        if (!ApiKey.IsValidId(id))
        {
            return null;
        }
        var table = await _tables.GetKeysAsync(cancellationToken).ConfigureAwait(false);
        var response = await table.GetEntityIfExistsAsync<TableEntity>(Partition, id, cancellationToken: cancellationToken).ConfigureAwait(false);
        return response.HasValue ? FromEntity(response.Value!) : null;
    }

    public async Task<IReadOnlyList<AdminKeyRecord>> ListAsync(CancellationToken cancellationToken = default)
    {
        var table = await _tables.GetKeysAsync(cancellationToken).ConfigureAwait(false);
        var records = new List<AdminKeyRecord>();
        await foreach (var e in table.QueryAsync<TableEntity>(TableClient.CreateQueryFilter($"PartitionKey eq {Partition}"), cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            records.Add(FromEntity(e));
        }
        return records;
    }

    /// <summary>Revokes an admin key for good; null when there is none. Revoking twice keeps the first time.</summary>
    public async Task<AdminKeyRecord?> RevokeAsync(string id, CancellationToken cancellationToken = default)
    {
        var current = await FindAsync(id, cancellationToken).ConfigureAwait(false);
        if (current is null || current.IsRevoked)
        {
            return current;
        }
        var revoked = current with { RevokedAt = _time.GetUtcNow() };
        var table = await _tables.GetKeysAsync(cancellationToken).ConfigureAwait(false);
        await table.UpdateEntityAsync(ToEntity(revoked), ETag.All, TableUpdateMode.Replace, cancellationToken).ConfigureAwait(false);
        return revoked;
    }

    private static TableEntity ToEntity(AdminKeyRecord r) => new(Partition, r.Id)
    {
        ["Name"] = r.Name,
        ["CreatedAt"] = r.CreatedAt,
        ["CreatedBy"] = r.CreatedBy,
        ["RevokedAt"] = r.RevokedAt,
        ["SecretHash"] = r.SecretHash,
    };

    private static AdminKeyRecord FromEntity(TableEntity e) => new()
    {
        Id = e.RowKey,
        Name = e.GetString("Name") ?? "",
        CreatedAt = e.GetDateTimeOffset("CreatedAt") ?? DateTimeOffset.MinValue,
        CreatedBy = e.GetString("CreatedBy"),
        RevokedAt = e.GetDateTimeOffset("RevokedAt"),
        SecretHash = e.GetBinary("SecretHash") ?? [],
    };
}
