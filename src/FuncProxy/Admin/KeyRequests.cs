using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using FuncProxy.Keys;
using FuncProxy.Proxying;

namespace FuncProxy.Admin;

/// <summary>One bad field of a request: the <c>errors</c> extension of a 400 problem lists these.</summary>
public sealed record FieldError(
    [property: JsonPropertyName("field")] string Field,
    [property: JsonPropertyName("message")] string Message);

/// <summary>
/// Parses and checks management requests field by field, collecting every problem rather than stopping at the first.
/// The same rules apply to the CLI, which builds the typed requests from its options. Names and metadata are data:
/// stored as given (length-limited, no control characters), never interpreted.
/// </summary>
public sealed partial class KeyRequests
{
    public const int MaxNameLength = 100;
    public const int MaxOwnerLength = 100;
    public const int MaxUpstreams = 50;
    public const int MaxMetadataEntries = KeyRecord.MaxMetadataEntries;
    public const int MaxMetadataValueLength = 256;
    public const long MaxLimitValue = 1_000_000_000_000;
    public static readonly TimeSpan MaxLifetime = TimeSpan.FromDays(3660);

    /// <summary>Largest daily or monthly budget, in US dollars (1e12 micro-dollars, the largest limit value).</summary>
    public const decimal MaxBudgetUsd = MaxLimitValue / 1_000_000m;
    public const int MaxModelEntries = 100;
    public const int MaxOriginEntries = 20;

    private static readonly string[] CreateFields = ["name", "owner", "allowedUpstreams", "expiresAt", "limits", "metadata", "allowedModels", "modelAliases", "modelLimits", "allowedOrigins"];

    private readonly UpstreamCatalog _catalog;
    private readonly TimeProvider _time;

    public KeyRequests(UpstreamCatalog catalog, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(time);
        _catalog = catalog;
        _time = time;
    }

    /// <summary>The JSON field names of <see cref="KeyLimits"/>.</summary>
    public static IEnumerable<string> LimitNames => KeyLimits.Names;

    public KeyCreation? ParseCreation(JsonElement body, List<FieldError> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (body.ValueKind != JsonValueKind.Object)
        {
            errors.Add(new("$", "The body must be a JSON object."));
            return null;
        }
        RefuseUnknown(body, CreateFields, "", errors);
        var name = String(body, "name", errors, required: true);
        var owner = String(body, "owner", errors, required: false);
        var upstreams = StringArray(body, "allowedUpstreams", errors, required: true);
        var expires = Date(body, "expiresAt", errors);
        var limits = body.TryGetProperty("limits", out var l) ? Limits(l, errors) : null;
        var metadata = body.TryGetProperty("metadata", out var m) ? Metadata(m, errors) : null;
        var models = body.TryGetProperty("allowedModels", out var am) ? Models(am, errors) : null;
        var aliases = body.TryGetProperty("modelAliases", out var ma) ? Aliases(ma, errors) : null;
        var modelLimits = body.TryGetProperty("modelLimits", out var ml) ? ModelLimits(ml, errors) : null;
        var origins = body.TryGetProperty("allowedOrigins", out var ao) ? Origins(ao, errors) : null;
        var creation = new KeyCreation
        {
            AllowedOrigins = origins ?? [],
            AllowedModels = models ?? [],
            ModelAliases = aliases ?? new Dictionary<string, string>(),
            ModelLimits = modelLimits ?? new Dictionary<string, KeyLimits>(),
            Name = name ?? "",
            Owner = owner,
            AllowedUpstreams = upstreams ?? [],
            ExpiresAt = expires?.Value,
            Limits = limits?.Value,
            Metadata = metadata ?? new Dictionary<string, string>(),
        };
        AddRuleErrors(errors, e => Validate(creation, e));
        return errors.Count == 0 ? creation : null;
    }

    /// <summary>
    /// A JSON merge patch (RFC 7396): absent fields stay; <c>null</c> clears owner and expiry, and removes every limit
    /// override or metadata entry; <c>limits</c> and <c>metadata</c> objects merge member by member, a member's
    /// <c>null</c> removing that override or entry; <c>allowedUpstreams</c> (an array) is replaced whole.
    /// </summary>
    public KeyUpdate? ParseUpdate(JsonElement body, List<FieldError> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (body.ValueKind != JsonValueKind.Object)
        {
            errors.Add(new("$", "The body must be a JSON object."));
            return null;
        }
        RefuseUnknown(body, CreateFields, "", errors);
        var update = new KeyUpdate
        {
            Name = body.TryGetProperty("name", out _) ? String(body, "name", errors, required: true) : null,
            Owner = body.TryGetProperty("owner", out _) ? new Change<string?>(String(body, "owner", errors, required: false)) : null,
            AllowedUpstreams = body.TryGetProperty("allowedUpstreams", out _) ? StringArray(body, "allowedUpstreams", errors, required: true) : null,
            ExpiresAt = body.TryGetProperty("expiresAt", out _) ? new Change<DateTimeOffset?>(Date(body, "expiresAt", errors)?.Value) : null,
            Limits = body.TryGetProperty("limits", out var l) ? LimitsPatch(l, errors) : null,
            Metadata = body.TryGetProperty("metadata", out var m) ? MetadataPatch(m, errors) : null,
            // Replaced whole (like allowedUpstreams): an allow-list, an alias map and per-model limits are read as one rule set.
            AllowedModels = body.TryGetProperty("allowedModels", out var am) ? Models(am, errors) ?? [] : null,
            ModelAliases = body.TryGetProperty("modelAliases", out var ma) ? Aliases(ma, errors) ?? new Dictionary<string, string>() : null,
            ModelLimits = body.TryGetProperty("modelLimits", out var ml) ? ModelLimits(ml, errors) ?? new Dictionary<string, KeyLimits>() : null,
            AllowedOrigins = body.TryGetProperty("allowedOrigins", out var ao) ? Origins(ao, errors) ?? [] : null,
        };
        if (errors.Count == 0 && update.FieldNames().Count == 0)
        {
            errors.Add(new("$", "Name at least one field to change: " + string.Join(", ", CreateFields) + "."));
        }
        AddRuleErrors(errors, e => Validate(update, e));
        return errors.Count == 0 ? update : null;
    }

    /// <summary>The rotation body <c>{"gracePeriodSeconds": n}</c> (optional; no body means no grace).</summary>
    public static TimeSpan? ParseRotation(JsonElement? body, TimeSpan maxGrace, List<FieldError> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (body is not { } b)
        {
            return TimeSpan.Zero;
        }
        if (b.ValueKind != JsonValueKind.Object)
        {
            errors.Add(new("$", "The body must be a JSON object."));
            return null;
        }
        RefuseUnknown(b, ["gracePeriodSeconds"], "", errors);
        var grace = TimeSpan.Zero;
        if (b.TryGetProperty("gracePeriodSeconds", out var g) && g.ValueKind != JsonValueKind.Null)
        {
            if (g.ValueKind != JsonValueKind.Number || !g.TryGetInt64(out var seconds))
            {
                errors.Add(new("gracePeriodSeconds", "Must be a whole number of seconds."));
            }
            else
            {
                grace = ValidateGrace(seconds, maxGrace, errors) ?? TimeSpan.Zero;
            }
        }
        return errors.Count == 0 ? grace : null;
    }

    public static TimeSpan? ValidateGrace(long seconds, TimeSpan maxGrace, List<FieldError> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (seconds < 0 || seconds > (long)maxGrace.TotalSeconds)
        {
            errors.Add(new("gracePeriodSeconds", $"Must be between 0 and {(long)maxGrace.TotalSeconds} (FuncProxy:Admin:MaxRotationGracePeriod)."));
            return null;
        }
        return TimeSpan.FromSeconds(seconds);
    }

    /// <summary>Checks a creation's values (also for the CLI, which builds it from options).</summary>
    public void Validate(KeyCreation creation, List<FieldError> errors)
    {
        ArgumentNullException.ThrowIfNull(creation);
        ArgumentNullException.ThrowIfNull(errors);
        CheckText("name", creation.Name, MaxNameLength, errors);
        if (creation.Owner is not null)
        {
            CheckText("owner", creation.Owner, MaxOwnerLength, errors);
        }
        CheckUpstreams(creation.AllowedUpstreams, errors);
        CheckExpiry(creation.ExpiresAt, errors);
        CheckLimits(creation.Limits, errors);
        CheckMetadata(creation.Metadata, errors);
        CheckModels(creation.AllowedModels, creation.ModelAliases, creation.ModelLimits, errors);
        CheckOrigins(creation.AllowedOrigins, errors);
    }

    public void Validate(KeyUpdate update, List<FieldError> errors)
    {
        ArgumentNullException.ThrowIfNull(update);
        ArgumentNullException.ThrowIfNull(errors);
        if (update.Name is not null)
        {
            CheckText("name", update.Name, MaxNameLength, errors);
        }
        if (update.Owner is { Value: { } owner })
        {
            CheckText("owner", owner, MaxOwnerLength, errors);
        }
        if (update.AllowedUpstreams is not null)
        {
            CheckUpstreams(update.AllowedUpstreams, errors);
        }
        if (update.ExpiresAt is { } expires)
        {
            CheckExpiry(expires.Value, errors);
        }
        if (update.Limits is { } limits)
        {
            foreach (var name in limits.Set.Keys.Concat(limits.Remove).Where(n => !KeyLimits.IsName(n)))
            {
                errors.Add(new("limits." + Shorten(name), UnknownLimit));
            }
            CheckLimitValues(limits.Set.Select(p => (p.Key, (long?)p.Value)), errors);
        }
        if (update.Metadata is { } metadata)
        {
            // The entry count is checked once merged with the key's entries (KeyLifecycle.UpdateAsync).
            CheckMetadata(metadata.Set, errors);
        }
        CheckModels(update.AllowedModels ?? [], update.ModelAliases ?? new Dictionary<string, string>(), update.ModelLimits ?? new Dictionary<string, KeyLimits>(), errors);
        CheckOrigins(update.AllowedOrigins ?? [], errors);
    }

    private static void CheckOrigins(IReadOnlyList<string> origins, List<FieldError> errors)
    {
        if (origins.Count > MaxOriginEntries)
        {
            errors.Add(new("allowedOrigins", $"At most {MaxOriginEntries} origins."));
            return;
        }
        for (var i = 0; i < origins.Count; i++)
        {
            if (!CrossOrigin.TryNormalizeOrigin(origins[i], out _))
            {
                errors.Add(new($"allowedOrigins[{i}]", "An origin as browsers send it: http or https, a host and an optional port, no path or trailing slash (e.g. https://app.example.com); '*' and 'null' are not allowed."));
            }
        }
    }

    // A field already refused for its shape (missing, wrong type) is not refused again for its value.
    private static void AddRuleErrors(List<FieldError> errors, Action<List<FieldError>> validate)
    {
        var ruleErrors = new List<FieldError>();
        validate(ruleErrors);
        errors.AddRange(ruleErrors.Where(r => !errors.Any(e => e.Field == r.Field || r.Field.StartsWith(e.Field + "[", StringComparison.Ordinal) || r.Field.StartsWith(e.Field + ".", StringComparison.Ordinal))));
    }

    private static void CheckText(string field, string value, int maxLength, List<FieldError> errors)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            errors.Add(new(field, "Must not be empty."));
        }
        else if (value.Length > maxLength)
        {
            errors.Add(new(field, $"At most {maxLength} characters."));
        }
        else if (value.Any(char.IsControl))
        {
            errors.Add(new(field, "Must not contain control characters."));
        }
    }

    private void CheckUpstreams(IReadOnlyList<string> upstreams, List<FieldError> errors)
    {
        if (upstreams.Count == 0)
        {
            errors.Add(new("allowedUpstreams", "Name at least one upstream, or '*' for all."));
            return;
        }
        if (upstreams.Count > MaxUpstreams)
        {
            errors.Add(new("allowedUpstreams", $"At most {MaxUpstreams} upstreams."));
            return;
        }
        for (var i = 0; i < upstreams.Count; i++)
        {
            var u = upstreams[i];
            if (u == KeyRecord.AnyUpstream)
            {
                continue;
            }
            if (!UpstreamCatalog.IsValidName(u) || _catalog.Find(u) is null)
            {
                errors.Add(new($"allowedUpstreams[{i}]", "Not a configured upstream (or '*')."));
            }
            else if (upstreams.Take(i).Contains(u, StringComparer.OrdinalIgnoreCase))
            {
                errors.Add(new($"allowedUpstreams[{i}]", "Listed twice."));
            }
        }
    }

    private void CheckExpiry(DateTimeOffset? expires, List<FieldError> errors)
    {
        if (expires is not { } e)
        {
            return;
        }
        var now = _time.GetUtcNow();
        if (e <= now)
        {
            errors.Add(new("expiresAt", "Must be in the future."));
        }
        else if (e > now + MaxLifetime)
        {
            errors.Add(new("expiresAt", "At most 10 years ahead."));
        }
    }

    private static void CheckLimits(KeyLimits? limits, List<FieldError> errors, string field = "limits")
    {
        if (limits is not null)
        {
            CheckLimitValues(limits.Values(), errors, field);
        }
    }

    private static void CheckLimitValues(IEnumerable<(string Name, long? Value)> values, List<FieldError> errors, string field = "limits")
    {
        foreach (var (name, value) in values)
        {
            if (value is { } v && (v < 0 || v > MaxLimitValue))
            {
                errors.Add(new(field + "." + name, KeyLimits.IsBudget(name)
                    ? $"Must be between 0 (no budget) and {MaxBudgetUsd} US dollars, or null."
                    : $"Must be between 0 (no such limit for this key) and {MaxLimitValue}, or null for the default."));
            }
        }
    }

    private static void CheckModels(IReadOnlyList<string> allowed, IReadOnlyDictionary<string, string> aliases, IReadOnlyDictionary<string, KeyLimits> modelLimits, List<FieldError> errors)
    {
        if (allowed.Count > MaxModelEntries || aliases.Count > MaxModelEntries || modelLimits.Count > MaxModelEntries)
        {
            errors.Add(new("allowedModels", $"At most {MaxModelEntries} entries in each of allowedModels, modelAliases and modelLimits."));
            return;
        }
        for (var i = 0; i < allowed.Count; i++)
        {
            if (!ModelPattern.IsValid(allowed[i]))
            {
                errors.Add(new($"allowedModels[{i}]", $"A model name or glob ('*', '?') of 1-{ModelPattern.MaxLength} characters without control characters."));
            }
        }
        foreach (var (from, to) in aliases)
        {
            if (!ModelPattern.IsValid(from) || from.Contains('*', StringComparison.Ordinal) || from.Contains('?', StringComparison.Ordinal)
                || !ModelPattern.IsValid(to) || to.Contains('*', StringComparison.Ordinal) || to.Contains('?', StringComparison.Ordinal))
            {
                errors.Add(new("modelAliases." + Shorten(from), $"Alias and model are names (no globs) of 1-{ModelPattern.MaxLength} characters without control characters."));
            }
        }
        foreach (var (pattern, limits) in modelLimits)
        {
            if (!ModelPattern.IsValid(pattern))
            {
                errors.Add(new("modelLimits." + Shorten(pattern), $"A model name or glob of 1-{ModelPattern.MaxLength} characters without control characters."));
                continue;
            }
            CheckLimits(limits, errors, "modelLimits." + pattern);
        }
    }

    /// <summary>Each limit's JSON name and value (budgets in micro-dollars: see <see cref="LimitText"/>).</summary>
    public static IEnumerable<(string Name, long? Value)> LimitValues(KeyLimits l)
    {
        ArgumentNullException.ThrowIfNull(l);
        return l.Values();
    }

    /// <summary>A limit's value as the API writes it: a count, or for budgets US dollars.</summary>
    public static string LimitText(string name, long value) => KeyLimits.IsBudget(name)
        ? (value / 1_000_000m).ToString("0.00####", CultureInfo.InvariantCulture)
        : value.ToString(CultureInfo.InvariantCulture);

    private static void CheckMetadata(IReadOnlyDictionary<string, string> metadata, List<FieldError> errors)
    {
        if (metadata.Count > MaxMetadataEntries)
        {
            errors.Add(new("metadata", $"At most {MaxMetadataEntries} entries."));
            return;
        }
        foreach (var (name, value) in metadata)
        {
            if (!MetadataName().IsMatch(name))
            {
                errors.Add(new("metadata", "Entry names are 1-64 characters of letters, digits, '.', '_' or '-'."));
            }
            else if (value is null || value.Length > MaxMetadataValueLength || value.Any(char.IsControl))
            {
                errors.Add(new("metadata." + name, $"A string of at most {MaxMetadataValueLength} characters without control characters."));
            }
        }
    }

    private static void RefuseUnknown(JsonElement body, string[] known, string prefix, List<FieldError> errors)
    {
        foreach (var property in body.EnumerateObject())
        {
            if (!known.Contains(property.Name, StringComparer.Ordinal))
            {
                errors.Add(new(prefix + Shorten(property.Name), "Unknown field."));
            }
        }
    }

    private static string Shorten(string name) => name.Length <= 64 ? name : name[..64] + "…";

    private static string? String(JsonElement body, string field, List<FieldError> errors, bool required)
    {
        if (!body.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            if (required)
            {
                errors.Add(new(field, "Required."));
            }
            return null;
        }
        if (value.ValueKind != JsonValueKind.String)
        {
            errors.Add(new(field, "Must be a string."));
            return null;
        }
        return value.GetString();
    }

    private static List<string>? StringArray(JsonElement body, string field, List<FieldError> errors, bool required)
    {
        if (!body.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            if (required)
            {
                errors.Add(new(field, "Required: a list of upstream names, or [\"*\"]."));
            }
            return null;
        }
        if (value.ValueKind != JsonValueKind.Array)
        {
            errors.Add(new(field, "Must be an array of strings."));
            return null;
        }
        var list = new List<string>();
        var i = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
            {
                errors.Add(new($"{field}[{i}]", "Must be a string."));
            }
            else
            {
                list.Add(item.GetString()!);
            }
            i++;
        }
        return list;
    }

    private static Change<DateTimeOffset?>? Date(JsonElement body, string field, List<FieldError> errors)
    {
        if (!body.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return new(null);
        }
        if (value.ValueKind != JsonValueKind.String || !TryParseTimestamp(value.GetString(), out var parsed))
        {
            errors.Add(new(field, "Must be an RFC 3339 date-time with an offset, e.g. 2027-01-31T12:00:00Z."));
            return null;
        }
        return new(parsed);
    }

    private static readonly string[] TimestampFormats =
    [
        "yyyy-MM-dd'T'HH:mm:ss'Z'", "yyyy-MM-dd'T'HH:mm:ss.FFFFFFF'Z'", "yyyy-MM-dd'T'HH:mm:sszzz", "yyyy-MM-dd'T'HH:mm:ss.FFFFFFFzzz",
    ];

    /// <summary>An RFC 3339 date-time that names its offset (<c>Z</c> or <c>+hh:mm</c>): no guessing of time zones.</summary>
    public static bool TryParseTimestamp(string? text, out DateTimeOffset value)
    {
        var ok = DateTimeOffset.TryParseExact(text, TimestampFormats, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out value);
        value = value.ToUniversalTime();
        return ok;
    }

    private static Change<KeyLimits?>? Limits(JsonElement value, List<FieldError> errors, string field = "limits")
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return new(null);
        }
        if (value.ValueKind != JsonValueKind.Object)
        {
            errors.Add(new(field, "Must be an object such as {\"requestsPerMinute\": 60, \"budgetPerDayUsd\": 5.00}, or null for the defaults."));
            return null;
        }
        // At creation there is nothing to merge into: the members set are the overrides, null members are defaults.
        return LimitsPatch(value, errors, field) is { } patch ? new(KeyLimits.FromOverrides(patch.Set) ?? new KeyLimits()) : null;
    }

    private static readonly string UnknownLimit = "Unknown limit. Known: " + string.Join(", ", KeyLimits.Names) + ".";

    /// <summary>
    /// <c>limits</c> as a merge patch: a number sets that override, <c>null</c> removes it (the default applies again);
    /// the whole object <c>null</c> removes every override. A creation reads it the same way: <c>null</c> members are defaults.
    /// </summary>
    private static MapPatch<long>? LimitsPatch(JsonElement value, List<FieldError> errors, string field = "limits")
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return MapPatch<long>.Clear;
        }
        if (value.ValueKind != JsonValueKind.Object)
        {
            errors.Add(new(field, "Must be an object such as {\"requestsPerMinute\": 60, \"budgetPerDayUsd\": 5.00}, or null for the defaults."));
            return null;
        }
        var set = new Dictionary<string, long>(StringComparer.Ordinal);
        var remove = new List<string>();
        foreach (var property in value.EnumerateObject())
        {
            if (!KeyLimits.IsName(property.Name))
            {
                errors.Add(new(field + "." + Shorten(property.Name), UnknownLimit));
            }
            else if (property.Value.ValueKind == JsonValueKind.Null)
            {
                remove.Add(property.Name);
                set.Remove(property.Name);
            }
            else if (KeyLimits.IsBudget(property.Name))
            {
                // US dollars with at most 6 decimals, kept as integer micro-dollars.
                if (property.Value.ValueKind != JsonValueKind.Number || !property.Value.TryGetDecimal(out var usd) || decimal.Round(usd, 6) != usd)
                {
                    errors.Add(new(field + "." + property.Name, "Must be an amount in US dollars with at most 6 decimals (e.g. 5.00), or null."));
                }
                else if (usd < 0 || usd > MaxBudgetUsd)
                {
                    errors.Add(new(field + "." + property.Name, $"Must be between 0 (no budget) and {MaxBudgetUsd} US dollars, or null."));
                }
                else
                {
                    remove.Remove(property.Name);
                    set[property.Name] = (long)(usd * 1_000_000m);
                }
            }
            else if (property.Value.ValueKind != JsonValueKind.Number || !property.Value.TryGetInt64(out var n))
            {
                errors.Add(new(field + "." + property.Name, "Must be a whole number, or null for the default."));
            }
            else
            {
                remove.Remove(property.Name);
                set[property.Name] = n;
            }
        }
        return new MapPatch<long> { Set = set, Remove = remove };
    }

    /// <summary><c>metadata</c> as a merge patch: a string sets that entry, <c>null</c> removes it; the whole object <c>null</c> removes every entry.</summary>
    private static MapPatch<string>? MetadataPatch(JsonElement value, List<FieldError> errors)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return MapPatch<string>.Clear;
        }
        if (value.ValueKind != JsonValueKind.Object)
        {
            errors.Add(new("metadata", "Must be an object of string values (null removes an entry), or null to remove every entry."));
            return null;
        }
        var set = new Dictionary<string, string>(StringComparer.Ordinal);
        var remove = new List<string>();
        foreach (var property in value.EnumerateObject())
        {
            if (property.Value.ValueKind == JsonValueKind.Null)
            {
                remove.Add(property.Name);
                set.Remove(property.Name);
            }
            else if (property.Value.ValueKind != JsonValueKind.String)
            {
                errors.Add(new("metadata." + Shorten(property.Name), "Must be a string, or null to remove the entry."));
            }
            else
            {
                remove.Remove(property.Name);
                set[property.Name] = property.Value.GetString()!;
            }
        }
        return new MapPatch<string> { Set = set, Remove = remove };
    }

    private static Dictionary<string, string>? Metadata(JsonElement value, List<FieldError> errors)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (value.ValueKind != JsonValueKind.Object)
        {
            errors.Add(new("metadata", "Must be an object of string values."));
            return null;
        }
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var property in value.EnumerateObject())
        {
            if (property.Value.ValueKind != JsonValueKind.String)
            {
                errors.Add(new("metadata." + Shorten(property.Name), "Must be a string."));
                continue;
            }
            metadata[property.Name] = property.Value.GetString()!;
        }
        return metadata;
    }

    private static List<string>? Origins(JsonElement value, List<FieldError> errors)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return [];
        }
        if (value.ValueKind != JsonValueKind.Array)
        {
            errors.Add(new("allowedOrigins", "Must be an array of origins (empty: any origin the key's upstreams allow)."));
            return null;
        }
        var list = new List<string>();
        var i = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
            {
                errors.Add(new($"allowedOrigins[{i}]", "Must be a string."));
            }
            else
            {
                list.Add(item.GetString()!);
            }
            i++;
        }
        return list;
    }

    private static List<string>? Models(JsonElement value, List<FieldError> errors)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return [];
        }
        if (value.ValueKind != JsonValueKind.Array)
        {
            errors.Add(new("allowedModels", "Must be an array of model names or globs (empty: any model)."));
            return null;
        }
        var list = new List<string>();
        var i = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
            {
                errors.Add(new($"allowedModels[{i}]", "Must be a string."));
            }
            else
            {
                list.Add(item.GetString()!);
            }
            i++;
        }
        return list;
    }

    private static Dictionary<string, string>? Aliases(JsonElement value, List<FieldError> errors)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        }
        if (value.ValueKind != JsonValueKind.Object)
        {
            errors.Add(new("modelAliases", "Must be an object mapping the model a client names to the model sent, e.g. {\"gpt-4o\": \"gpt-4o-mini\"}."));
            return null;
        }
        var aliases = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var property in value.EnumerateObject())
        {
            if (property.Value.ValueKind != JsonValueKind.String)
            {
                errors.Add(new("modelAliases." + Shorten(property.Name), "Must be a string: the model sent upstream."));
            }
            else if (!aliases.TryAdd(property.Name, property.Value.GetString()!))
            {
                errors.Add(new("modelAliases." + Shorten(property.Name), "Listed twice (names are case-insensitive)."));
            }
        }
        return aliases;
    }

    private static Dictionary<string, KeyLimits>? ModelLimits(JsonElement value, List<FieldError> errors)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return new Dictionary<string, KeyLimits>(StringComparer.Ordinal);
        }
        if (value.ValueKind != JsonValueKind.Object)
        {
            errors.Add(new("modelLimits", "Must be an object mapping a model name or glob to limits, e.g. {\"gpt-4o*\": {\"tokensPerMinute\": 30000}}."));
            return null;
        }
        var result = new Dictionary<string, KeyLimits>(StringComparer.Ordinal);
        foreach (var property in value.EnumerateObject())
        {
            var field = "modelLimits." + Shorten(property.Name);
            if (property.Value.ValueKind != JsonValueKind.Object)
            {
                errors.Add(new(field, "Must be an object of limits, as 'limits' is."));
                continue;
            }
            if (result.Keys.Any(k => string.Equals(k, property.Name, StringComparison.OrdinalIgnoreCase)))
            {
                errors.Add(new(field, "Listed twice (patterns are case-insensitive)."));
                continue;
            }
            if (Limits(property.Value, errors, field)?.Value is { } limits)
            {
                result[property.Name] = limits;
            }
        }
        return result;
    }

    [GeneratedRegex("^[A-Za-z0-9._-]{1,64}$", RegexOptions.CultureInvariant)]
    private static partial Regex MetadataName();
}
