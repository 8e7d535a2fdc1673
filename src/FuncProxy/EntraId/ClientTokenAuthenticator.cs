using System.Security.Claims;
using FuncProxy.Keys;
using Microsoft.Extensions.Options;

namespace FuncProxy.EntraId;

/// <summary>
/// Authenticates a client call that presents an Entra ID access token instead of a FuncProxy key: the token is validated
/// (<see cref="EntraTokenValidator"/>, no network round trip once the issuer's keys are cached), must belong to the configured
/// tenant and carry the required scope (delegated) or app role (app), and is mapped by <see cref="TokenRules"/> to a key
/// record, which must be usable (active, unexpired) exactly as if its key had been presented. Every refusal is the same 401
/// for the client; the reason goes to logs and metrics only.
/// </summary>
public sealed class ClientTokenAuthenticator
{
    private readonly EntraTokenValidator _validator;
    private readonly TokenRules _rules;
    private readonly KeyRecordCache _cache;
    private readonly IOptionsMonitor<FuncProxyOptions> _options;
    private readonly TimeProvider _time;

    public ClientTokenAuthenticator(EntraTokenValidator validator, TokenRules rules, KeyRecordCache cache, IOptionsMonitor<FuncProxyOptions> options, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(validator);
        ArgumentNullException.ThrowIfNull(rules);
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        _validator = validator;
        _rules = rules;
        _cache = cache;
        _options = options;
        _time = time;
    }

    /// <summary>True when <c>FuncProxy:ClientTokens:Authority</c> is set.</summary>
    public bool IsEnabled => _options.CurrentValue.ClientTokens.Authority is not null;

    /// <summary>The v1 issuer of a tenant's tokens.</summary>
    public static string V1Issuer(string tenantId) => "https://sts.windows.net/" + tenantId + "/";

    public async ValueTask<KeyAuthentication> AuthenticateAsync(string token, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(token);
        var options = _options.CurrentValue.ClientTokens;
        if (options.Authority is null)
        {
            return Refused(KeyRefusal.Malformed);
        }
        var check = new EntraTokenCheck(
            options.MetadataAddress ?? EntraTokenValidator.MetadataAddressOf(options.Authority),
            options.RequireHttpsMetadata,
            options.Audiences,
            options.AcceptV1Tokens ? [V1Issuer(options.TenantId!)] : [],
            options.ClockSkew);
        var result = await _validator.ValidateAsync(token, check, cancellationToken).ConfigureAwait(false);
        if (!result.IsValid)
        {
            return Refused(KeyRefusal.InvalidToken);
        }
        var identity = result.Identity!;
        if (!IsPermitted(identity, options))
        {
            return Refused(KeyRefusal.TokenNotPermitted);
        }
        var rule = (await _rules.CurrentAsync(cancellationToken).ConfigureAwait(false)).Find(identity);
        if (rule is null)
        {
            return Refused(KeyRefusal.UnmappedToken);
        }
        var id = rule.KeyId;
        var record = await _cache.GetAsync(id, cancellationToken).ConfigureAwait(false);
        return record switch
        {
            null => new(null, KeyRefusal.UnknownId, id, ByToken: true),
            { Status: KeyStatus.Revoked } => new(null, KeyRefusal.Revoked, id, ByToken: true),
            { Status: KeyStatus.Disabled } => new(null, KeyRefusal.Disabled, id, ByToken: true),
            _ when !record.IsUsableAt(_time.GetUtcNow()) => new(null, KeyRefusal.Expired, id, ByToken: true),
            _ => new(record, KeyRefusal.None, id, ByToken: true),
        };
    }

    /// <summary>
    /// The tenant and the permission the token carries: its <c>tid</c> must be the configured tenant (the issuer check pins it
    /// too; this also holds for a v1 token), a delegated token (one with <c>scp</c>) must carry the required scope, and an app
    /// token (no <c>scp</c>) the required app role. A delegated token without the scope is refused even when it has the role.
    /// </summary>
    internal static bool IsPermitted(ClaimsIdentity token, ClientTokenOptions options)
    {
        if (!string.Equals(token.FindFirst("tid")?.Value, options.TenantId, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }
        var scopes = token.FindFirst("scp")?.Value;
        if (scopes is not null)
        {
            return scopes.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains(options.RequiredScope, StringComparer.Ordinal);
        }
        return token.FindAll("roles").Any(c => string.Equals(c.Value, options.RequiredAppRole, StringComparison.Ordinal));
    }

    private static KeyAuthentication Refused(KeyRefusal refusal) => new(null, refusal, null, ByToken: true);
}
