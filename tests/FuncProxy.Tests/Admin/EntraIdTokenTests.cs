using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json;
using FuncProxy.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using static FuncProxy.Tests.Admin.AdminTestKit;

namespace FuncProxy.Tests.Admin;

/// <summary>
/// Entra ID bearer tokens for the management API. Entra ID itself cannot be reached from this machine, so a loopback
/// issuer stands in for it: an OpenID metadata document and a JWKS with a locally generated RSA key, and tokens shaped
/// like Entra's (issuer, audience, oid, roles) signed with that key. The gateway's code path is the production one.
/// </summary>
public sealed class EntraIdTokenTests : IAsyncLifetime
{
    private const string Audience = "api://funcproxy-test";
    private const string Role = "FuncProxy.Admin";
    private readonly RSA _rsa = RSA.Create(2048);
    private readonly RSA _otherRsa = RSA.Create(2048);
    private WebApplication _issuer = null!;
    private string _issuerName = null!;
    private UpstreamStub _stub = null!;
    private GatewayHost _gateway = null!;

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        _issuer = builder.Build();
        var signingKey = new RsaSecurityKey(_rsa.ExportParameters(false)) { KeyId = "test-key" };
        var jwk = JsonWebKeyConverter.ConvertFromRSASecurityKey(signingKey);
        _issuer.MapGet("/tenant/v2.0/.well-known/openid-configuration", (HttpContext c) => Results.Json(new Dictionary<string, object>
        {
            ["issuer"] = _issuerName,
            ["jwks_uri"] = $"{c.Request.Scheme}://{c.Request.Host}/tenant/discovery/v2.0/keys",
            ["id_token_signing_alg_values_supported"] = new[] { "RS256" },
        }));
        _issuer.MapGet("/tenant/discovery/v2.0/keys", () => Results.Json(new { keys = new[] { new { kty = jwk.Kty, use = "sig", kid = jwk.Kid, n = jwk.N, e = jwk.E } } }));
        await _issuer.StartAsync();
        var address = _issuer.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        _issuerName = address + "/tenant/v2.0";

        _stub = await UpstreamStub.StartAsync();
        _gateway = await GatewayHost.StartAsync(Settings(_stub,
            ("FuncProxy:Admin:EntraId:Authority", _issuerName),
            ("FuncProxy:Admin:EntraId:Audience", Audience),
            ("FuncProxy:Admin:EntraId:RequiredRole", Role),
            ("FuncProxy:Admin:EntraId:RequireHttpsMetadata", "false"),
            ("FuncProxy:Admin:MaxFailedAttempts", "100")));
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _stub.DisposeAsync();
        await _issuer.StopAsync();
        await _issuer.DisposeAsync();
        _rsa.Dispose();
        _otherRsa.Dispose();
    }

    private string Token(string[] roles, string audience = Audience, RSA? key = null, DateTime? expires = null, string oid = "00000000-0000-0000-0000-00000000abcd")
    {
        var descriptor = new SecurityTokenDescriptor
        {
            Issuer = _issuerName,
            Audience = audience,
            NotBefore = DateTime.UtcNow.AddMinutes(-5),
            IssuedAt = DateTime.UtcNow.AddMinutes(-5),
            Expires = expires ?? DateTime.UtcNow.AddMinutes(30),
            Claims = new Dictionary<string, object> { ["oid"] = oid, ["sub"] = "subject-1", ["roles"] = roles },
            SigningCredentials = new SigningCredentials(new RsaSecurityKey(key ?? _rsa) { KeyId = "test-key" }, SecurityAlgorithms.RsaSha256),
        };
        return new JsonWebTokenHandler().CreateToken(descriptor);
    }

    private async Task<HttpResponseMessage> GetKeysAsync(string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/admin/keys");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return await _gateway.Client.SendAsync(request);
    }

    [Fact]
    public async Task A_signed_token_for_the_audience_with_the_admin_role_is_accepted_and_its_subject_is_audited()
    {
        var token = Token([Role]);
        using var list = await GetKeysAsync(token);
        Assert.Equal(HttpStatusCode.OK, list.StatusCode);

        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/admin/keys") { Content = JsonBody("""{"name":"by-token","allowedUpstreams":["echo"]}""") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var created = await _gateway.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);

        using var admin = _gateway.AdminClient(await _gateway.MintAdminKeyAsync());
        var entry = JsonDocument.Parse(await admin.GetStringAsync("audit")).RootElement.GetProperty("items").EnumerateArray()
            .Single(e => e.GetProperty("action").GetString() == "key.create");
        Assert.Equal("entra:00000000-0000-0000-0000-00000000abcd", entry.GetProperty("actor").GetString());
    }

    [Fact]
    public async Task A_valid_token_without_the_admin_role_gets_403_and_is_audited_as_denied()
    {
        using var response = await GetKeysAsync(Token(["Reader"]));
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        using var admin = _gateway.AdminClient(await _gateway.MintAdminKeyAsync());
        var entry = JsonDocument.Parse(await admin.GetStringAsync("audit")).RootElement.GetProperty("items").EnumerateArray()
            .Single(e => e.GetProperty("action").GetString() == "admin.auth_failed");
        Assert.Equal("denied", entry.GetProperty("result").GetString());
    }

    [Fact]
    public async Task Tokens_for_another_audience_signed_by_another_key_expired_or_malformed_get_401()
    {
        foreach (var token in new[]
        {
            Token([Role], audience: "api://someone-else"),
            Token([Role], key: _otherRsa),
            Token([Role], expires: DateTime.UtcNow.AddMinutes(-10)),
            "not-a-jwt",
        })
        {
            using var response = await GetKeysAsync(token);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }
    }

    [Fact]
    public async Task Hostile_tokens_and_signed_tokens_with_unusable_subjects_get_401_problem_json_and_no_exception_in_the_log()
    {
        static string Segment(string json) => Base64UrlEncoder.Encode(System.Text.Encoding.UTF8.GetBytes(json));
        var unsignedHeader = Segment("""{"alg":"RS256","kid":"test-key","typ":"JWT"}""");
        var tokens = new[]
        {
            Token([Role], oid: "\ud800"),
            Token([Role], oid: "line\nbreak"),
            Token([Role], oid: new string('a', 4000)),
            Segment("""{"alg":"\ud800"}""") + "." + Segment("""{"oid":"x"}""") + ".c2ln",
            unsignedHeader + "." + Segment("""{"oid":"\udc00","roles":["FuncProxy.Admin"]}""") + ".c2ln",
            unsignedHeader + "." + Segment("""{"oid":1,"oid":2}""") + ".",
            unsignedHeader + "." + Base64UrlEncoder.Encode([0xC3, 0x28, 0xFF]) + ".c2ln",
            "a.b.c", "..", "....", "e30.e30.", new string('A', 6000) + "." + new string('B', 6000) + ".C",
        };
        foreach (var token in tokens)
        {
            using var response = await GetKeysAsync(token);
            await Problems.AssertProblemAsync(response, 401, "admin_unauthorized");
        }
        Assert.DoesNotContain(_gateway.Logs.Lines, l => l.StartsWith("Error", StringComparison.Ordinal) || l.StartsWith("Critical", StringComparison.Ordinal));
        Assert.DoesNotContain(_gateway.Logs.Lines, l => l.Contains("Exception:", StringComparison.Ordinal) && !l.StartsWith("Debug", StringComparison.Ordinal) && !l.StartsWith("Trace", StringComparison.Ordinal));
    }
}
