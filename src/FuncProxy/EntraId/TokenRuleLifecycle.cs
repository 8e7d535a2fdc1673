using System.Text.Json;
using FuncProxy.Admin;
using FuncProxy.Keys;
using Microsoft.Extensions.Options;

namespace FuncProxy.EntraId;

/// <summary>What became of a request to add a token rule.</summary>
public enum TokenRuleOutcome
{
    Created,

    /// <summary>A stored rule for that matcher exists already (409).</summary>
    Exists,

    /// <summary>A configured rule (<c>FuncProxy:ClientTokens:Rules</c>) has that matcher: it would always win, so none is stored (409).</summary>
    Configured,

    /// <summary>No key record has that id (400).</summary>
    NoSuchKey,
}

/// <summary>A new token rule as an operator asks for it (management API or CLI), checked by <see cref="TokenRuleLifecycle.Validate"/>.</summary>
public sealed record TokenRuleCreation(string? Match, string? Value, string? KeyId, string? Description);

/// <summary>
/// Adds, lists and deletes token-to-key rules for the management API and the CLI alike (the caller writes the audit event),
/// and puts a change in force on this instance at once.
/// </summary>
public sealed class TokenRuleLifecycle
{
    public const int MaxDescriptionLength = 200;
    private static readonly string[] Fields = ["match", "value", "keyId", "description"];

    private readonly TokenRuleStore _store;
    private readonly TokenRules _rules;
    private readonly KeyStore _keys;
    private readonly IOptionsMonitor<FuncProxyOptions> _options;
    private readonly TimeProvider _time;

    public TokenRuleLifecycle(TokenRuleStore store, TokenRules rules, KeyStore keys, IOptionsMonitor<FuncProxyOptions> options, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(rules);
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        _store = store;
        _rules = rules;
        _keys = keys;
        _options = options;
        _time = time;
    }

    /// <summary>Reads a create request's JSON object, collecting every bad field.</summary>
    public static TokenRuleCreation? Parse(JsonElement body, List<FieldError> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (body.ValueKind != JsonValueKind.Object)
        {
            errors.Add(new("$", "A JSON object is required."));
            return null;
        }
        foreach (var property in body.EnumerateObject())
        {
            if (!Fields.Contains(property.Name, StringComparer.Ordinal))
            {
                errors.Add(new(property.Name.Length <= 64 ? property.Name : property.Name[..64] + "…", "Unknown field. Known: " + string.Join(", ", Fields) + "."));
            }
        }
        string? Text(string name)
        {
            if (!body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
            {
                return null;
            }
            if (value.ValueKind != JsonValueKind.String)
            {
                errors.Add(new(name, "A string."));
                return null;
            }
            return value.GetString();
        }
        return new TokenRuleCreation(Text("match"), Text("value"), Text("keyId"), Text("description"));
    }

    /// <summary>Checks a request's fields (not yet whether the key exists); the rule when all hold.</summary>
    public static TokenRule? Validate(TokenRuleCreation request, List<FieldError> errors)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(errors);
        var before = errors.Count;
        if (!TokenRule.TryParseMatch(request.Match, out var match))
        {
            errors.Add(new("match", "One of objectId, appId, appRole, group."));
        }
        var value = request.Value?.Trim();
        if (!TokenRule.IsValidValue(value))
        {
            errors.Add(new("value", $"1-{TokenRule.MaxValueLength} printable ASCII characters without spaces (an object id, app id or group id GUID, or an app role value)."));
        }
        var keyId = request.KeyId?.Trim();
        if (!ApiKey.IsValidId(keyId))
        {
            errors.Add(new("keyId", "A key id (16 characters of a-z and 2-7)."));
        }
        if (request.Description is { } d && (d.Length > MaxDescriptionLength || d.Any(char.IsControl)))
        {
            errors.Add(new("description", $"At most {MaxDescriptionLength} characters, no control characters."));
        }
        return errors.Count > before ? null : new TokenRule(match, value!, keyId!) { Description = request.Description };
    }

    /// <summary>Stores a validated rule for an existing key and puts it in force here; the stored rule when created.</summary>
    public async Task<(TokenRuleOutcome Outcome, TokenRule? Rule)> CreateAsync(TokenRule rule, string actor, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(rule);
        var comparer = TokenRule.ComparerFor(rule.Match);
        if (TokenRules.FromOptions(_options.CurrentValue.ClientTokens.Rules).Any(r => r.Match == rule.Match && comparer.Equals(r.Value, rule.Value)))
        {
            return (TokenRuleOutcome.Configured, null);
        }
        if (await _keys.FindAsync(rule.KeyId, cancellationToken).ConfigureAwait(false) is null)
        {
            return (TokenRuleOutcome.NoSuchKey, null);
        }
        var stored = await _store.TryAddAsync(rule with { CreatedAt = _time.GetUtcNow(), CreatedBy = actor }, cancellationToken).ConfigureAwait(false);
        if (stored is null)
        {
            return (TokenRuleOutcome.Exists, null);
        }
        await _rules.ReloadAsync(cancellationToken).ConfigureAwait(false);
        return (TokenRuleOutcome.Created, stored);
    }

    /// <summary>Deletes a stored rule and takes it out of force here; the rule that was deleted, or null when there was none.</summary>
    public async Task<TokenRule?> DeleteAsync(string id, CancellationToken cancellationToken)
    {
        var rule = await _store.FindAsync(id, cancellationToken).ConfigureAwait(false);
        if (rule is null || !await _store.DeleteAsync(id, cancellationToken).ConfigureAwait(false))
        {
            return null;
        }
        await _rules.ReloadAsync(cancellationToken).ConfigureAwait(false);
        return rule;
    }

    public Task<TokenRule?> FindAsync(string id, CancellationToken cancellationToken) => _store.FindAsync(id, cancellationToken);

    /// <summary>Every rule, configured ones first, each group in the order it is tried.</summary>
    public async Task<IReadOnlyList<TokenRule>> ListAsync(CancellationToken cancellationToken) =>
        [.. TokenRules.FromOptions(_options.CurrentValue.ClientTokens.Rules), .. await _store.ListAsync(cancellationToken).ConfigureAwait(false)];
}

/// <summary>A token rule as the management API and the CLI's <c>--json</c> show it.</summary>
public sealed record TokenRuleView(
    string? Id, string Source, string Match, string Value, string KeyId, string? Description, DateTimeOffset? CreatedAt, string? CreatedBy)
{
    public static TokenRuleView From(TokenRule rule)
    {
        ArgumentNullException.ThrowIfNull(rule);
        return new(rule.Id, rule.Id is null ? "configuration" : "api", TokenRule.NameOf(rule.Match), rule.Value, rule.KeyId, rule.Description, rule.CreatedAt, rule.CreatedBy);
    }
}
