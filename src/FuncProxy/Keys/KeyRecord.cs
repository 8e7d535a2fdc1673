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
    // The management API's member names, in the order the API and the CLI list them.
    private static readonly (string Name, Func<KeyLimits, long?> Get, Func<KeyLimits, long?, KeyLimits> Set)[] Members =
    [
        ("requestsPerSecond", l => l.RequestsPerSecond, (l, v) => l with { RequestsPerSecond = v }),
        ("requestsPerMinute", l => l.RequestsPerMinute, (l, v) => l with { RequestsPerMinute = v }),
        ("requestsPerHour", l => l.RequestsPerHour, (l, v) => l with { RequestsPerHour = v }),
        ("tokensPerMinute", l => l.TokensPerMinute, (l, v) => l with { TokensPerMinute = v }),
        ("requestsPerDay", l => l.RequestsPerDay, (l, v) => l with { RequestsPerDay = v }),
        ("requestsPerMonth", l => l.RequestsPerMonth, (l, v) => l with { RequestsPerMonth = v }),
        ("tokensPerDay", l => l.TokensPerDay, (l, v) => l with { TokensPerDay = v }),
        ("tokensPerMonth", l => l.TokensPerMonth, (l, v) => l with { TokensPerMonth = v }),
        // Budgets: the API and CLI show and take US dollars; here (and in storage) their values are micro-dollars.
        ("budgetPerDayUsd", l => l.BudgetPerDayMicroUsd, (l, v) => l with { BudgetPerDayMicroUsd = v }),
        ("budgetPerMonthUsd", l => l.BudgetPerMonthMicroUsd, (l, v) => l with { BudgetPerMonthMicroUsd = v }),
    ];

    /// <summary>True for the money budgets, whose API values are US dollars and whose values here are micro-dollars.</summary>
    public static bool IsBudget(string name) => name is "budgetPerDayUsd" or "budgetPerMonthUsd";

    public long? RequestsPerSecond { get; init; }
    public long? RequestsPerMinute { get; init; }
    public long? RequestsPerHour { get; init; }
    public long? TokensPerMinute { get; init; }
    public long? RequestsPerDay { get; init; }
    public long? RequestsPerMonth { get; init; }
    public long? TokensPerDay { get; init; }
    public long? TokensPerMonth { get; init; }

    /// <summary>The management API's names of the limits (<c>requestsPerMinute</c>, ...).</summary>
    public static IReadOnlyList<string> Names { get; } = Members.Select(m => m.Name).ToArray();

    public static bool IsName(string name) => Members.Any(m => m.Name == name);

    /// <summary>Each limit's API name and value (null: the configured default applies).</summary>
    public IEnumerable<(string Name, long? Value)> Values() => Members.Select(m => (m.Name, m.Get(this)));

    /// <summary>The limits this key overrides, by API name.</summary>
    public IEnumerable<KeyValuePair<string, long>> Overrides() =>
        Members.Where(m => m.Get(this) is not null).Select(m => KeyValuePair.Create(m.Name, m.Get(this)!.Value));

    /// <summary>Limits from overrides by API name; null when there are none (every limit is the default).</summary>
    public static KeyLimits? FromOverrides(IEnumerable<KeyValuePair<string, long>> overrides)
    {
        ArgumentNullException.ThrowIfNull(overrides);
        KeyLimits? limits = null;
        foreach (var (name, value) in overrides)
        {
            var member = Members.FirstOrDefault(m => m.Name == name);
            if (member.Set is null)
            {
                throw new ArgumentException($"'{name}' is not a limit.", nameof(overrides));
            }
            limits = member.Set(limits ?? new KeyLimits(), value);
        }
        return limits;
    }

    /// <summary>Daily spending limit (UTC day) in micro-dollars (1 USD = 1,000,000); the API and CLI show it in dollars.</summary>
    public long? BudgetPerDayMicroUsd { get; init; }

    /// <summary>Monthly spending limit (UTC calendar month) in micro-dollars.</summary>
    public long? BudgetPerMonthMicroUsd { get; init; }
}

/// <summary>A client key as stored: everything but the secret, of which only a hash is kept.</summary>
public sealed record KeyRecord
{
    /// <summary>Wildcard for <see cref="AllowedUpstreams"/>: every configured upstream.</summary>
    public const string AnyUpstream = "*";

    /// <summary>The most <see cref="Metadata"/> entries a key may carry.</summary>
    public const int MaxMetadataEntries = 20;

    public required string Id { get; init; }
    public required string Name { get; init; }
    public string? Owner { get; init; }
    public KeyStatus Status { get; init; } = KeyStatus.Active;
    public required DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? ExpiresAt { get; init; }
    public IReadOnlyList<string> AllowedUpstreams { get; init; } = [];
    public KeyLimits? Limits { get; init; }

    /// <summary>Models (globs with <c>*</c> and <c>?</c>, case-insensitive) this key may call, after aliases apply; empty: any model.</summary>
    public IReadOnlyList<string> AllowedModels { get; init; } = [];

    /// <summary>A client's model name (case-insensitive) and the model sent upstream in its place.</summary>
    public IReadOnlyDictionary<string, string> ModelAliases { get; init; } = new Dictionary<string, string>();

    /// <summary>
    /// Limits for calls to the models matching a glob (the longest matching pattern applies), on top of <see cref="Limits"/>;
    /// every model the pattern matches shares its counters. No configured defaults apply here.
    /// </summary>
    public IReadOnlyDictionary<string, KeyLimits> ModelLimits { get; init; } = new Dictionary<string, KeyLimits>();

    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();

    /// <summary>
    /// Browser origins (as <c>Origin</c> carries them, lower-case) this key may be used from; empty: any origin its upstreams'
    /// CORS policies allow. A call bearing another <c>Origin</c> is refused (see <see cref="Proxying.CrossOrigin"/>).
    /// </summary>
    public IReadOnlyList<string> AllowedOrigins { get; init; } = [];

    /// <summary>SHA-256 of the current secret (see <see cref="KeyHasher"/>).</summary>
    public required byte[] SecretHash { get; init; }

    /// <summary>After a rotation: the previous secret's hash, accepted until <see cref="PreviousSecretExpiresAt"/>.</summary>
    public byte[]? PreviousSecretHash { get; init; }
    public DateTimeOffset? PreviousSecretExpiresAt { get; init; }

    /// <summary>Storage concurrency token; null for a record not yet stored.</summary>
    public string? ETag { get; init; }

    public bool AllowsUpstream(string upstream)
    {
        // Index loops, not lambdas capturing the argument nor boxed enumerators: these run on every call.
        for (var i = 0; i < AllowedUpstreams.Count; i++)
        {
            var u = AllowedUpstreams[i];
            if (u == AnyUpstream || string.Equals(u, upstream, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The model sent upstream for what the client asked: its alias target, or the name itself.</summary>
    public string ResolveModel(string model)
    {
        foreach (var (from, to) in ModelAliases)
        {
            if (string.Equals(from, model, StringComparison.OrdinalIgnoreCase))
            {
                return to;
            }
        }
        return model;
    }

    /// <summary>True when the allow-list is empty or a pattern on it matches <paramref name="model"/> (the model sent, after aliases).</summary>
    public bool AllowsModel(string model)
    {
        if (AllowedModels.Count == 0)
        {
            return true;
        }
        for (var i = 0; i < AllowedModels.Count; i++)
        {
            if (ModelPattern.Matches(AllowedModels[i], model))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>True when a request at <paramref name="now"/> may use this key at all (status and expiry).</summary>
    public bool IsUsableAt(DateTimeOffset now) => Status == KeyStatus.Active && (ExpiresAt is null || now < ExpiresAt);

    /// <summary>Checks a presented secret against the current hash and, during a rotation's grace period, the previous one; constant time.</summary>
    public bool SecretMatches(ReadOnlySpan<char> secret, DateTimeOffset now)
    {
        var current = KeyHasher.Matches(Id, secret, SecretHash);
        var previous = PreviousSecretHash is not null
            && KeyHasher.Matches(Id, secret, PreviousSecretHash)
            && PreviousSecretExpiresAt is { } until && now < until;
        return current | previous;
    }
}
