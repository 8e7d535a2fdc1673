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
    public IReadOnlyList<string> AllowedModels { get; init; } = [];
    public IReadOnlyDictionary<string, string> ModelAliases { get; init; } = new Dictionary<string, string>();
    public IReadOnlyDictionary<string, KeyLimits> ModelLimits { get; init; } = new Dictionary<string, KeyLimits>();
    public IReadOnlyList<string> AllowedOrigins { get; init; } = [];
}

/// <summary>A newly minted key: the only moment its full value exists outside the client.</summary>
public sealed record IssuedKey(string Value, KeyRecord Record);

/// <summary>A new value for an optional field; <c>null</c> as the <see cref="Value"/> clears the field.</summary>
public readonly record struct Change<T>(T Value);

/// <summary>
/// A JSON merge patch (RFC 7396) of an object of named values, such as a key's limits or metadata: members in
/// <see cref="Set"/> are added or replaced, members named in <see cref="Remove"/> are dropped (the patch gave them
/// <c>null</c>), and members named in neither stay as they are. <see cref="RemoveAll"/> (the patch was <c>null</c>)
/// empties the object before <see cref="Set"/> applies.
/// </summary>
public sealed record MapPatch<T>
{
    /// <summary>The patch <c>null</c>: every member goes.</summary>
    public static MapPatch<T> Clear { get; } = new() { RemoveAll = true };

    public bool RemoveAll { get; init; }
    public IReadOnlyDictionary<string, T> Set { get; init; } = new Dictionary<string, T>(StringComparer.Ordinal);
    public IReadOnlyCollection<string> Remove { get; init; } = [];

    /// <summary>True when the patch changes nothing whatever the target (<c>{}</c>).</summary>
    public bool IsEmpty => !RemoveAll && Set.Count == 0 && Remove.Count == 0;

    /// <summary>The patched members, in the target's order with new members last.</summary>
    public Dictionary<string, T> ApplyTo(IEnumerable<KeyValuePair<string, T>> target)
    {
        ArgumentNullException.ThrowIfNull(target);
        var result = new Dictionary<string, T>(StringComparer.Ordinal);
        if (!RemoveAll)
        {
            foreach (var (name, value) in target)
            {
                result[name] = value;
            }
        }
        foreach (var name in Remove)
        {
            result.Remove(name);
        }
        foreach (var (name, value) in Set)
        {
            result[name] = value;
        }
        return result;
    }
}

/// <summary>
/// What an operator asks to change on a key, as a JSON merge patch (RFC 7396): a null property leaves that field as it
/// is; <see cref="Limits"/> and <see cref="Metadata"/> merge member by member.
/// </summary>
public sealed record KeyUpdate
{
    public string? Name { get; init; }
    public Change<string?>? Owner { get; init; }
    /// <summary>Replaces the whole list (a JSON array is replaced, never merged).</summary>
    public IReadOnlyList<string>? AllowedUpstreams { get; init; }
    /// <summary>Limit overrides by API name (<c>requestsPerMinute</c>, ...): a removed override falls back to the default.</summary>
    public MapPatch<long>? Limits { get; init; }
    public Change<DateTimeOffset?>? ExpiresAt { get; init; }
    /// <summary>Metadata entries by name.</summary>
    public MapPatch<string>? Metadata { get; init; }
    /// <summary>Replaces the whole model allow-list (empty: any model).</summary>
    public IReadOnlyList<string>? AllowedModels { get; init; }
    /// <summary>Replaces all model aliases.</summary>
    public IReadOnlyDictionary<string, string>? ModelAliases { get; init; }
    /// <summary>Replaces all per-model limits (an object of patterns is replaced as a whole, not merged).</summary>
    public IReadOnlyDictionary<string, KeyLimits>? ModelLimits { get; init; }
    /// <summary>Replaces the browser origins the key may be used from (empty: any its upstreams allow).</summary>
    public IReadOnlyList<string>? AllowedOrigins { get; init; }

    /// <summary>The names of the fields this update touches (for the audit log: names only, never values).</summary>
    public IReadOnlyList<string> FieldNames()
    {
        var names = new List<string>();
        if (Name is not null) { names.Add("name"); }
        if (Owner is not null) { names.Add("owner"); }
        if (AllowedUpstreams is not null) { names.Add("allowedUpstreams"); }
        if (Limits is not null) { names.Add("limits"); }
        if (ExpiresAt is not null) { names.Add("expiresAt"); }
        if (Metadata is not null) { names.Add("metadata"); }
        if (AllowedModels is not null) { names.Add("allowedModels"); }
        if (ModelAliases is not null) { names.Add("modelAliases"); }
        if (ModelLimits is not null) { names.Add("modelLimits"); }
        if (AllowedOrigins is not null) { names.Add("allowedOrigins"); }
        return names;
    }
}

/// <summary>A change that is well-formed on its own but not on the key it applies to (e.g. too many metadata entries once merged): 400.</summary>
public sealed class KeyUpdateRejectedException(string field, string message) : Exception(message)
{
    /// <summary>The API field at fault, e.g. <c>metadata</c>.</summary>
    public string Field { get; } = field;
}

/// <summary>The key's state does not allow the change (e.g. enabling a revoked key): 409 for the management API.</summary>
public sealed class KeyStateConflictException(string message) : Exception(message);

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

    public Task<IssuedKey> CreateAsync(KeyCreation request, CancellationToken cancellationToken = default) =>
        CreateAsync(request, null, cancellationToken);

    /// <summary>Creates a key; with <paramref name="key"/> (drawn ahead, e.g. to reserve its id for an idempotent retry) under that id.</summary>
    public async Task<IssuedKey> CreateAsync(KeyCreation request, ApiKey? key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        // An id collision (80 random bits) is next to impossible; a fresh id is drawn if it ever happens.
        for (var attempt = 0; attempt < 5; attempt++)
        {
            var drawn = key ?? ApiKey.Generate();
            var record = new KeyRecord
            {
                Id = drawn.Id,
                Name = request.Name,
                Owner = request.Owner,
                CreatedAt = _time.GetUtcNow(),
                ExpiresAt = request.ExpiresAt,
                AllowedUpstreams = request.AllowedUpstreams,
                Limits = request.Limits,
                Metadata = request.Metadata,
                AllowedModels = request.AllowedModels,
                ModelAliases = request.ModelAliases,
                ModelLimits = request.ModelLimits,
                AllowedOrigins = request.AllowedOrigins,
                SecretHash = KeyHasher.Hash(drawn.Id, drawn.Secret),
            };
            if (await _store.TryAddAsync(record, cancellationToken).ConfigureAwait(false))
            {
                _cache.Invalidate(drawn.Id);
                return new IssuedKey(drawn.Value, record);
            }
            key = null;
        }
        throw new InvalidOperationException("Could not find a free key id.");
    }

    /// <summary>
    /// Changes a key's descriptive fields, upstreams, limits or expiry, merging limits and metadata into the stored record
    /// (read and written under its ETag, so a concurrent change is never lost). Null when there is no such key.
    /// </summary>
    /// <exception cref="KeyUpdateRejectedException">The merged record would break a rule (too many metadata entries).</exception>
    public Task<KeyRecord?> UpdateAsync(string id, KeyUpdate update, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(update);
        return ChangeAsync(id, r =>
        {
            RefuseIfRevoked(r, "changed");
            return r with
            {
                Name = update.Name ?? r.Name,
                Owner = update.Owner is { } owner ? owner.Value : r.Owner,
                AllowedUpstreams = update.AllowedUpstreams ?? r.AllowedUpstreams,
                Limits = update.Limits is { } limits ? KeyLimits.FromOverrides(limits.ApplyTo(r.Limits?.Overrides() ?? [])) : r.Limits,
                ExpiresAt = update.ExpiresAt is { } expires ? expires.Value : r.ExpiresAt,
                Metadata = update.Metadata is { } metadata ? MergeMetadata(r.Metadata, metadata) : r.Metadata,
                AllowedModels = update.AllowedModels ?? r.AllowedModels,
                ModelAliases = update.ModelAliases ?? r.ModelAliases,
                ModelLimits = update.ModelLimits ?? r.ModelLimits,
                AllowedOrigins = update.AllowedOrigins ?? r.AllowedOrigins,
            };
        }, cancellationToken);
    }

    private static Dictionary<string, string> MergeMetadata(IReadOnlyDictionary<string, string> current, MapPatch<string> patch)
    {
        var merged = patch.ApplyTo(current);
        if (merged.Count > KeyRecord.MaxMetadataEntries)
        {
            throw new KeyUpdateRejectedException("metadata", $"At most {KeyRecord.MaxMetadataEntries} entries: the key has {current.Count}, and this change would make {merged.Count}.");
        }
        return merged;
    }

    /// <summary>Disables (refused until enabled again) or re-enables a key; a revoked key stays revoked. Null when there is no such key.</summary>
    public Task<KeyRecord?> SetEnabledAsync(string id, bool enabled, CancellationToken cancellationToken = default) =>
        ChangeAsync(id, r =>
        {
            RefuseIfRevoked(r, enabled ? "enabled" : "disabled");
            return r with { Status = enabled ? KeyStatus.Active : KeyStatus.Disabled };
        }, cancellationToken);

    /// <summary>
    /// Gives the key a new secret under the same id; the old secret keeps working for <paramref name="gracePeriod"/>
    /// (zero: it stops at once). Null when there is no such key.
    /// </summary>
    public async Task<IssuedKey?> RotateAsync(string id, TimeSpan gracePeriod, CancellationToken cancellationToken = default)
    {
        if (!ApiKey.IsValidId(id))
        {
            return null;
        }
        var key = ApiKey.GenerateFor(id);
        var rotated = await ChangeAsync(id, r =>
        {
            RefuseIfRevoked(r, "rotated");
            return r with
            {
                SecretHash = KeyHasher.Hash(id, key.Secret),
                PreviousSecretHash = gracePeriod > TimeSpan.Zero ? r.SecretHash : null,
                PreviousSecretExpiresAt = gracePeriod > TimeSpan.Zero ? _time.GetUtcNow() + gracePeriod : null,
            };
        }, cancellationToken).ConfigureAwait(false);
        return rotated is null ? null : new IssuedKey(key.Value, rotated);
    }

    private static void RefuseIfRevoked(KeyRecord record, string verb)
    {
        if (record.Status == KeyStatus.Revoked)
        {
            throw new KeyStateConflictException($"The key is revoked and cannot be {verb}.");
        }
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
            if (await _store.TryReplaceAsync(change(current), cancellationToken).ConfigureAwait(false) is { } stored)
            {
                _cache.Invalidate(id);
                return stored;
            }
        }
        throw new InvalidOperationException($"Key {id} kept changing concurrently; try again.");
    }
}
