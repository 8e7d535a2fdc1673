using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using FuncProxy.Keys;
using FuncProxy.Server;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using static FuncProxy.Tests.Admin.AdminTestKit;

namespace FuncProxy.Tests.EntraId;

/// <summary>
/// Token-to-key rules made by operators through the management API and the CLI: validated, stored in the tokenrules
/// table, audited under the mapped key, in force on the instance that made them at once and on other instances within
/// FuncProxy:ClientTokens:RuleRefreshInterval. Entra ID cannot be reached here: the loopback OpenID issuer stands in for it.
/// </summary>
public sealed class TokenRuleManagementTests : IAsyncLifetime
{
    private const string TenantId = "11111111-2222-3333-4444-555555555555";
    private const string Audience = "aaaaaaaa-0000-0000-0000-000000000001";
    private const string ConfiguredAppId = "bbbbbbbb-0000-0000-0000-000000000001";
    private const string ApiAppId = "bbbbbbbb-0000-0000-0000-0000000000a1";

    private readonly string _prefix = TestStorage.NewTablePrefix();
    private readonly string _configuredKey = ApiKey.NewId();
    private LoopbackOpenIdIssuer _issuer = null!;
    private UpstreamStub _stub = null!;
    private GatewayHost _gateway = null!;

    public async Task InitializeAsync()
    {
        _issuer = await LoopbackOpenIdIssuer.StartAsync();
        _stub = await UpstreamStub.StartAsync();
        _gateway = await StartGatewayAsync();
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _stub.DisposeAsync();
        await _issuer.DisposeAsync();
    }

    private Task<GatewayHost> StartGatewayAsync() => GatewayHost.StartAsync(Settings(_stub,
        ("FuncProxy:ClientTokens:Authority", _issuer.Issuer),
        ("FuncProxy:ClientTokens:TenantId", TenantId),
        ("FuncProxy:ClientTokens:Audiences:0", Audience),
        ("FuncProxy:ClientTokens:RequireHttpsMetadata", "false"),
        ("FuncProxy:ClientTokens:RuleRefreshInterval", "00:00:01"),
        ("FuncProxy:ClientTokens:Rules:0:AppId", ConfiguredAppId),
        ("FuncProxy:ClientTokens:Rules:0:KeyId", _configuredKey),
        ("FuncProxy:Keys:MaxFailuresPerIp", "1000")), _prefix);

    private string AppToken(string appId, params string[] roles) => _issuer.CreateToken(Audience, new Dictionary<string, object>
    {
        ["tid"] = TenantId,
        ["azp"] = appId,
        ["oid"] = "eeeeeeee-0000-0000-0000-" + appId[^12..],
        ["roles"] = roles.Length == 0 ? ["FuncProxy.Client"] : roles,
    });

    private static async Task<HttpStatusCode> CallAsync(GatewayHost gateway, string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/echo/ping");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await gateway.Client.SendAsync(request);
        return response.StatusCode;
    }

    private async Task<string> MintKeyAsync(string name) =>
        (await _gateway.Services.GetRequiredService<KeyLifecycle>().CreateAsync(new KeyCreation { Name = name, AllowedUpstreams = ["echo"] })).Record.Id;

    [Fact]
    public async Task Rules_made_through_the_API_map_tokens_at_once_are_audited_under_the_key_and_deleting_them_refuses_the_tokens()
    {
        var keyId = await MintKeyAsync("api-mapped");
        using var admin = _gateway.AdminClient(await _gateway.MintAdminKeyAsync());
        var token = AppToken(ApiAppId);
        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(_gateway, token));

        using var created = await admin.PostAsync("token-rules", JsonBody($$"""{"match":"appId","value":"{{ApiAppId}}","keyId":"{{keyId}}","description":"batch job"}"""));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var rule = await JsonAsync(created);
        var ruleId = rule.GetProperty("id").GetString()!;
        Assert.StartsWith("appid-", ruleId, StringComparison.Ordinal);
        Assert.Equal("/api/admin/token-rules/" + ruleId, created.Headers.Location!.OriginalString);
        Assert.Equal("api", rule.GetProperty("source").GetString());
        Assert.StartsWith("admin-key:", rule.GetProperty("createdBy").GetString(), StringComparison.Ordinal);
        // In force on this instance at once, no refresh interval to wait for.
        Assert.Equal(HttpStatusCode.OK, await CallAsync(_gateway, token));

        var list = await JsonAsync(await admin.GetAsync("token-rules"));
        Assert.True(list.GetProperty("enabled").GetBoolean());
        var items = list.GetProperty("items").EnumerateArray().ToList();
        Assert.Equal(["configuration", "api"], items.Select(i => i.GetProperty("source").GetString()));
        Assert.Equal(_configuredKey, items[0].GetProperty("keyId").GetString());
        Assert.Equal(JsonValueKind.Null, items[0].GetProperty("id").ValueKind);
        Assert.Equal(keyId, (await JsonAsync(await admin.GetAsync("token-rules/" + ruleId))).GetProperty("keyId").GetString());

        // The same matcher again (whatever its case), a configured matcher, an unknown key, bad fields.
        using var again = await admin.PostAsync("token-rules", JsonBody($$"""{"match":"appId","value":"{{ApiAppId.ToUpperInvariant()}}","keyId":"{{keyId}}"}"""));
        Assert.Equal(ruleId, (await Problems.AssertProblemAsync(again, 409, "token_rule_exists")).GetProperty("id").GetString());
        using var configured = await admin.PostAsync("token-rules", JsonBody($$"""{"match":"appId","value":"{{ConfiguredAppId}}","keyId":"{{keyId}}"}"""));
        await Problems.AssertProblemAsync(configured, 409, "token_rule_exists");
        using var noKey = await admin.PostAsync("token-rules", JsonBody($$"""{"match":"group","value":"dddddddd-0000-0000-0000-000000000001","keyId":"{{ApiKey.NewId()}}"}"""));
        Assert.Equal(["keyId"], await ErrorFieldsAsync(noKey));
        using var invalid = await admin.PostAsync("token-rules", JsonBody("""{"match":"upn","value":"has space","keyId":"nope","extra":1}"""));
        Assert.Equal(["extra", "keyId", "match", "value"], (await ErrorFieldsAsync(invalid)).Order(StringComparer.Ordinal));
        using var badId = await admin.GetAsync("token-rules/not-a-rule");
        await Problems.AssertProblemAsync(badId, 400, "invalid_request");

        using var deleted = await admin.DeleteAsync("token-rules/" + ruleId);
        Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(_gateway, token));
        using var gone = await admin.GetAsync("token-rules/" + ruleId);
        await Problems.AssertProblemAsync(gone, 404, "token_rule_not_found");
        using var deletedAgain = await admin.DeleteAsync("token-rules/" + ruleId);
        await Problems.AssertProblemAsync(deletedAgain, 404, "token_rule_not_found");

        var audit = (await JsonAsync(await admin.GetAsync("audit?keyId=" + keyId))).GetProperty("items").EnumerateArray()
            .Select(e => (Action: e.GetProperty("action").GetString(), Result: e.GetProperty("result").GetString(), Detail: e.GetProperty("detail").GetString()))
            .ToList();
        Assert.Contains(("token_rule.create", "success", $"rule {ruleId}: appId {ApiAppId}"), audit);
        Assert.Contains(("token_rule.create", "conflict", $"rule {ruleId}: appId {ApiAppId.ToUpperInvariant()}"), audit);
        Assert.Contains(("token_rule.delete", "success", $"rule {ruleId}: appId {ApiAppId}"), audit);
    }

    [Fact]
    public async Task A_rule_made_on_one_instance_maps_tokens_on_another_within_the_refresh_interval()
    {
        await using var other = await StartGatewayAsync();
        var keyId = await MintKeyAsync("shared");
        var token = AppToken("bbbbbbbb-0000-0000-0000-0000000000b2", "FuncProxy.Client", "Gold");
        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(other, token));

        using var admin = _gateway.AdminClient(await _gateway.MintAdminKeyAsync());
        using var created = await admin.PostAsync("token-rules", JsonBody($$"""{"match":"appRole","value":"Gold","keyId":"{{keyId}}"}"""));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        Assert.Equal(HttpStatusCode.OK, await Eventually.PollAsync(() => CallAsync(other, token), s => s == HttpStatusCode.OK));

        using var deleted = await admin.DeleteAsync("token-rules/" + (await JsonAsync(created)).GetProperty("id").GetString());
        Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, await Eventually.PollAsync(() => CallAsync(other, token), s => s == HttpStatusCode.Unauthorized));
    }

    [Fact]
    public async Task The_CLI_adds_lists_and_removes_rules_and_audits_them()
    {
        var keyId = await MintKeyAsync("cli-mapped");
        const string Oid = "cccccccc-0000-0000-0000-0000000000c1";
        var token = _issuer.CreateToken(Audience, new Dictionary<string, object>
        {
            ["tid"] = TenantId, ["azp"] = "bbbbbbbb-0000-0000-0000-0000000000c9", ["oid"] = Oid, ["scp"] = "access_as_user",
        });

        var added = await RunCliAsync("token-rules", "add", "--key", keyId, "--object-id", Oid, "--description", "one user", "--json");
        Assert.True(added.Code == OperatorCli.Ok, added.Err);
        var ruleId = JsonDocument.Parse(added.Out).RootElement.GetProperty("id").GetString()!;
        Assert.StartsWith("objectid-", ruleId, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, await Eventually.PollAsync(() => CallAsync(_gateway, token), s => s == HttpStatusCode.OK));

        var list = await RunCliAsync("token-rules", "list");
        Assert.Equal(OperatorCli.Ok, list.Code);
        Assert.Contains(ruleId, list.Out, StringComparison.Ordinal);
        // The CLI's own configuration has no ClientTokens rules: it lists the stored one only.
        Assert.Contains("1 token rule(s).", list.Out, StringComparison.Ordinal);

        Assert.Equal(OperatorCli.Conflict, (await RunCliAsync("token-rules", "add", "--key", keyId, "--object-id", Oid)).Code);
        Assert.Equal(OperatorCli.Usage, (await RunCliAsync("token-rules", "add", "--key", keyId, "--object-id", Oid, "--app-id", "x")).Code);
        Assert.Equal(OperatorCli.NotFound, (await RunCliAsync("token-rules", "add", "--key", ApiKey.NewId(), "--group", "g1")).Code);

        Assert.Equal(OperatorCli.Ok, (await RunCliAsync("token-rules", "remove", ruleId)).Code);
        Assert.Equal(OperatorCli.NotFound, (await RunCliAsync("token-rules", "remove", ruleId)).Code);
        Assert.Equal(HttpStatusCode.Unauthorized, await Eventually.PollAsync(() => CallAsync(_gateway, token), s => s == HttpStatusCode.Unauthorized));

        using var admin = _gateway.AdminClient(await _gateway.MintAdminKeyAsync());
        var audit = (await JsonAsync(await admin.GetAsync("audit?keyId=" + keyId))).GetProperty("items").EnumerateArray().ToList();
        Assert.Contains(audit, e => e.GetProperty("action").GetString() == "token_rule.create" && e.GetProperty("result").GetString() == "success"
            && e.GetProperty("actor").GetString()!.StartsWith("cli:", StringComparison.Ordinal));
        Assert.Contains(audit, e => e.GetProperty("action").GetString() == "token_rule.delete" && e.GetProperty("result").GetString() == "success");
    }

    private async Task<(int Code, string Out, string Err)> RunCliAsync(params string[] args) =>
        await CliRun.RunAsync(new Dictionary<string, string?>(Settings(_stub))
        {
            ["FuncProxy:Storage:ConnectionString"] = await TestStorage.GetConnectionStringAsync(),
            ["FuncProxy:Storage:TablePrefix"] = _prefix,
        }, args);
}
