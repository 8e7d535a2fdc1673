using System.Net;
using System.Net.Sockets;
using FuncProxy.Tests.Infrastructure;
using static FuncProxy.Tests.Admin.AdminTestKit;

namespace FuncProxy.Tests.EntraId;

/// <summary>
/// Where client tokens stop: with FuncProxy:ClientTokens unset a JWT is just a malformed key, and while the issuer's metadata
/// cannot be fetched no token is accepted but keys keep working. The loopback OpenID issuer stands in for Entra ID, which
/// cannot be reached from this machine.
/// </summary>
public sealed class ClientTokenBoundaryTests
{
    private const string TenantId = "11111111-2222-3333-4444-555555555555";
    private const string Audience = "aaaaaaaa-0000-0000-0000-000000000001";

    private static string Token(LoopbackOpenIdIssuer issuer) => issuer.CreateToken(Audience, new Dictionary<string, object>
    {
        ["tid"] = TenantId, ["azp"] = "bbbbbbbb-0000-0000-0000-000000000001", ["oid"] = "eeeeeeee-0000-0000-0000-000000000001", ["roles"] = new[] { "FuncProxy.Client" },
    });

    [Fact]
    public async Task Without_client_tokens_configured_a_JWT_is_refused_as_a_key_exactly_as_before()
    {
        await using var issuer = await LoopbackOpenIdIssuer.StartAsync();
        await using var stub = await UpstreamStub.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(Settings(stub));
        using var response = await gateway.SendAsync(HttpMethod.Get, "/api/echo/ping", Token(issuer));
        await Problems.AssertProblemAsync(response, 401, "invalid_api_key");
        Assert.Equal(0, issuer.MetadataFetches);
    }

    [Fact]
    public async Task While_the_issuer_metadata_cannot_be_fetched_tokens_get_401_and_keys_keep_working()
    {
        await using var issuer = await LoopbackOpenIdIssuer.StartAsync();
        await using var stub = await UpstreamStub.StartAsync();
        // A loopback port nobody listens on: the metadata fetch fails at once.
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var deadPort = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        var keyId = FuncProxy.Keys.ApiKey.NewId();
        await using var gateway = await GatewayHost.StartAsync(Settings(stub,
            ("FuncProxy:ClientTokens:Authority", issuer.Issuer),
            ("FuncProxy:ClientTokens:MetadataAddress", $"http://127.0.0.1:{deadPort}/tenant/v2.0/.well-known/openid-configuration"),
            ("FuncProxy:ClientTokens:TenantId", TenantId),
            ("FuncProxy:ClientTokens:Audiences:0", Audience),
            ("FuncProxy:ClientTokens:RequireHttpsMetadata", "false"),
            ("FuncProxy:ClientTokens:Rules:0:AppId", "bbbbbbbb-0000-0000-0000-000000000001"),
            ("FuncProxy:ClientTokens:Rules:0:KeyId", keyId)));
        var key = await gateway.MintKeyAsync("echo");

        using var refused = await gateway.SendAsync(HttpMethod.Get, "/api/echo/ping", Token(issuer));
        await Problems.AssertProblemAsync(refused, 401, "invalid_token");
        Assert.Equal(200, await CallWithKeyAsync(gateway.Client, key.Value));
        Assert.DoesNotContain(gateway.Logs.Lines, l => l.StartsWith("Error", StringComparison.Ordinal) || l.StartsWith("Critical", StringComparison.Ordinal));
    }
}
