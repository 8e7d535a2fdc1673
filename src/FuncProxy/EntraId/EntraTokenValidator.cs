using System.Collections.Concurrent;
using System.Security.Claims;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Protocols;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Microsoft.IdentityModel.Tokens;

namespace FuncProxy.EntraId;

/// <summary>What a token must satisfy besides its signature: who issued it, for whom, and how much clock difference is tolerated.</summary>
/// <param name="MetadataAddress">The issuer's OpenID metadata document; its <c>issuer</c> and signing keys are trusted.</param>
/// <param name="RequireHttpsMetadata">Require https for the metadata and key documents (only loopback tests turn this off).</param>
/// <param name="Audiences">Accepted <c>aud</c> values (the gateway's app registration: its client id and/or App ID URI).</param>
/// <param name="ExtraIssuers">Issuers accepted besides the metadata's own, e.g. the v1 issuer <c>https://sts.windows.net/{tenant}/</c>.</param>
/// <param name="ClockSkew">Tolerance on <c>exp</c> and <c>nbf</c>.</param>
public sealed record EntraTokenCheck(
    Uri MetadataAddress,
    bool RequireHttpsMetadata,
    IReadOnlyCollection<string> Audiences,
    IReadOnlyCollection<string> ExtraIssuers,
    TimeSpan ClockSkew);

/// <summary>A validated token's claims, or why it was refused (for logs only: the reason never reaches the client).</summary>
public readonly record struct EntraTokenResult(ClaimsIdentity? Identity, string? Failure)
{
    public bool IsValid => Identity is not null;
}

/// <summary>
/// Validates Entra ID (or any OpenID Connect issuer's) access tokens with Microsoft.IdentityModel: RS256 signature by a key
/// the issuer publishes, issuer, audience, lifetime. The issuer's metadata and signing keys are fetched once per metadata
/// address and cached by <see cref="ConfigurationManager{T}"/> (refreshed in the background, and early when a token names a
/// key it does not know, so a key roll is picked up), so validating a token costs no network round trip. One instance serves
/// the management API (<c>FuncProxy:Admin:EntraId</c>) and client calls (<c>FuncProxy:ClientTokens</c>).
/// </summary>
public sealed class EntraTokenValidator
{
    /// <summary>Longer tokens are refused before parsing (Entra's access tokens are a few kilobytes even with many groups).</summary>
    public const int MaxTokenLength = 16 * 1024;

    private static readonly string[] Algorithms = [SecurityAlgorithms.RsaSha256];

    private readonly JsonWebTokenHandler _tokens = new() { MapInboundClaims = false };
    private readonly ConcurrentDictionary<(Uri Address, bool RequireHttps), ConfigurationManager<OpenIdConnectConfiguration>> _metadata = new();

    public async Task<EntraTokenResult> ValidateAsync(string token, EntraTokenCheck check, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(token);
        ArgumentNullException.ThrowIfNull(check);
        if (token.Length > MaxTokenLength)
        {
            return new(null, "token too long");
        }
        var metadata = Metadata(check);
        OpenIdConnectConfiguration configuration;
        try
        {
            configuration = await metadata.GetConfigurationAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (InvalidOperationException)
        {
            // The issuer's metadata cannot be fetched: no token can be checked, so none is accepted.
            return new(null, "issuer metadata unavailable");
        }
        var parameters = new TokenValidationParameters
        {
            ValidIssuers = [configuration.Issuer, .. check.ExtraIssuers],
            ValidAudiences = check.Audiences,
            IssuerSigningKeys = configuration.SigningKeys,
            ValidAlgorithms = Algorithms,
            ValidateIssuer = true,
            ValidateAudience = true,
            ValidateLifetime = true,
            ValidateIssuerSigningKey = true,
            RequireSignedTokens = true,
            RequireExpirationTime = true,
            ClockSkew = check.ClockSkew,
        };
        var result = await _tokens.ValidateTokenAsync(token, parameters).ConfigureAwait(false);
        if (!result.IsValid)
        {
            if (result.Exception is SecurityTokenSignatureKeyNotFoundException)
            {
                // The issuer may have rolled its keys: fetch the metadata again (rate limited by the manager itself).
                metadata.RequestRefresh();
            }
            return new(null, "invalid bearer token (" + (result.Exception?.GetType().Name ?? "rejected") + ")");
        }
        return new(result.ClaimsIdentity, null);
    }

    /// <summary>True for a value with the shape of a compact JWS (three base64url parts), so it can be told from a FuncProxy key without parsing.</summary>
    public static bool LooksLikeJwt(ReadOnlySpan<char> value)
    {
        if (value.Length is < 16 or > MaxTokenLength || !value.StartsWith("eyJ", StringComparison.Ordinal))
        {
            return false;
        }
        var dots = 0;
        foreach (var c in value)
        {
            if (c == '.')
            {
                dots++;
            }
            else if (!char.IsAsciiLetterOrDigit(c) && c is not '-' and not '_')
            {
                return false;
            }
        }
        return dots == 2;
    }

    private ConfigurationManager<OpenIdConnectConfiguration> Metadata(EntraTokenCheck check) =>
        _metadata.GetOrAdd((check.MetadataAddress, check.RequireHttpsMetadata), static key => new ConfigurationManager<OpenIdConnectConfiguration>(
            key.Address.AbsoluteUri,
            new OpenIdConnectConfigurationRetriever(),
            new HttpDocumentRetriever { RequireHttps = key.RequireHttps }));

    /// <summary>The metadata document of an authority: <c>{authority}/.well-known/openid-configuration</c>.</summary>
    public static Uri MetadataAddressOf(Uri authority)
    {
        ArgumentNullException.ThrowIfNull(authority);
        return new Uri(authority.AbsoluteUri.TrimEnd('/') + "/.well-known/openid-configuration");
    }
}
