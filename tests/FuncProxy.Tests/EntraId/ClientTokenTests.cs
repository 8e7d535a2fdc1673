using System.Net;
using System.Net.Http.Headers;
using FuncProxy.Keys;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using static FuncProxy.Tests.Admin.AdminTestKit;

namespace FuncProxy.Tests.EntraId;

/// <summary>
/// Client calls with Entra ID access tokens instead of FuncProxy keys (FuncProxy:ClientTokens). Entra ID itself cannot be
/// reached from this machine, so the loopback OpenID issuer the admin tests use stands in for it (<see cref="LoopbackOpenIdIssuer"/>:
/// its metadata and JWKS are real HTTP on loopback, its tokens are shaped like Entra's v1 and v2 access tokens); everything
/// from the gateway's side (discovery, signature, issuer, audience, lifetime, tenant, scope or role, mapping, the key's limits)
/// is the production code path. Each mapped key has its own requests-per-minute limit, so the RateLimit-Policy header tells
/// which key a token was mapped to.
/// </summary>
public sealed class ClientTokenTests : IAsyncLifetime
{
    private const string TenantId = "11111111-2222-3333-4444-555555555555";
    private const string OtherTenantId = "99999999-2222-3333-4444-555555555555";
    private const string Audience = "api://funcproxy-test";
    private const string AudienceClientId = "aaaaaaaa-0000-0000-0000-000000000001";
    private const string ServiceAppId = "bbbbbbbb-0000-0000-0000-000000000001";
    private const string SpaAppId = "bbbbbbbb-0000-0000-0000-000000000002";
    private const string LimitedAppId = "bbbbbbbb-0000-0000-0000-000000000003";
    private const string RevokedAppId = "bbbbbbbb-0000-0000-0000-000000000004";
    private const string UnmappedAppId = "bbbbbbbb-0000-0000-0000-00000000ffff";
    private const string UserOid = "cccccccc-0000-0000-0000-000000000001";
    private const string DisabledUserOid = "cccccccc-0000-0000-0000-000000000002";
    private const string GroupId = "dddddddd-0000-0000-0000-000000000001";

    private readonly string _serviceKey = ApiKey.NewId();
    private readonly string _userKey = ApiKey.NewId();
    private readonly string _spaKey = ApiKey.NewId();
    private readonly string _roleKey = ApiKey.NewId();
    private readonly string _groupKey = ApiKey.NewId();
    private readonly string _limitedKey = ApiKey.NewId();
    private readonly string _disabledKey = ApiKey.NewId();
    private readonly string _revokedKey = ApiKey.NewId();
    private LoopbackOpenIdIssuer _issuer = null!;
    private UpstreamStub _stub = null!;
    private GatewayHost _gateway = null!;

    public async Task InitializeAsync()
    {
        _issuer = await LoopbackOpenIdIssuer.StartAsync();
        _stub = await UpstreamStub.StartAsync();
        _gateway = await GatewayHost.StartAsync(Settings(_stub,
            ("FuncProxy:ClientTokens:Authority", _issuer.Issuer),
            ("FuncProxy:ClientTokens:TenantId", TenantId),
            ("FuncProxy:ClientTokens:Audiences:0", Audience),
            ("FuncProxy:ClientTokens:Audiences:1", AudienceClientId),
            ("FuncProxy:ClientTokens:RequireHttpsMetadata", "false"),
            ("FuncProxy:ClientTokens:Rules:0:AppId", ServiceAppId),
            ("FuncProxy:ClientTokens:Rules:0:KeyId", _serviceKey),
            ("FuncProxy:ClientTokens:Rules:1:ObjectId", UserOid),
            ("FuncProxy:ClientTokens:Rules:1:KeyId", _userKey),
            ("FuncProxy:ClientTokens:Rules:2:AppId", SpaAppId),
            ("FuncProxy:ClientTokens:Rules:2:KeyId", _spaKey),
            ("FuncProxy:ClientTokens:Rules:3:AppRole", "Gold"),
            ("FuncProxy:ClientTokens:Rules:3:KeyId", _roleKey),
            ("FuncProxy:ClientTokens:Rules:4:Group", GroupId),
            ("FuncProxy:ClientTokens:Rules:4:KeyId", _groupKey),
            ("FuncProxy:ClientTokens:Rules:5:AppId", LimitedAppId),
            ("FuncProxy:ClientTokens:Rules:5:KeyId", _limitedKey),
            ("FuncProxy:ClientTokens:Rules:6:ObjectId", DisabledUserOid),
            ("FuncProxy:ClientTokens:Rules:6:KeyId", _disabledKey),
            ("FuncProxy:ClientTokens:Rules:7:AppId", RevokedAppId),
            ("FuncProxy:ClientTokens:Rules:7:KeyId", _revokedKey),
            // Refused tokens count towards the per-IP lockout like refused keys; these tests refuse many on purpose.
            ("FuncProxy:Keys:MaxFailuresPerIp", "1000")));
        var lifecycle = _gateway.Services.GetRequiredService<KeyLifecycle>();
        foreach (var (id, limit) in new[] { (_serviceKey, 1001), (_userKey, 1002), (_spaKey, 1003), (_roleKey, 1004), (_groupKey, 1005), (_limitedKey, 2), (_disabledKey, 1007), (_revokedKey, 1008) })
        {
            await lifecycle.CreateAsync(
                new KeyCreation { Name = "token-" + limit, AllowedUpstreams = ["echo"], Limits = new KeyLimits { RequestsPerMinute = limit } },
                ApiKey.GenerateFor(id));
        }
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _stub.DisposeAsync();
        await _issuer.DisposeAsync();
    }

    /// <summary>An app (client credentials, e.g. a managed identity) token as Entra v2 issues it: no scp, the app role in roles.</summary>
    private string AppToken(string appId, string[]? roles = null, string audience = AudienceClientId, string tid = TenantId, string? issuer = null,
        System.Security.Cryptography.RSA? key = null, DateTime? expires = null) =>
        _issuer.CreateToken(audience, new Dictionary<string, object>
        {
            ["tid"] = tid,
            ["azp"] = appId,
            ["oid"] = "eeeeeeee-0000-0000-0000-" + appId[^12..],
            ["sub"] = "eeeeeeee-0000-0000-0000-" + appId[^12..],
            ["roles"] = roles ?? ["FuncProxy.Client"],
            ["ver"] = "2.0",
        }, issuer: issuer, key: key, expires: expires);

    /// <summary>A delegated token (an SPA signed a user in with MSAL, auth code + PKCE): scp holds the scope, azp the SPA.</summary>
    private string UserToken(string oid, string scopes = "access_as_user", string appId = SpaAppId, string[]? groups = null) =>
        _issuer.CreateToken(AudienceClientId, new Dictionary<string, object>
        {
            ["tid"] = TenantId,
            ["azp"] = appId,
            ["oid"] = oid,
            ["sub"] = "pairwise-subject-of-" + oid[^4..],
            ["scp"] = scopes,
            ["groups"] = groups ?? [],
            ["ver"] = "2.0",
        });

    private async Task<HttpResponseMessage> CallAsync(string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/echo/ping");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return await _gateway.Client.SendAsync(request);
    }

    /// <summary>The requests-per-minute quota in RateLimit-Policy: which mapped key served the call.</summary>
    private static string Quota(HttpResponseMessage response) =>
        response.Headers.GetValues("RateLimit-Policy").Single().Split(';').Single(p => p.StartsWith("q=", StringComparison.Ordinal))[2..];

    private async Task AssertServedByAsync(string token, int quota)
    {
        using var response = await CallAsync(token);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(quota.ToString(System.Globalization.CultureInfo.InvariantCulture), Quota(response));
    }

    private async Task AssertRefusedAsync(string token)
    {
        using var response = await CallAsync(token);
        var body = await Problems.AssertProblemAsync(response, 401, "invalid_token");
        Assert.Equal("A valid access token for this gateway, or an API key, is required.", body.GetProperty("detail").GetString());
        Assert.Equal("Bearer error=\"invalid_token\"", response.Headers.WwwAuthenticate.Single().ToString());
    }

    [Fact]
    public async Task An_app_token_is_mapped_by_its_app_id_and_never_reaches_the_upstream()
    {
        var token = AppToken(ServiceAppId);
        await AssertServedByAsync(token, 1001);
        var forwarded = _stub.Requests.Last(r => r.Path.EndsWith("/ping", StringComparison.Ordinal));
        Assert.DoesNotContain(forwarded.Headers, h => h.Value.Contains(token[..40], StringComparison.Ordinal));
        Assert.False(forwarded.Headers.ContainsKey("Authorization"));
    }

    [Fact]
    public async Task A_v1_token_of_the_tenant_is_accepted_with_appid_and_the_app_id_uri_audience()
    {
        var token = _issuer.CreateToken(Audience, new Dictionary<string, object>
        {
            ["tid"] = TenantId,
            ["appid"] = ServiceAppId,
            ["oid"] = "eeeeeeee-0000-0000-0000-000000000009",
            ["roles"] = new[] { "FuncProxy.Client" },
            ["ver"] = "1.0",
        }, issuer: "https://sts.windows.net/" + TenantId + "/");
        await AssertServedByAsync(token, 1001);
    }

    [Fact]
    public async Task A_user_token_is_mapped_by_object_id_before_its_client_app_and_otherwise_by_the_app()
    {
        await AssertServedByAsync(UserToken(UserOid), 1002);
        // Another user of the same SPA has no rule of their own: the SPA's app id rule maps them.
        await AssertServedByAsync(UserToken("cccccccc-0000-0000-0000-0000000000aa"), 1003);
    }

    [Fact]
    public async Task App_role_and_group_rules_map_tokens_that_no_id_rule_maps()
    {
        await AssertServedByAsync(AppToken(UnmappedAppId, roles: ["FuncProxy.Client", "Gold"]), 1004);
        await AssertServedByAsync(UserToken("cccccccc-0000-0000-0000-0000000000bb", appId: UnmappedAppId, groups: ["dddddddd-0000-0000-0000-000000000099", GroupId]), 1005);
        // Both a role rule and a group rule match: the role rule wins.
        await AssertServedByAsync(_issuer.CreateToken(AudienceClientId, new Dictionary<string, object>
        {
            ["tid"] = TenantId, ["azp"] = UnmappedAppId, ["oid"] = "cccccccc-0000-0000-0000-0000000000cc",
            ["scp"] = "access_as_user", ["roles"] = new[] { "Gold" }, ["groups"] = new[] { GroupId },
        }), 1004);
    }

    [Fact]
    public async Task Wrong_audience_issuer_tenant_lifetime_signature_scope_role_or_mapping_get_the_same_401_problem()
    {
        var refused = new (string Why, string Token)[]
        {
            ("another audience", AppToken(ServiceAppId, audience: "api://someone-else")),
            ("another tenant's v1 issuer", AppToken(ServiceAppId, issuer: "https://sts.windows.net/" + OtherTenantId + "/")),
            ("another issuer", AppToken(ServiceAppId, issuer: "https://login.microsoftonline.com/" + OtherTenantId + "/v2.0")),
            ("the right issuer, another tenant id", AppToken(ServiceAppId, tid: OtherTenantId)),
            ("expired beyond the clock skew", AppToken(ServiceAppId, expires: DateTime.UtcNow.AddMinutes(-3))),
            ("a key the issuer does not publish", AppToken(ServiceAppId, key: _issuer.OtherKey)),
            ("a user token without the scope", UserToken(UserOid, scopes: "User.Read")),
            ("an app token without the app role", AppToken(ServiceAppId, roles: ["Gold"])),
            ("valid but unmapped", AppToken(UnmappedAppId)),
            ("a tampered payload", Tamper(AppToken(UnmappedAppId))),
            ("JWT-shaped garbage", "eyJhbGciOiJSUzI1NiJ9.eyJ4IjoxfQ.c2ln"),
        };
        foreach (var (why, token) in refused)
        {
            using var response = await CallAsync(token);
            Assert.True(response.StatusCode == HttpStatusCode.Unauthorized, why);
            await AssertRefusedAsync(token);
        }
        // Nothing of a token (its signature, or any part of it) reaches the log.
        foreach (var (_, token) in refused)
        {
            Assert.DoesNotContain(_gateway.Logs.Lines, l => l.Contains(token[^20..], StringComparison.Ordinal));
        }
        Assert.Contains(_gateway.Logs.Lines, l => l.Contains("UnmappedToken", StringComparison.Ordinal));
        Assert.Contains(_gateway.Logs.Lines, l => l.Contains("TokenNotPermitted", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_token_within_the_clock_skew_of_its_expiry_is_still_accepted()
    {
        await AssertServedByAsync(AppToken(ServiceAppId, expires: DateTime.UtcNow.AddSeconds(-30)), 1001);
    }

    [Fact]
    public async Task The_mapped_keys_limit_applies_to_tokens_429_after_it()
    {
        var token = AppToken(LimitedAppId);
        await AssertServedByAsync(token, 2);
        // A second token of the same app counts against the same key.
        await AssertServedByAsync(AppToken(LimitedAppId), 2);
        using var third = await CallAsync(token);
        await Problems.AssertProblemAsync(third, 429, "rate_limited");
        Assert.NotNull(third.Headers.RetryAfter);
    }

    [Fact]
    public async Task Disabling_or_revoking_the_mapped_key_refuses_its_tokens()
    {
        var user = UserToken(DisabledUserOid);
        var app = AppToken(RevokedAppId);
        await AssertServedByAsync(user, 1007);
        await AssertServedByAsync(app, 1008);
        var lifecycle = _gateway.Services.GetRequiredService<KeyLifecycle>();
        await lifecycle.SetEnabledAsync(_disabledKey, enabled: false);
        await lifecycle.RevokeAsync(_revokedKey);
        foreach (var token in new[] { user, app })
        {
            using var refused = await Eventually.PollAsync(() => CallAsync(token), r => r.StatusCode == HttpStatusCode.Unauthorized);
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        }
        await AssertRefusedAsync(user);
        await AssertRefusedAsync(app);
    }

    [Fact]
    public async Task FuncProxy_keys_work_exactly_as_before_beside_tokens()
    {
        var key = await _gateway.MintKeyAsync("echo");
        Assert.Equal(200, await CallWithKeyAsync(_gateway.Client, key.Value));
        using var wrong = await _gateway.SendAsync(HttpMethod.Get, "/api/echo/ping", key.Value[..^3] + "abc");
        await Problems.AssertProblemAsync(wrong, 401, "invalid_api_key");
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/echo/ping");
        request.Headers.Add("x-api-key", key.Value);
        using var viaHeader = await _gateway.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, viaHeader.StatusCode);
    }

    [Fact]
    public async Task Validating_many_tokens_fetches_the_issuer_metadata_once()
    {
        for (var i = 0; i < 5; i++)
        {
            await AssertServedByAsync(AppToken(ServiceAppId), 1001);
        }
        Assert.Equal(1, _issuer.MetadataFetches);
    }

    /// <summary>The token with one payload character changed: its signature no longer holds.</summary>
    private static string Tamper(string token)
    {
        var parts = token.Split('.');
        var payload = parts[1].ToCharArray();
        payload[10] = payload[10] == 'A' ? 'B' : 'A';
        return parts[0] + "." + new string(payload) + "." + parts[2];
    }
}
