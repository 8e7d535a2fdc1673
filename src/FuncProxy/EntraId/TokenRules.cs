using Microsoft.Extensions.Options;

namespace FuncProxy.EntraId;

/// <summary>
/// The token-to-key rules in force: those in <c>FuncProxy:ClientTokens:Rules</c>, rebuilt only when the configuration changes.
/// </summary>
public sealed class TokenRules
{
    private readonly IOptionsMonitor<FuncProxyOptions> _options;
    private (ClientTokenOptions Options, TokenRuleSet Set)? _configured;

    public TokenRules(IOptionsMonitor<FuncProxyOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
    }

    /// <summary>The rules in force, in precedence order within each kind.</summary>
    public ValueTask<TokenRuleSet> CurrentAsync(CancellationToken cancellationToken) => ValueTask.FromResult(Configured());

    private TokenRuleSet Configured()
    {
        var options = _options.CurrentValue.ClientTokens;
        var configured = _configured;
        if (configured is { } c && ReferenceEquals(c.Options, options))
        {
            return c.Set;
        }
        var set = new TokenRuleSet(FromOptions(options.Rules));
        _configured = (options, set);
        return set;
    }

    /// <summary>The rules of <c>FuncProxy:ClientTokens:Rules</c> (validated at start: each has a key id and exactly one matcher).</summary>
    public static IEnumerable<TokenRule> FromOptions(IEnumerable<TokenRuleOptions> rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        foreach (var rule in rules)
        {
            if (Matcher(rule) is ({ } match, { } value) && rule.KeyId is { } keyId)
            {
                yield return new TokenRule(match, value.Trim(), keyId.Trim());
            }
        }
    }

    /// <summary>The one matcher a configured rule sets, or null when it sets none or several.</summary>
    internal static (TokenMatch Match, string Value)? Matcher(TokenRuleOptions rule)
    {
        ArgumentNullException.ThrowIfNull(rule);
        (TokenMatch, string?)[] all = [(TokenMatch.ObjectId, rule.ObjectId), (TokenMatch.AppId, rule.AppId), (TokenMatch.AppRole, rule.AppRole), (TokenMatch.Group, rule.Group)];
        var set = all.Where(m => !string.IsNullOrWhiteSpace(m.Item2)).ToArray();
        return set.Length == 1 ? (set[0].Item1, set[0].Item2!) : null;
    }
}
