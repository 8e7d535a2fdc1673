using System.Text.Json;
using FuncProxy.Server;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using static FuncProxy.Tests.Admin.AdminTestKit;

namespace FuncProxy.Tests.Admin;

/// <summary>The operator CLI in-process, on the test storage: every verb, its output, JSON and exit codes.</summary>
public sealed class OperatorCliTests : IAsyncLifetime
{
    private readonly string _prefix = TestStorage.NewTablePrefix();
    private UpstreamStub _stub = null!;
    private string _connection = null!;

    public async Task InitializeAsync()
    {
        _stub = await UpstreamStub.StartAsync();
        _connection = await TestStorage.GetConnectionStringAsync();
    }

    public async Task DisposeAsync() => await _stub.DisposeAsync();

    private Task<(int Code, string Out, string Err)> RunAsync(params string[] args) =>
        CliRun.RunAsync(new Dictionary<string, string?>(Settings(_stub))
        {
            ["FuncProxy:Storage:ConnectionString"] = _connection,
            ["FuncProxy:Storage:TablePrefix"] = _prefix,
            ["FuncProxy:Admin:MaxRotationGracePeriod"] = "01:00:00",
        }, args);

    private async Task<(string Id, string Key)> CreateAsync(params string[] extra)
    {
        var (code, output, error) = await RunAsync(["keys", "create", "--name", "cli-app", "--upstream", "echo", "--json", .. extra]);
        Assert.True(code == OperatorCli.Ok, error);
        var json = JsonDocument.Parse(output).RootElement;
        return (json.GetProperty("record").GetProperty("id").GetString()!, json.GetProperty("key").GetString()!);
    }

    [Fact]
    public async Task Keys_create_and_update_set_and_clear_the_browser_origins_a_key_may_be_used_from()
    {
        var (id, _) = await CreateAsync("--origin", "https://app.example.com", "--origin", "http://localhost:5173");
        var get = await RunAsync("keys", "get", id, "--json");
        Assert.Equal(["https://app.example.com", "http://localhost:5173"],
            JsonDocument.Parse(get.Out).RootElement.GetProperty("allowedOrigins").EnumerateArray().Select(o => o.GetString()));

        var invalid = await RunAsync("keys", "update", id, "--origin", "https://app.example.com/");
        Assert.Equal(OperatorCli.Usage, invalid.Code);
        Assert.Contains("--origin", invalid.Err, StringComparison.Ordinal);

        var cleared = await RunAsync("keys", "update", id, "--clear-origins", "--json");
        Assert.Equal(OperatorCli.Ok, cleared.Code);
        Assert.Equal(0, JsonDocument.Parse(cleared.Out).RootElement.GetProperty("allowedOrigins").GetArrayLength());
    }

    [Fact]
    public async Task Keys_create_get_list_update_disable_enable_rotate_revoke_work_and_are_audited()
    {
        var (code, text, _) = await RunAsync("keys", "create", "--name", "human", "--upstream", "echo", "--owner", "ops", "--limit", "requestsPerMinute=60", "--meta", "ticket=OPS-7");
        Assert.Equal(OperatorCli.Ok, code);
        Assert.Contains("shown once", text, StringComparison.Ordinal);
        var (id, key) = await CreateAsync("--owner", "ops");
        Assert.StartsWith("fpk_" + id, key);

        var get = await RunAsync("keys", "get", id);
        Assert.Equal(OperatorCli.Ok, get.Code);
        Assert.Contains("cli-app", get.Out, StringComparison.Ordinal);
        Assert.DoesNotContain(key[21..], get.Out, StringComparison.Ordinal);

        var list = await RunAsync("keys", "list", "--owner", "ops");
        Assert.Equal(OperatorCli.Ok, list.Code);
        Assert.Contains("2 key(s).", list.Out, StringComparison.Ordinal);
        var listJson = await RunAsync("keys", "list", "--status", "active", "--json");
        Assert.Equal(2, JsonDocument.Parse(listJson.Out).RootElement.GetArrayLength());

        var update = await RunAsync("keys", "update", id, "--name", "renamed", "--clear-owner", "--limit", "tokensPerDay=1000", "--json");
        Assert.Equal(OperatorCli.Ok, update.Code);
        var updated = JsonDocument.Parse(update.Out).RootElement;
        Assert.Equal("renamed", updated.GetProperty("name").GetString());
        Assert.Equal(JsonValueKind.Null, updated.GetProperty("owner").ValueKind);
        Assert.Equal(1000, updated.GetProperty("limits").GetProperty("tokensPerDay").GetInt64());

        Assert.Equal(OperatorCli.Ok, (await RunAsync("keys", "disable", id)).Code);
        Assert.Contains("disabled", (await RunAsync("keys", "list", "--status", "disabled")).Out, StringComparison.Ordinal);
        Assert.Equal(OperatorCli.Ok, (await RunAsync("keys", "enable", id)).Code);

        var rotate = await RunAsync("keys", "rotate", id, "--grace", "30m");
        Assert.Equal(OperatorCli.Ok, rotate.Code);
        Assert.Contains("fpk_" + id + "_", rotate.Out, StringComparison.Ordinal);
        Assert.Contains("old secret works until", rotate.Out, StringComparison.Ordinal);

        var revoke = await RunAsync("keys", "revoke", id);
        Assert.Equal(OperatorCli.Ok, revoke.Code);
        Assert.Contains("Revoked key " + id, revoke.Out, StringComparison.Ordinal);
        var enableRevoked = await RunAsync("keys", "enable", id);
        Assert.Equal(OperatorCli.Conflict, enableRevoked.Code);

        var audit = await RunAsync("audit", "--key", id, "--json");
        Assert.Equal(OperatorCli.Ok, audit.Code);
        var actions = JsonDocument.Parse(audit.Out).RootElement.EnumerateArray().Select(e => e.GetProperty("action").GetString()!).ToArray();
        Assert.Equal(["key.enable", "key.revoke", "key.rotate", "key.enable", "key.disable", "key.update", "key.create"], actions);
        Assert.All(JsonDocument.Parse(audit.Out).RootElement.EnumerateArray(), e => Assert.StartsWith("cli:", e.GetProperty("actor").GetString(), StringComparison.Ordinal));
        var auditTable = await RunAsync("audit");
        Assert.Contains("key.rotate", auditTable.Out, StringComparison.Ordinal);
        Assert.DoesNotContain(key[21..], auditTable.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Keys_update_merges_limits_and_metadata_like_the_API_merge_patch()
    {
        var (id, _) = await CreateAsync("--limit", "requestsPerMinute=60", "--limit", "tokensPerDay=100000", "--meta", "team=search", "--meta", "env=prod");

        var raised = await RunAsync("keys", "update", id, "--limit", "requestsPerMinute=120", "--meta", "env=staging", "--json");

        Assert.Equal(OperatorCli.Ok, raised.Code);
        var record = JsonDocument.Parse(raised.Out).RootElement;
        Assert.Equal(120, record.GetProperty("limits").GetProperty("requestsPerMinute").GetInt64());
        Assert.Equal(100000, record.GetProperty("limits").GetProperty("tokensPerDay").GetInt64());
        Assert.Equal("search", record.GetProperty("metadata").GetProperty("team").GetString());
        Assert.Equal("staging", record.GetProperty("metadata").GetProperty("env").GetString());

        var removed = await RunAsync("keys", "update", id, "--limit", "tokensPerDay=default", "--remove-meta", "team", "--json");

        Assert.Equal(OperatorCli.Ok, removed.Code);
        record = JsonDocument.Parse(removed.Out).RootElement;
        Assert.Equal(120, record.GetProperty("limits").GetProperty("requestsPerMinute").GetInt64());
        Assert.True(!record.GetProperty("limits").TryGetProperty("tokensPerDay", out var day) || day.ValueKind == JsonValueKind.Null);
        Assert.False(record.GetProperty("metadata").TryGetProperty("team", out _));
        Assert.Equal("staging", record.GetProperty("metadata").GetProperty("env").GetString());

        var replaced = await RunAsync("keys", "update", id, "--clear-limits", "--limit", "tokensPerMinute=5000", "--json");
        Assert.Equal(OperatorCli.Ok, replaced.Code);
        var limits = JsonDocument.Parse(replaced.Out).RootElement.GetProperty("limits");
        Assert.Equal(5000, limits.GetProperty("tokensPerMinute").GetInt64());
        Assert.True(!limits.TryGetProperty("requestsPerMinute", out var minute) || minute.ValueKind == JsonValueKind.Null);
    }

    [Fact]
    public async Task Keys_usage_reports_the_usage_table()
    {
        var (id, _) = await CreateAsync();
        await using (var gateway = await GatewayHost.StartAsync(Settings(_stub), _prefix))
        {
            var meter = (FuncProxy.Proxying.UsageMeter)gateway.Services.GetService(typeof(FuncProxy.Proxying.UsageMeter))!;
            for (var i = 0; i < 4; i++)
            {
                meter.Record(new FuncProxy.Proxying.UsageRecord(id, "echo", DateTimeOffset.UtcNow, new FuncProxy.Proxying.TokenUsage(10, i < 3 ? 2 : 3)));
            }
            await meter.FlushAsync();
        }
        var table = await RunAsync("keys", "usage", id);
        Assert.Equal(OperatorCli.Ok, table.Code);
        Assert.Contains("echo", table.Out, StringComparison.Ordinal);
        var json = JsonDocument.Parse((await RunAsync("keys", "usage", id, "--json")).Out).RootElement;
        Assert.Equal(4, json.GetProperty("totals").GetProperty("requests").GetInt64());
        Assert.Equal(9, json.GetProperty("totals").GetProperty("outputTokens").GetInt64());
    }

    [Fact]
    public async Task Admin_keys_create_list_and_revoke_and_a_revoked_admin_key_is_refused_by_the_API()
    {
        var (code, output, _) = await RunAsync("admin-keys", "create", "--name", "ops-laptop", "--json");
        Assert.Equal(OperatorCli.Ok, code);
        var created = JsonDocument.Parse(output).RootElement;
        var adminKey = created.GetProperty("key").GetString()!;
        var adminId = created.GetProperty("record").GetProperty("id").GetString()!;
        Assert.StartsWith("fpa_" + adminId + "_", adminKey);

        await using var gateway = await GatewayHost.StartAsync(Settings(_stub), _prefix);
        using var admin = gateway.AdminClient(adminKey);
        Assert.Equal(System.Net.HttpStatusCode.OK, (await admin.GetAsync("keys")).StatusCode);

        var list = await RunAsync("admin-keys", "list");
        Assert.Contains(adminId, list.Out, StringComparison.Ordinal);
        Assert.Contains("active", list.Out, StringComparison.Ordinal);
        Assert.DoesNotContain(adminKey[21..], list.Out, StringComparison.Ordinal);

        Assert.Equal(OperatorCli.Ok, (await RunAsync("admin-keys", "revoke", adminId)).Code);
        Assert.Contains("revoked", (await RunAsync("admin-keys", "list")).Out, StringComparison.Ordinal);
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await admin.GetAsync("keys")).StatusCode);
        Assert.Equal(OperatorCli.NotFound, (await RunAsync("admin-keys", "revoke", new string('b', 16))).Code);

        var audit = JsonDocument.Parse((await RunAsync("audit", "--key", adminId, "--json")).Out).RootElement;
        Assert.Equal(["adminkey.revoke", "adminkey.create"], audit.EnumerateArray().Select(e => e.GetProperty("action").GetString()!).ToArray());
    }

    [Fact]
    public async Task Bad_usage_invalid_values_and_unknown_ids_get_their_documented_exit_codes()
    {
        Assert.Equal(OperatorCli.Usage, (await RunAsync("keys", "frobnicate")).Code);
        Assert.Equal(OperatorCli.Usage, (await RunAsync("keys", "list", "--bogus", "1")).Code);
        Assert.Equal(OperatorCli.Usage, (await RunAsync("keys", "get")).Code);
        Assert.Equal(OperatorCli.Ok, (await RunAsync("--help")).Code);

        // Errors name the options the operator typed, not the management API's fields (changed deliberately: they used to).
        var invalid = await RunAsync("keys", "create", "--name", "x", "--upstream", "nope", "--expires", "2001-01-01", "--limit", "requestsPerMinute=-5", "--meta", "novalue");
        Assert.Equal(OperatorCli.Usage, invalid.Code);
        foreach (var flag in new[] { "--upstream:", "--expires:", "--limit requestsPerMinute:", "--meta:" })
        {
            Assert.Contains(flag, invalid.Err, StringComparison.Ordinal);
        }
        foreach (var field in new[] { "allowedUpstreams", "expiresAt", "limits." })
        {
            Assert.DoesNotContain(field, invalid.Err, StringComparison.Ordinal);
        }
        // An unknown upstream lists the configured ones.
        Assert.Contains("'nope' is not a configured upstream. Configured: echo, stub (or '*' for all).", invalid.Err, StringComparison.Ordinal);
        var (id, _) = await CreateAsync();
        var tooMuchGrace = await RunAsync("keys", "rotate", id, "--grace", "2h");
        Assert.Equal(OperatorCli.Usage, tooMuchGrace.Code);
        Assert.Contains("--grace:", tooMuchGrace.Err, StringComparison.Ordinal);
        Assert.DoesNotContain("gracePeriodSeconds", tooMuchGrace.Err, StringComparison.Ordinal);

        var unknown = new string('a', 16);
        foreach (var verb in new[] { "get", "disable", "enable", "revoke", "rotate", "usage" })
        {
            Assert.Equal(OperatorCli.NotFound, (await RunAsync("keys", verb, unknown)).Code);
        }
        Assert.Equal(OperatorCli.NotFound, (await RunAsync("keys", "update", unknown, "--name", "x")).Code);
    }

    [Fact]
    public async Task Help_lists_every_limit_name_and_a_mistyped_verb_gets_usage_and_a_suggestion()
    {
        var help = await RunAsync("--help");
        Assert.Equal(OperatorCli.Ok, help.Code);
        foreach (var name in FuncProxy.Admin.KeyRequests.LimitNames)
        {
            Assert.Contains(name, help.Out, StringComparison.Ordinal);
        }
        Assert.True(OperatorCli.Handles(["frob"]));
        Assert.True(OperatorCli.Handles(["key", "list"]));
        Assert.False(OperatorCli.Handles(["--urls", "http://127.0.0.1:8080"]));
        Assert.False(OperatorCli.Handles(["FuncProxy:Proxy:UpstreamTimeout=00:01:00"]));
        var mistyped = await RunAsync("key", "list");
        Assert.Equal(OperatorCli.Usage, mistyped.Code);
        Assert.Contains("Did you mean 'keys list'?", mistyped.Err, StringComparison.Ordinal);
        Assert.Equal(OperatorCli.Usage, (await RunAsync("frob")).Code);
    }

    [Fact]
    public async Task Storage_unreachable_is_exit_3_with_one_line_for_every_verb()
    {
        // Azurite's account on a port where nothing listens.
        var dead = $"DefaultEndpointsProtocol=http;AccountName={AzuriteProcess.AccountName};AccountKey={AzuriteProcess.AccountKey};TableEndpoint=http://127.0.0.1:{RefusingPort.Take()}/{AzuriteProcess.AccountName};";
        var id = new string('a', 16);
        string[][] commands =
        [
            ["keys", "create", "--name", "n", "--upstream", "stub"], ["keys", "list"], ["keys", "get", id], ["keys", "update", id, "--name", "x"],
            ["keys", "disable", id], ["keys", "enable", id], ["keys", "revoke", id], ["keys", "rotate", id], ["keys", "usage", id],
            ["audit"], ["admin-keys", "create", "--name", "n"], ["admin-keys", "list"], ["admin-keys", "revoke", id],
        ];
        foreach (var command in commands)
        {
            using var output = new StringWriter();
            using var error = new StringWriter();
            var code = await OperatorCli.RunAsync(command, output, error, config =>
            {
                config.Sources.Clear();
                config.AddInMemoryCollection(new Dictionary<string, string?>(Settings(_stub)) { ["FuncProxy:Storage:ConnectionString"] = dead });
            });
            Assert.True(code == OperatorCli.Failure, $"{string.Join(' ', command)}: exit {code}\n{error}");
            var lines = error.ToString().Trim().Split('\n');
            Assert.Single(lines);
            Assert.StartsWith("Storage could not be reached: ", lines[0], StringComparison.Ordinal);
        }
    }
}
