using System.Security.Cryptography;
using System.Text;
using Azure;
using Azure.Data.Tables;

namespace FuncProxy.Admin;

/// <summary>What an <c>Idempotency-Key</c> was first used for.</summary>
public sealed record IdempotencyClaim(string KeyId, string RequestHash, bool IsNew);

/// <summary>
/// Remembers, for <see cref="Window"/>, which key id a create with a given <c>Idempotency-Key</c> minted, so a retried
/// create returns that key's record instead of minting a second key. Rows live in the <c>keys</c> table under the
/// partition <c>idempotency</c>, RowKey = SHA-256 of (actor, idempotency key): scoped per caller, and the caller's
/// header value is not stored. Only the key id and a hash of the request body are kept: never the key, so a replay
/// cannot return it (see docs/operations.md).
/// </summary>
public sealed class IdempotencyStore
{
    internal const string Partition = "idempotency";
    public static readonly TimeSpan Window = TimeSpan.FromHours(24);

    private readonly FuncProxyTables _tables;
    private readonly TimeProvider _time;

    public IdempotencyStore(FuncProxyTables tables, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(tables);
        ArgumentNullException.ThrowIfNull(time);
        _tables = tables;
        _time = time;
    }

    /// <summary>A usable header value: 1-255 visible ASCII characters.</summary>
    public static bool IsValidKey(string? value) => value is { Length: > 0 and <= 255 } && value.All(c => c is > ' ' and < (char)127);

    public static string HashRequest(ReadOnlySpan<byte> body) => Convert.ToHexStringLower(SHA256.HashData(body));

    /// <summary>
    /// Claims <paramref name="idempotencyKey"/> for minting <paramref name="newKeyId"/>; if it was claimed already (within
    /// the window), returns that claim instead (<see cref="IdempotencyClaim.IsNew"/> false).
    /// </summary>
    public async Task<IdempotencyClaim> ClaimAsync(string actor, string idempotencyKey, string requestHash, string newKeyId, CancellationToken cancellationToken = default)
    {
        var table = await _tables.GetKeysAsync(cancellationToken).ConfigureAwait(false);
        var rowKey = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(actor + "\n" + idempotencyKey)));
        var entity = new TableEntity(Partition, rowKey)
        {
            ["KeyId"] = newKeyId,
            ["RequestHash"] = requestHash,
            ["CreatedAt"] = _time.GetUtcNow(),
        };
        for (var attempt = 0; attempt < 3; attempt++)
        {
            try
            {
                await table.AddEntityAsync(entity, cancellationToken).ConfigureAwait(false);
                return new(newKeyId, requestHash, IsNew: true);
            }
            catch (RequestFailedException e) when (e.Status == 409)
            {
            }
            var existing = await table.GetEntityIfExistsAsync<TableEntity>(Partition, rowKey, cancellationToken: cancellationToken).ConfigureAwait(false);
            if (!existing.HasValue)
            {
                continue;
            }
            var row = existing.Value!;
            if (row.GetDateTimeOffset("CreatedAt") is { } created && _time.GetUtcNow() - created > Window)
            {
                // Expired: the header value may be used afresh.
                try
                {
                    await table.UpdateEntityAsync(entity, row.ETag, TableUpdateMode.Replace, cancellationToken).ConfigureAwait(false);
                    return new(newKeyId, requestHash, IsNew: true);
                }
                catch (RequestFailedException e) when (e.Status is 412 or 404)
                {
                    continue;
                }
            }
            return new(row.GetString("KeyId") ?? "", row.GetString("RequestHash") ?? "", IsNew: false);
        }
        throw new InvalidOperationException("The idempotency key kept changing concurrently; try again.");
    }

    /// <summary>Forgets a claim whose create failed, so a retry can succeed.</summary>
    public async Task ReleaseAsync(string actor, string idempotencyKey, CancellationToken cancellationToken = default)
    {
        var table = await _tables.GetKeysAsync(cancellationToken).ConfigureAwait(false);
        var rowKey = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(actor + "\n" + idempotencyKey)));
        await table.DeleteEntityAsync(Partition, rowKey, ETag.All, cancellationToken).ConfigureAwait(false);
    }
}
