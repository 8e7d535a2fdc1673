using System.Security.Cryptography;
using System.Text;
using Azure;
using Azure.Data.Tables;

namespace FuncProxy.EntraId;

/// <summary>
/// Token-to-key rules made through the management API or the CLI, in the <c>tokenrules</c> table (one partition: the rules
/// are few and always read whole). A rule's id is derived from its kind and value, so a second rule for the same matcher is
/// refused by the table itself (409), on every instance at once.
/// </summary>
public sealed class TokenRuleStore
{
    /// <summary>Most rules the table may hold (each instance keeps them all in memory).</summary>
    public const int MaxRules = 10_000;

    private const string Partition = "rule";
    private readonly FuncProxyTables _tables;

    public TokenRuleStore(FuncProxyTables tables)
    {
        ArgumentNullException.ThrowIfNull(tables);
        _tables = tables;
    }

    /// <summary>The id of the rule for a matcher: <c>{kind}-{20 hex digits of SHA-256 over the kind and the value}</c>.</summary>
    public static string IdFor(TokenMatch match, string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var kind = TokenRule.NameOf(match).ToLowerInvariant();
        var normalized = match == TokenMatch.AppRole ? value : value.ToLowerInvariant();
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(kind + "\n" + normalized));
        return kind + "-" + Convert.ToHexStringLower(hash)[..20];
    }

    /// <summary>True for a string shaped like a rule id.</summary>
    public static bool IsValidId(string? id)
    {
        if (id is null || id.Length > 40)
        {
            return false;
        }
        var dash = id.IndexOf('-', StringComparison.Ordinal);
        return dash > 0
            && TokenRule.TryParseMatch(id[..dash], out var match)
            && id[..dash] == TokenRule.NameOf(match).ToLowerInvariant()
            && id.Length - dash - 1 == 20
            && id.AsSpan(dash + 1).IndexOfAnyExcept("0123456789abcdef") < 0;
    }

    /// <summary>Stores <paramref name="rule"/> under its derived id; null when a rule for that matcher exists already.</summary>
    public async Task<TokenRule?> TryAddAsync(TokenRule rule, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(rule);
        var stored = rule with { Id = IdFor(rule.Match, rule.Value) };
        var table = await _tables.GetTokenRulesAsync(cancellationToken).ConfigureAwait(false);
        var entity = new TableEntity(Partition, stored.Id)
        {
            ["Match"] = TokenRule.NameOf(stored.Match),
            ["Value"] = stored.Value,
            ["KeyId"] = stored.KeyId,
            ["Description"] = stored.Description,
            ["CreatedAt"] = stored.CreatedAt,
            ["CreatedBy"] = stored.CreatedBy,
        };
        try
        {
            await table.AddEntityAsync(entity, cancellationToken).ConfigureAwait(false);
            return stored;
        }
        catch (RequestFailedException e) when (e.Status == 409)
        {
            return null;
        }
    }

    public async Task<TokenRule?> FindAsync(string id, CancellationToken cancellationToken)
    {
        var table = await _tables.GetTokenRulesAsync(cancellationToken).ConfigureAwait(false);
        var response = await table.GetEntityIfExistsAsync<TableEntity>(Partition, id, cancellationToken: cancellationToken).ConfigureAwait(false);
        return response.HasValue ? FromEntity(response.Value!) : null;
    }

    /// <summary>Deletes a rule; false when there was none.</summary>
    public async Task<bool> DeleteAsync(string id, CancellationToken cancellationToken)
    {
        var table = await _tables.GetTokenRulesAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await table.DeleteEntityAsync(Partition, id, ETag.All, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            return false;
        }
    }

    /// <summary>Every stored rule, oldest first (the order in which role and group rules are tried).</summary>
    public async Task<IReadOnlyList<TokenRule>> ListAsync(CancellationToken cancellationToken)
    {
        var table = await _tables.GetTokenRulesAsync(cancellationToken).ConfigureAwait(false);
        var rules = new List<TokenRule>();
        await foreach (var entity in table.QueryAsync<TableEntity>(e => e.PartitionKey == Partition, maxPerPage: 1000, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            if (FromEntity(entity) is { } rule)
            {
                rules.Add(rule);
            }
            if (rules.Count >= MaxRules)
            {
                break;
            }
        }
        return [.. rules.OrderBy(r => r.CreatedAt).ThenBy(r => r.Id, StringComparer.Ordinal)];
    }

    /// <summary>A stored rule, or null for a row this version cannot use (it is then ignored, never guessed at).</summary>
    private static TokenRule? FromEntity(TableEntity entity)
    {
        var value = entity.GetString("Value");
        var keyId = entity.GetString("KeyId");
        if (!TokenRule.TryParseMatch(entity.GetString("Match"), out var match) || !TokenRule.IsValidValue(value) || !Keys.ApiKey.IsValidId(keyId))
        {
            return null;
        }
        return new TokenRule(match, value!, keyId!)
        {
            Id = entity.RowKey,
            Description = entity.GetString("Description"),
            CreatedAt = entity.GetDateTimeOffset("CreatedAt"),
            CreatedBy = entity.GetString("CreatedBy"),
        };
    }
}
