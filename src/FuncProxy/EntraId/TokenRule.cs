using System.Security.Claims;

namespace FuncProxy.EntraId;

/// <summary>What a token rule matches, in order of precedence: when rules of several kinds match one token, the first kind here wins.</summary>
public enum TokenMatch
{
    /// <summary>The token's <c>oid</c>: one user (delegated tokens) or one service principal or managed identity (app tokens).</summary>
    ObjectId,

    /// <summary>The client application: <c>azp</c> (v2 tokens) or <c>appid</c> (v1 tokens).</summary>
    AppId,

    /// <summary>A value in the token's <c>roles</c>.</summary>
    AppRole,

    /// <summary>A group object id in the token's <c>groups</c>.</summary>
    Group,
}

/// <summary>
/// Maps tokens that match <see cref="Value"/> to the key record <see cref="KeyId"/>. <see cref="Id"/> is null for a rule from
/// configuration and the table row's id for one made through the management API.
/// </summary>
public sealed record TokenRule(TokenMatch Match, string Value, string KeyId)
{
    /// <summary>Longest matcher value (Entra's ids are 36-character GUIDs; app role values are at most 120 characters).</summary>
    public const int MaxValueLength = 256;

    public string? Id { get; init; }
    public string? Description { get; init; }
    public DateTimeOffset? CreatedAt { get; init; }
    public string? CreatedBy { get; init; }

    /// <summary>What the audit log says about the rule: its id and matcher (ids and role names, never a token or a secret).</summary>
    public string AuditDetail => "rule " + TokenRuleStore.IdFor(Match, Value) + ": " + NameOf(Match) + " " + Value;

    /// <summary>The management API's and the configuration's name of a match kind: <c>objectId</c>, <c>appId</c>, <c>appRole</c>, <c>group</c>.</summary>
    public static string NameOf(TokenMatch match) => match switch
    {
        TokenMatch.ObjectId => "objectId",
        TokenMatch.AppId => "appId",
        TokenMatch.AppRole => "appRole",
        _ => "group",
    };

    public static bool TryParseMatch(string? name, out TokenMatch match)
    {
        foreach (var candidate in Enum.GetValues<TokenMatch>())
        {
            if (string.Equals(NameOf(candidate), name, StringComparison.OrdinalIgnoreCase))
            {
                match = candidate;
                return true;
            }
        }
        match = default;
        return false;
    }

    /// <summary>Ids (object ids, app ids, group ids) compare without case, as GUIDs do; app role values are case-sensitive, as Entra's are.</summary>
    public static StringComparer ComparerFor(TokenMatch match) =>
        match == TokenMatch.AppRole ? StringComparer.Ordinal : StringComparer.OrdinalIgnoreCase;

    /// <summary>A usable matcher value: 1-256 printable ASCII characters without spaces.</summary>
    public static bool IsValidValue(string? value) =>
        value is { Length: > 0 and <= MaxValueLength } && value.All(c => c is > ' ' and < (char)127);
}

/// <summary>
/// An immutable set of token rules with lookups by kind. <see cref="Find"/> applies the documented precedence: object id,
/// then app id, then app role, then group; among role or group rules the first in the set's order wins.
/// </summary>
public sealed class TokenRuleSet
{
    public static TokenRuleSet Empty { get; } = new([]);

    private readonly Dictionary<string, TokenRule> _byObjectId;
    private readonly Dictionary<string, TokenRule> _byAppId;
    private readonly TokenRule[] _byRole;
    private readonly TokenRule[] _byGroup;

    /// <param name="rules">In precedence order within a kind; a later rule with the same kind and value as an earlier one is ignored.</param>
    public TokenRuleSet(IEnumerable<TokenRule> rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        Rules = rules.ToArray();
        _byObjectId = new(TokenRule.ComparerFor(TokenMatch.ObjectId));
        _byAppId = new(TokenRule.ComparerFor(TokenMatch.AppId));
        foreach (var rule in Rules)
        {
            if (rule.Match == TokenMatch.ObjectId)
            {
                _byObjectId.TryAdd(rule.Value, rule);
            }
            else if (rule.Match == TokenMatch.AppId)
            {
                _byAppId.TryAdd(rule.Value, rule);
            }
        }
        _byRole = Rules.Where(r => r.Match == TokenMatch.AppRole).ToArray();
        _byGroup = Rules.Where(r => r.Match == TokenMatch.Group).ToArray();
    }

    public IReadOnlyList<TokenRule> Rules { get; }

    /// <summary>The rule that maps a validated token, or null when none does.</summary>
    public TokenRule? Find(ClaimsIdentity token)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (token.FindFirst("oid")?.Value is { } oid && _byObjectId.TryGetValue(oid, out var byObject))
        {
            return byObject;
        }
        if ((token.FindFirst("azp") ?? token.FindFirst("appid"))?.Value is { } appId && _byAppId.TryGetValue(appId, out var byApp))
        {
            return byApp;
        }
        return FirstIn(_byRole, token, "roles") ?? FirstIn(_byGroup, token, "groups");
    }

    private static TokenRule? FirstIn(TokenRule[] rules, ClaimsIdentity token, string claimType)
    {
        if (rules.Length == 0)
        {
            return null;
        }
        var values = token.FindAll(claimType).Select(c => c.Value).ToHashSet(TokenRule.ComparerFor(rules[0].Match));
        return values.Count == 0 ? null : Array.Find(rules, r => values.Contains(r.Value));
    }
}
