namespace FuncProxy.Keys;

/// <summary>What an operator asks for when creating a key.</summary>
public sealed record KeyCreation
{
    public required string Name { get; init; }
    public string? Owner { get; init; }
    public IReadOnlyList<string> AllowedUpstreams { get; init; } = [];
    public DateTimeOffset? ExpiresAt { get; init; }
    public KeyLimits? Limits { get; init; }
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();
}

/// <summary>A newly minted key: the only moment its full value exists outside the client.</summary>
public sealed record IssuedKey(string Value, KeyRecord Record);

/// <summary>Creates and changes key records in the key store: the operations behind the CLI and the management API.</summary>
public sealed class KeyLifecycle
{
    private readonly KeyStore _store;
    private readonly KeyRecordCache _cache;
    private readonly TimeProvider _time;

    public KeyLifecycle(KeyStore store, KeyRecordCache cache, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(time);
        _store = store;
        _cache = cache;
        _time = time;
    }

    public async Task<IssuedKey> CreateAsync(KeyCreation request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        // An id collision (80 random bits) is next to impossible; a fresh id is drawn if it ever happens.
        for (var attempt = 0; attempt < 5; attempt++)
        {
            var key = ApiKey.Generate();
            var record = new KeyRecord
            {
                Id = key.Id,
                Name = request.Name,
                Owner = request.Owner,
                CreatedAt = _time.GetUtcNow(),
                ExpiresAt = request.ExpiresAt,
                AllowedUpstreams = request.AllowedUpstreams,
                Limits = request.Limits,
                Metadata = request.Metadata,
                SecretHash = KeyHasher.Hash(key.Id, key.Secret),
            };
            if (await _store.TryAddAsync(record, cancellationToken).ConfigureAwait(false))
            {
                _cache.Invalidate(key.Id);
                return new IssuedKey(key.Value, record);
            }
        }
        throw new InvalidOperationException("Could not find a free key id.");
    }

    /// <summary>Marks a key revoked (for good). Null when there is no such key.</summary>
    public Task<KeyRecord?> RevokeAsync(string id, CancellationToken cancellationToken = default) =>
        ChangeAsync(id, r => r with { Status = KeyStatus.Revoked, PreviousSecretHash = null, PreviousSecretExpiresAt = null }, cancellationToken);

    /// <summary>Reads, changes and writes back a record with optimistic concurrency, retrying on a concurrent change.</summary>
    public async Task<KeyRecord?> ChangeAsync(string id, Func<KeyRecord, KeyRecord> change, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(change);
        for (var attempt = 0; attempt < 5; attempt++)
        {
            var current = await _store.FindAsync(id, cancellationToken).ConfigureAwait(false);
            if (current is null)
            {
                return null;
            }
            var changed = change(current);
            if (await _store.TryReplaceAsync(changed, cancellationToken).ConfigureAwait(false))
            {
                _cache.Invalidate(id);
                return await _store.FindAsync(id, cancellationToken).ConfigureAwait(false) ?? changed;
            }
        }
        throw new InvalidOperationException($"Key {id} kept changing concurrently; try again.");
    }
}
