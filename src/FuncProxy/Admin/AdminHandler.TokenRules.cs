using FuncProxy.EntraId;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace FuncProxy.Admin;

/// <summary>
/// <code>
/// GET  token-rules                 (configured rules first, then stored ones, each in the order they are tried)
/// POST token-rules                 {"match": "objectId|appId|appRole|group", "value": "...", "keyId": "...", "description": "..."}
/// GET  token-rules/{id}   DELETE token-rules/{id}
/// </code>
/// Token-to-key rules for clients with Entra ID tokens (docs/entra-id-clients.md); every change is audited under the mapped key.
/// </summary>
public sealed partial class AdminHandler
{
    private Task RouteTokenRulesAsync(HttpContext context, string? id, AuditContext audit)
    {
        var method = context.Request.Method;
        if (id is null)
        {
            return method switch
            {
                "GET" => ListTokenRulesAsync(context),
                "POST" => CreateTokenRuleAsync(context, audit),
                _ => MethodNotAllowedAsync(context, "GET, POST"),
            };
        }
        if (!TokenRuleStore.IsValidId(id))
        {
            return Problem.InvalidAsync(context, [new FieldError("id", "Not a token rule id (such as appid-0123456789abcdef0123).")]);
        }
        return method switch
        {
            "GET" => GetTokenRuleAsync(context, id),
            "DELETE" => DeleteTokenRuleAsync(context, id, audit),
            _ => MethodNotAllowedAsync(context, "GET, DELETE"),
        };
    }

    private async Task ListTokenRulesAsync(HttpContext context)
    {
        var errors = new List<FieldError>();
        RefuseUnknownParameters(context.Request.Query, [], errors);
        if (errors.Count > 0)
        {
            await Problem.InvalidAsync(context, errors).ConfigureAwait(false);
            return;
        }
        var rules = await _tokenRules.ListAsync(context.RequestAborted).ConfigureAwait(false);
        await WriteJsonAsync(context, StatusCodes.Status200OK, new
        {
            enabled = _options.CurrentValue.ClientTokens.Authority is not null,
            items = rules.Select(TokenRuleView.From),
        }).ConfigureAwait(false);
    }

    private async Task GetTokenRuleAsync(HttpContext context, string id)
    {
        var rule = await _tokenRules.FindAsync(id, context.RequestAborted).ConfigureAwait(false);
        if (rule is null)
        {
            await TokenRuleNotFoundAsync(context).ConfigureAwait(false);
            return;
        }
        await WriteJsonAsync(context, StatusCodes.Status200OK, TokenRuleView.From(rule)).ConfigureAwait(false);
    }

    private async Task CreateTokenRuleAsync(HttpContext context, AuditContext audit)
    {
        var (body, _, ok) = await ReadJsonAsync(context, required: true).ConfigureAwait(false);
        if (!ok)
        {
            await AuditAsync(audit, "token_rule.create", null, "invalid", "body").ConfigureAwait(false);
            return;
        }
        var errors = new List<FieldError>();
        var request = TokenRuleLifecycle.Parse(body!.Value, errors);
        var rule = request is null ? null : TokenRuleLifecycle.Validate(request, errors);
        if (rule is null || errors.Count > 0)
        {
            await AuditAsync(audit, "token_rule.create", null, "invalid", Fields(errors)).ConfigureAwait(false);
            await Problem.InvalidAsync(context, errors).ConfigureAwait(false);
            return;
        }
        var detail = rule.AuditDetail;
        var (outcome, stored) = await _tokenRules.CreateAsync(rule, audit.Actor, context.RequestAborted).ConfigureAwait(false);
        switch (outcome)
        {
            case TokenRuleOutcome.NoSuchKey:
                await AuditAsync(audit, "token_rule.create", rule.KeyId, "invalid", detail).ConfigureAwait(false);
                await Problem.InvalidAsync(context, [new FieldError("keyId", "There is no key with that id.")]).ConfigureAwait(false);
                return;
            case TokenRuleOutcome.Exists or TokenRuleOutcome.Configured:
                await AuditAsync(audit, "token_rule.create", rule.KeyId, "conflict", detail).ConfigureAwait(false);
                await Problem.WriteAsync(context, StatusCodes.Status409Conflict, "token_rule_exists", "Conflict",
                    outcome == TokenRuleOutcome.Configured
                        ? "A rule in the gateway's configuration (FuncProxy:ClientTokens:Rules) already maps this " + TokenRule.NameOf(rule.Match) + "."
                        : "A rule for this " + TokenRule.NameOf(rule.Match) + " exists already; delete it first to map it to another key.",
                    new Dictionary<string, object?> { ["id"] = outcome == TokenRuleOutcome.Exists ? TokenRuleStore.IdFor(rule.Match, rule.Value) : null }).ConfigureAwait(false);
                return;
        }
        Log.TokenRuleChanged(_logger, "token_rule.create", stored!.Id!, stored.KeyId, audit.Actor);
        await AuditAsync(audit, "token_rule.create", stored.KeyId, "success", detail).ConfigureAwait(false);
        context.Response.Headers.Location = "/api/admin/token-rules/" + stored.Id;
        await WriteJsonAsync(context, StatusCodes.Status201Created, TokenRuleView.From(stored)).ConfigureAwait(false);
    }

    private async Task DeleteTokenRuleAsync(HttpContext context, string id, AuditContext audit)
    {
        var deleted = await _tokenRules.DeleteAsync(id, context.RequestAborted).ConfigureAwait(false);
        if (deleted is null)
        {
            await AuditAsync(audit, "token_rule.delete", null, "not_found", "rule " + id).ConfigureAwait(false);
            await TokenRuleNotFoundAsync(context).ConfigureAwait(false);
            return;
        }
        Log.TokenRuleChanged(_logger, "token_rule.delete", id, deleted.KeyId, audit.Actor);
        await AuditAsync(audit, "token_rule.delete", deleted.KeyId, "success", deleted.AuditDetail).ConfigureAwait(false);
        context.Response.StatusCode = StatusCodes.Status204NoContent;
    }

    private static Task TokenRuleNotFoundAsync(HttpContext context) =>
        Problem.WriteAsync(context, StatusCodes.Status404NotFound, "token_rule_not_found", "Not Found", "There is no stored token rule with that id.");

    private static partial class Log
    {
        [LoggerMessage(EventId = 4010, Level = LogLevel.Information, Message = "{Action} {RuleId} (key {KeyId}) by {Actor}.")]
        public static partial void TokenRuleChanged(ILogger logger, string action, string ruleId, string keyId, string actor);
    }
}
