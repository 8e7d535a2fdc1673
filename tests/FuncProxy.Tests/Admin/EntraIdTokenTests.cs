using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json;
using FuncProxy.Tests.Infrastructure;
using Microsoft.IdentityModel.Tokens;
using static FuncProxy.Tests.Admin.AdminTestKit;

namespace FuncProxy.Tests.Admin;

/// <summary>
/// Entra ID bearer tokens for the management API. Entra ID itself cannot be reached from this machine, so a loopback
/// issuer (<see cref="LoopbackOpenIdIssuer"/>) stands in for it: an OpenID metadata document and a JWKS with a locally
/// generated RSA key, and tokens shaped like Entra's (issuer, audience, oid, roles) signed with that key. The gateway's code
/// path is the production one.
/// </summary>
public sealed class EntraIdTokenTests : IAsyncLifetime
{
    private const string Audience = "api://funcproxy-test";
    private const string Role = "FuncProxy.Admin";
    private LoopbackOpenIdIssuer _issuer = null!;
    private UpstreamStub _stub = null!;
    private GatewayHost _gateway = null!;

    public async Task InitializeAsync()
    {
        _issuer = await LoopbackOpenIdIssuer.StartAsync();
        _stub = await UpstreamStub.StartAsync();
        _gateway = await GatewayHost.StartAsync(Settings(_stub,
            ("FuncProxy:Admin:EntraId:Authority", _issuer.Issuer),
            ("FuncProxy:Admin:EntraId:Audience", Audience),
            ("FuncProxy:Admin:EntraId:RequiredRole", Role),
            ("FuncProxy:Admin:EntraId:RequireHttpsMetadata", "false"),
            ("FuncProxy:Admin:MaxFailedAttempts", "100")));
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _stub.DisposeAsync();
        await _issuer.DisposeAsync();
    }

    private string Token(string[] roles, string audience = Audience, RSA? key = null, DateTime? expires = null, string oid = "00000000-0000-0000-0000-00000000abcd") =>
        _issuer.CreateToken(audience, new Dictionary<string, object> { ["oid"] = oid, ["sub"] = "subject-1", ["roles"] = roles }, key: key, expires: expires);

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
            Token([Role], key: _issuer.OtherKey),
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
