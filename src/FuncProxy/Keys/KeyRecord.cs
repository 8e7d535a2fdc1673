namespace FuncProxy.Keys;

/// <summary>Whether a key may be used.</summary>
public enum KeyStatus
{
    Active,
    Disabled,
    Revoked,
}

/// <summary>
/// Per-key limit overrides; a null field falls back to the configured default (<c>FuncProxy:Limits</c>), and 0 lifts that
/// limit for this key. Several policies can be set at once and the tightest decides.
/// </summary>
public sealed record KeyLimits
{
    public long? RequestsPerSecond { get; init; }
    public long? RequestsPerMinute { get; init; }
    public long? RequestsPerHour { get; init; }
    public long? TokensPerMinute { get; init; }
    public long? RequestsPerDay { get; init; }
    public long? RequestsPerMonth { get; init; }
    public long? TokensPerDay { get; init; }
    public long? TokensPerMonth { get; init; }
}

/// <summary>A client key as stored: everything but the secret, of which only a hash is kept.</summary>
public sealed record KeyRecord
{
    /// <summary>Wildcard for <see cref="AllowedUpstreams"/>: every configured upstream.</summary>
    public const string AnyUpstream = "*";

    public required string Id { get; init; }
    public required string Name { get; init; }
    public string? Owner { get; init; }
    public KeyStatus Status { get; init; } = KeyStatus.Active;
    public required DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? ExpiresAt { get; init; }
    public IReadOnlyList<string> AllowedUpstreams { get; init; } = [];
    public KeyLimits? Limits { get; init; }
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();

    /// <summary>SHA-256 of the current secret (see <see cref="KeyHasher"/>).</summary>
    public required byte[] SecretHash { get; init; }

    /// <summary>After a rotation: the previous secret's hash, accepted until <see cref="PreviousSecretExpiresAt"/>.</summary>
    public byte[]? PreviousSecretHash { get; init; }
    public DateTimeOffset? PreviousSecretExpiresAt { get; init; }

    /// <summary>Storage concurrency token; null for a record not yet stored.</summary>
    public string? ETag { get; init; }

    public bool AllowsUpstream(string upstream) =>
        AllowedUpstreams.Any(u => u == AnyUpstream || string.Equals(u, upstream, StringComparison.OrdinalIgnoreCase));

    /// <summary>True when a request at <paramref name="now"/> may use this key at all (status and expiry).</summary>
    public bool IsUsableAt(DateTimeOffset now) => Status == KeyStatus.Active && (ExpiresAt is null || now < ExpiresAt);

    /// <summary>Checks a presented secret against the current hash and, during a rotation's grace period, the previous one; constant time.</summary>
    public bool SecretMatches(string secret, DateTimeOffset now)
    {
        var current = KeyHasher.Matches(Id, secret, SecretHash);
        var previous = PreviousSecretHash is not null
            && KeyHasher.Matches(Id, secret, PreviousSecretHash)
            && PreviousSecretExpiresAt is { } until && now < until;
        return current | previous;
    }
}
