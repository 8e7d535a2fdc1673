using System.Security.Claims;
using FuncProxy.EntraId;
using FuncProxy.Keys;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace FuncProxy.Admin;

/// <summary>How an admin call was authenticated. <see cref="Actor"/> names the caller in the audit log.</summary>
public readonly record struct AdminAuthentication(string? Actor, AdminRefusal Refusal, string? Detail = null)
{
    public bool Succeeded => Refusal == AdminRefusal.None;
}

public enum AdminRefusal
{
    None,
    /// <summary>No credential, or one that does not hold: 401.</summary>
    Unauthenticated,
    /// <summary>A valid token without the admin role: 403.</summary>
    Forbidden,
}

/// <summary>
/// Authenticates management API calls: an admin key in <c>X-Admin-Key</c> (checked against its stored hash, read on every
/// call so a revoked admin key stops at once), or, when <see cref="EntraIdOptions.Authority"/> is set, an Entra ID access
/// token in <c>Authorization: Bearer</c> that is signed by the issuer's published keys, meant for the configured audience,
/// unexpired, and carries the configured app role (checked by the shared <see cref="EntraTokenValidator"/>).
/// </summary>
public sealed class AdminAuthenticator
{
    public const string AdminKeyHeader = "X-Admin-Key";

    private readonly AdminKeyStore _store;
    private readonly IOptionsMonitor<FuncProxyOptions> _options;
    private readonly EntraTokenValidator _validator;

    public AdminAuthenticator(AdminKeyStore store, IOptionsMonitor<FuncProxyOptions> options, EntraTokenValidator validator)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(validator);
        _store = store;
        _options = options;
        _validator = validator;
    }

    public async Task<AdminAuthentication> AuthenticateAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var adminKey = request.Headers[AdminKeyHeader].ToString().Trim();
        if (adminKey.Length > 0)
        {
            return await AuthenticateKeyAsync(adminKey, cancellationToken).ConfigureAwait(false);
        }
        var authorization = request.Headers.Authorization.ToString();
        const string Bearer = "Bearer ";
        if (authorization.StartsWith(Bearer, StringComparison.OrdinalIgnoreCase))
        {
            var entra = _options.CurrentValue.Admin.EntraId;
            if (entra.Authority is null)
            {
                return new(null, AdminRefusal.Unauthenticated, "bearer token sent but Entra ID is not configured");
            }
            return await AuthenticateTokenAsync(authorization[Bearer.Length..].Trim(), entra, cancellationToken).ConfigureAwait(false);
        }
        return new(null, AdminRefusal.Unauthenticated, "no credential");
    }

    private async Task<AdminAuthentication> AuthenticateKeyAsync(string presented, CancellationToken cancellationToken)
    {
        if (!ApiKey.TryParseAdmin(presented, out var key))
        {
            return new(null, AdminRefusal.Unauthenticated, "malformed admin key");
        }
        var record = await _store.FindAsync(key.Value.Id, cancellationToken).ConfigureAwait(false);
        var actor = "admin-key:" + key.Value.Id;
        if (record is null)
        {
            return new(actor, AdminRefusal.Unauthenticated, "unknown admin key");
        }
        if (!record.SecretMatches(key.Value.Secret))
        {
            return new(actor, AdminRefusal.Unauthenticated, "wrong admin key secret");
        }
        return record.IsRevoked ? new(actor, AdminRefusal.Unauthenticated, "revoked admin key") : new(actor, AdminRefusal.None);
    }

    private async Task<AdminAuthentication> AuthenticateTokenAsync(string token, EntraIdOptions entra, CancellationToken cancellationToken)
    {
        var check = new EntraTokenCheck(
            entra.MetadataAddress ?? EntraTokenValidator.MetadataAddressOf(entra.Authority!),
            entra.RequireHttpsMetadata,
            [entra.Audience!],
            [],
            TimeSpan.FromMinutes(2));
        var result = await _validator.ValidateAsync(token, check, cancellationToken).ConfigureAwait(false);
        if (!result.IsValid)
        {
            return new(null, AdminRefusal.Unauthenticated, result.Failure);
        }
        var identity = result.Identity!;
        var subject = identity.FindFirst("oid")?.Value ?? identity.FindFirst("sub")?.Value ?? identity.FindFirst("azp")?.Value ?? "unknown";
        if (!IsUsableSubject(subject))
        {
            // Entra's subjects are GUIDs or short base64url strings; anything else would land in logs and the audit log as is.
            return new(null, AdminRefusal.Unauthenticated, "token subject is not a short printable ASCII string");
        }
        var actor = "entra:" + subject;
        var hasRole = identity.FindAll("roles").Concat(identity.FindAll(ClaimTypes.Role))
            .Any(c => string.Equals(c.Value, entra.RequiredRole, StringComparison.Ordinal));
        return hasRole ? new(actor, AdminRefusal.None) : new(actor, AdminRefusal.Forbidden, "token lacks the admin role");
    }

    private static bool IsUsableSubject(string subject) =>
        subject.Length is > 0 and <= 128 && subject.All(c => c is > ' ' and < (char)127);
}
