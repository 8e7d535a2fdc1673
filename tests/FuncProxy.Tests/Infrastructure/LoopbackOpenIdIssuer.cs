using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace FuncProxy.Tests.Infrastructure;

/// <summary>
/// A stand-in for Entra ID, which cannot be reached from this machine: an OpenID metadata document and a JWKS with a locally
/// generated RSA key, served on loopback, and tokens shaped like Entra's signed with that key (or with <see cref="OtherKey"/>,
/// which it does not publish). The gateway's validation code path is the production one.
/// </summary>
public sealed class LoopbackOpenIdIssuer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly RSA _key;

    private LoopbackOpenIdIssuer(WebApplication app, RSA key, string issuer)
    {
        _app = app;
        _key = key;
        Issuer = issuer;
    }

    /// <summary>The authority and issuer: <c>http://127.0.0.1:{port}/tenant/v2.0</c>.</summary>
    public string Issuer { get; }

    /// <summary>A key the issuer does not publish: tokens signed with it have a bad signature.</summary>
    public RSA OtherKey { get; } = RSA.Create(2048);

    /// <summary>How many times the metadata document was fetched.</summary>
    public int MetadataFetches => _metadataFetches;
    private int _metadataFetches;

    public static async Task<LoopbackOpenIdIssuer> StartAsync()
    {
        var key = RSA.Create(2048);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        LoopbackOpenIdIssuer? issuer = null;
        var jwk = JsonWebKeyConverter.ConvertFromRSASecurityKey(new RsaSecurityKey(key.ExportParameters(false)) { KeyId = "test-key" });
        app.MapGet("/tenant/v2.0/.well-known/openid-configuration", (HttpContext c) =>
        {
            Interlocked.Increment(ref issuer!._metadataFetches);
            return Results.Json(new Dictionary<string, object>
            {
                ["issuer"] = issuer.Issuer,
                ["jwks_uri"] = $"{c.Request.Scheme}://{c.Request.Host}/tenant/discovery/v2.0/keys",
                ["id_token_signing_alg_values_supported"] = new[] { "RS256" },
            });
        });
        app.MapGet("/tenant/discovery/v2.0/keys", () => Results.Json(new { keys = new[] { new { kty = jwk.Kty, use = "sig", kid = jwk.Kid, n = jwk.N, e = jwk.E } } }));
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        issuer = new LoopbackOpenIdIssuer(app, key, address + "/tenant/v2.0");
        return issuer;
    }

    /// <summary>A signed token with <paramref name="claims"/> (plus the usual times) from <paramref name="issuer"/> (default: this issuer).</summary>
    public string CreateToken(
        string audience,
        IDictionary<string, object> claims,
        string? issuer = null,
        RSA? key = null,
        DateTime? expires = null,
        DateTime? notBefore = null)
    {
        var descriptor = new SecurityTokenDescriptor
        {
            Issuer = issuer ?? Issuer,
            Audience = audience,
            NotBefore = notBefore ?? DateTime.UtcNow.AddMinutes(-5),
            IssuedAt = DateTime.UtcNow.AddMinutes(-5),
            Expires = expires ?? DateTime.UtcNow.AddMinutes(30),
            Claims = claims,
            SigningCredentials = new SigningCredentials(new RsaSecurityKey(key ?? _key) { KeyId = "test-key" }, SecurityAlgorithms.RsaSha256),
        };
        return new JsonWebTokenHandler().CreateToken(descriptor);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        _key.Dispose();
        OtherKey.Dispose();
    }
}
