using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Azure.Data.Tables;
using FuncProxy.Admin;
using FuncProxy.Proxying;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using static FuncProxy.Tests.Admin.AdminTestKit;

namespace FuncProxy.Tests.Admin;

/// <summary>The management API end to end: real Server host, real HTTP, real Azurite.</summary>
public sealed class ManagementApiTests : IAsyncLifetime
{
    private UpstreamStub _stub = null!;
    private GatewayHost _gateway = null!;
    private HttpClient _admin = null!;
    private string _adminKey = null!;

    public async Task InitializeAsync()
    {
        _stub = await UpstreamStub.StartAsync();
        _gateway = await GatewayHost.StartAsync(Settings(_stub, ("FuncProxy:Admin:MaxFailedAttempts", "1000")));
        _adminKey = await _gateway.MintAdminKeyAsync();
        _admin = _gateway.AdminClient(_adminKey);
    }

    public async Task DisposeAsync()
    {
        _admin.Dispose();
        await _gateway.DisposeAsync();
        await _stub.DisposeAsync();
    }

    private static readonly string Expires = DateTime.UtcNow.AddYears(1).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);

    private async Task<(string Id, string Key)> CreateAsync(string json = """{"name":"app","allowedUpstreams":["echo"]}""")
    {
        using var response = await _admin.PostAsync("keys", JsonBody(json));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var body = await JsonAsync(response);
        return (body.GetProperty("record").GetProperty("id").GetString()!, body.GetProperty("key").GetString()!);
    }

    [Fact]
    public async Task Create_returns_the_key_once_and_it_works_while_get_and_list_never_show_it()
    {
        using var response = await _admin.PostAsync("keys", JsonBody($$$"""
            {"name":"billing","owner":"team-a","allowedUpstreams":["echo"],"expiresAt":"{{{Expires}}}",
             "limits":{"requestsPerMinute":60},"metadata":{"ticket":"OPS-1"}}
            """));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var created = await JsonAsync(response);
        var key = created.GetProperty("key").GetString()!;
        var id = created.GetProperty("record").GetProperty("id").GetString()!;
        Assert.StartsWith("fpk_" + id + "_", key);
        Assert.True(created.GetProperty("keyShown").GetBoolean());
        Assert.Equal("/api/admin/keys/" + id, response.Headers.Location!.OriginalString);
        Assert.Equal(200, await CallWithKeyAsync(_gateway.Client, key));

        var get = await _admin.GetStringAsync("keys/" + id);
        var list = await _admin.GetStringAsync("keys");
        var record = JsonDocument.Parse(get).RootElement;
        Assert.Equal("billing", record.GetProperty("name").GetString());
        Assert.Equal("team-a", record.GetProperty("owner").GetString());
        Assert.Equal("active", record.GetProperty("status").GetString());
        Assert.Equal(60, record.GetProperty("limits").GetProperty("requestsPerMinute").GetInt64());
        Assert.Equal("OPS-1", record.GetProperty("metadata").GetProperty("ticket").GetString());
        var secret = key[(4 + 16 + 1)..];
        Assert.DoesNotContain(secret, get, StringComparison.Ordinal);
        Assert.DoesNotContain(secret, list, StringComparison.Ordinal);
        Assert.DoesNotContain("secretHash", get, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task List_filters_by_owner_status_and_upstream_and_pages_with_continuation_tokens()
    {
        var a1 = await CreateAsync("""{"name":"a1","owner":"alice","allowedUpstreams":["echo"]}""");
        var a2 = await CreateAsync("""{"name":"a2","owner":"alice","allowedUpstreams":["stub"]}""");
        var a3 = await CreateAsync("""{"name":"a3","owner":"alice","allowedUpstreams":["*"]}""");
        var b1 = await CreateAsync("""{"name":"b1","owner":"bob","allowedUpstreams":["echo"]}""");
        (await _admin.PostAsync($"keys/{a3.Id}/disable", null)).EnsureSuccessStatusCode();

        async Task<string[]> IdsAsync(string query)
        {
            var ids = new List<string>();
            string? token = null;
            do
            {
                var page = JsonDocument.Parse(await _admin.GetStringAsync("keys?" + query + (token is null ? "" : "&continuationToken=" + Uri.EscapeDataString(token)))).RootElement;
                Assert.True(page.GetProperty("items").GetArrayLength() <= 2);
                ids.AddRange(page.GetProperty("items").EnumerateArray().Select(i => i.GetProperty("id").GetString()!));
                token = page.GetProperty("continuationToken").GetString();
            }
            while (token is not null);
            return [.. ids.Order(StringComparer.Ordinal)];
        }

        Assert.Equal(new[] { a1.Id, a2.Id, a3.Id }.Order(StringComparer.Ordinal), await IdsAsync("owner=alice&limit=2"));
        Assert.Equal([a3.Id], await IdsAsync("status=disabled&limit=2"));
        Assert.Equal(new[] { a1.Id, a3.Id, b1.Id }.Order(StringComparer.Ordinal), await IdsAsync("upstream=echo&limit=2"));
        Assert.Equal([b1.Id], await IdsAsync("owner=bob&upstream=echo&status=active&limit=2"));
        // A value shaped like an OData clause is only ever a value.
        Assert.Empty(await IdsAsync("owner=" + Uri.EscapeDataString("alice' or Owner ne 'x")));
    }

    [Fact]
    public async Task Update_changes_the_named_fields_and_null_clears_owner_expiry_and_limits()
    {
        var (id, key) = await CreateAsync($$$"""{"name":"old","owner":"o","allowedUpstreams":["stub"],"expiresAt":"{{{Expires}}}","limits":{"requestsPerDay":5}}""");
        Assert.Equal(403, await CallWithKeyAsync(_gateway.Client, key));

        using var response = await _admin.PatchAsync("keys/" + id, JsonBody("""{"name":"new","allowedUpstreams":["echo","stub"],"metadata":{"env":"prod"},"owner":null,"expiresAt":null,"limits":null}"""));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var record = await JsonAsync(response);
        Assert.Equal("new", record.GetProperty("name").GetString());
        Assert.Equal(JsonValueKind.Null, record.GetProperty("owner").ValueKind);
        Assert.Equal(JsonValueKind.Null, record.GetProperty("expiresAt").ValueKind);
        Assert.Equal(JsonValueKind.Null, record.GetProperty("limits").ValueKind);
        Assert.Equal("prod", record.GetProperty("metadata").GetProperty("env").GetString());
        Assert.Equal(200, await CallWithKeyAsync(_gateway.Client, key));
    }

    [Fact]
    public async Task Patch_merges_limits_member_by_member_so_raising_one_limit_keeps_the_daily_token_quota()
    {
        var (id, _) = await CreateAsync("""{"name":"app","allowedUpstreams":["echo"],"limits":{"requestsPerMinute":60,"tokensPerDay":100000}}""");

        using var raised = await PatchMergeAsync(id, """{"limits":{"requestsPerMinute":120}}""");

        Assert.Equal(HttpStatusCode.OK, raised.StatusCode);
        var limits = (await JsonAsync(raised)).GetProperty("limits");
        Assert.Equal(120, limits.GetProperty("requestsPerMinute").GetInt64());
        Assert.Equal(100000, limits.GetProperty("tokensPerDay").GetInt64());
        using var stored = await _admin.GetAsync("keys/" + id);
        Assert.Equal(100000, (await JsonAsync(stored)).GetProperty("limits").GetProperty("tokensPerDay").GetInt64());
    }

    [Fact]
    public async Task Patch_with_a_null_limit_removes_only_that_override_and_null_limits_removes_them_all()
    {
        var (id, _) = await CreateAsync("""{"name":"app","allowedUpstreams":["echo"],"limits":{"requestsPerMinute":60,"tokensPerDay":100000,"requestsPerDay":0}}""");

        using var removed = await PatchMergeAsync(id, """{"limits":{"tokensPerDay":null,"tokensPerMonth":null}}""");

        Assert.Equal(HttpStatusCode.OK, removed.StatusCode);
        var limits = (await JsonAsync(removed)).GetProperty("limits");
        Assert.Equal(60, limits.GetProperty("requestsPerMinute").GetInt64());
        Assert.Equal(0, limits.GetProperty("requestsPerDay").GetInt64()); // 0 (no such limit) is a value, not a removal
        Assert.True(!limits.TryGetProperty("tokensPerDay", out var day) || day.ValueKind == JsonValueKind.Null);

        using var cleared = await PatchMergeAsync(id, """{"limits":null}""");
        Assert.Equal(JsonValueKind.Null, (await JsonAsync(cleared)).GetProperty("limits").ValueKind);
        using var fromNothing = await PatchMergeAsync(id, """{"limits":{"tokensPerMinute":5000}}""");
        var fresh = (await JsonAsync(fromNothing)).GetProperty("limits");
        Assert.Equal(5000, fresh.GetProperty("tokensPerMinute").GetInt64());
        Assert.True(!fresh.TryGetProperty("requestsPerMinute", out var minute) || minute.ValueKind == JsonValueKind.Null);
    }

    [Fact]
    public async Task Patch_merges_metadata_entries_and_a_null_entry_removes_it()
    {
        var (id, _) = await CreateAsync("""{"name":"app","allowedUpstreams":["echo"],"metadata":{"team":"search","env":"prod","ticket":"OPS-1"}}""");

        using var patched = await PatchMergeAsync(id, """{"metadata":{"team":null,"env":"staging","cost-center":"42","never-there":null}}""");

        Assert.Equal(HttpStatusCode.OK, patched.StatusCode);
        var metadata = (await JsonAsync(patched)).GetProperty("metadata");
        Assert.Equal(
            new Dictionary<string, string> { ["env"] = "staging", ["ticket"] = "OPS-1", ["cost-center"] = "42" },
            metadata.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!));
        using var untouched = await PatchMergeAsync(id, """{"name":"renamed"}""");
        Assert.Equal(3, (await JsonAsync(untouched)).GetProperty("metadata").EnumerateObject().Count());
        using var emptied = await PatchMergeAsync(id, """{"metadata":null}""");
        Assert.Empty((await JsonAsync(emptied)).GetProperty("metadata").EnumerateObject());
    }

    [Fact]
    public async Task Patch_refuses_bad_members_and_a_merge_that_would_exceed_the_metadata_entry_limit()
    {
        var entries = string.Join(",", Enumerable.Range(0, KeyRequests.MaxMetadataEntries).Select(i => $"\"e{i}\":\"v\""));
        var (id, _) = await CreateAsync("""{"name":"app","allowedUpstreams":["echo"],"metadata":{""" + entries + "}}");

        using var tooMany = await PatchMergeAsync(id, """{"metadata":{"one-more":"x"}}""");
        Assert.Equal(HttpStatusCode.BadRequest, tooMany.StatusCode);
        Assert.Equal(["metadata"], await ErrorFieldsAsync(tooMany));
        using var swapped = await PatchMergeAsync(id, """{"metadata":{"e0":null,"one-more":"x"}}""");
        Assert.Equal(HttpStatusCode.OK, swapped.StatusCode);

        using var bad = await PatchMergeAsync(id, """{"limits":{"bogus":null,"requestsPerMinute":"many","tokensPerDay":-1},"metadata":{"n":5}}""");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal(["limits.bogus", "limits.requestsPerMinute", "metadata.n", "limits.tokensPerDay"], await ErrorFieldsAsync(bad));
        using var nested = await PatchMergeAsync(id, """{"limits":{"requestsPerMinute":{"value":1}},"metadata":{"team":{"name":"x"}}}""");
        Assert.Equal(["limits.requestsPerMinute", "metadata.team"], await ErrorFieldsAsync(nested));
    }

    private async Task<HttpResponseMessage> PatchMergeAsync(string id, string patch) =>
        await _admin.PatchAsync("keys/" + id, new StringContent(patch, System.Text.Encoding.UTF8, "application/merge-patch+json"));

    [Fact]
    public async Task Disable_enable_and_revoke_take_effect_and_a_revoked_key_cannot_be_enabled()
    {
        var (id, key) = await CreateAsync();
        (await _admin.PostAsync($"keys/{id}/disable", null)).EnsureSuccessStatusCode();
        Assert.Equal(401, await CallWithKeyAsync(_gateway.Client, key));
        (await _admin.PostAsync($"keys/{id}/enable", null)).EnsureSuccessStatusCode();
        Assert.Equal(200, await CallWithKeyAsync(_gateway.Client, key));
        using var revoke = await _admin.PostAsync($"keys/{id}/revoke", null);
        Assert.Equal("revoked", (await JsonAsync(revoke)).GetProperty("status").GetString());
        Assert.Equal(401, await CallWithKeyAsync(_gateway.Client, key));

        using var enable = await _admin.PostAsync($"keys/{id}/enable", null);
        Assert.Equal(HttpStatusCode.Conflict, enable.StatusCode);
        using var rotate = await _admin.PostAsync($"keys/{id}/rotate", null);
        Assert.Equal(HttpStatusCode.Conflict, rotate.StatusCode);
    }

    [Fact]
    public async Task Rotation_keeps_the_old_secret_working_until_the_grace_period_ends_then_refuses_it()
    {
        var (id, oldKey) = await CreateAsync();
        using var response = await _admin.PostAsync($"keys/{id}/rotate", JsonBody("""{"gracePeriodSeconds":5}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await JsonAsync(response);
        var newKey = body.GetProperty("key").GetString()!;
        Assert.StartsWith("fpk_" + id + "_", newKey);
        Assert.NotEqual(oldKey, newKey);

        Assert.Equal(200, await CallWithKeyAsync(_gateway.Client, newKey));
        Assert.Equal(200, await CallWithKeyAsync(_gateway.Client, oldKey));

        // The grace period ends at a moment, but the refusal is waited for as a condition (a busy machine may be late).
        var refused = await Eventually.PollAsync(() => CallWithKeyAsync(_gateway.Client, oldKey), status => status == 401);
        Assert.Equal(401, refused);
        Assert.Equal(200, await CallWithKeyAsync(_gateway.Client, newKey));
    }

    [Fact]
    public async Task Rotation_grace_longer_than_the_configured_maximum_is_refused_naming_the_field()
    {
        var (id, _) = await CreateAsync();
        using var response = await _admin.PostAsync($"keys/{id}/rotate", JsonBody("""{"gracePeriodSeconds":99999999}"""));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(["gracePeriodSeconds"], await ErrorFieldsAsync(response));
    }

    [Fact]
    public async Task A_limit_of_zero_lifts_the_default_for_one_key_and_a_negative_one_is_refused()
    {
        var (id, _) = await CreateAsync("""{"name":"unlimited","allowedUpstreams":["echo"],"limits":{"requestsPerMinute":0}}""");
        var record = await JsonAsync(await _admin.GetAsync("keys/" + id));
        Assert.Equal(0, record.GetProperty("limits").GetProperty("requestsPerMinute").GetInt64());

        using var refused = await _admin.PostAsync("keys", JsonBody("""{"name":"bad","allowedUpstreams":["echo"],"limits":{"requestsPerMinute":-1}}"""));
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Equal(["limits.requestsPerMinute"], await ErrorFieldsAsync(refused));
    }

    [Fact]
    public async Task Usage_sums_the_hours_of_the_range_from_the_usage_table()
    {
        var (id, _) = await CreateAsync();
        // Written by the metering step itself (the same records the request path hands it), then flushed to the table.
        var meter = _gateway.Services.GetRequiredService<UsageMeter>();
        var hour = DateTimeOffset.UtcNow.AddHours(-2);
        foreach (var _ in Enumerable.Range(0, 3))
        {
            meter.Record(new UsageRecord(id, "echo", hour, new TokenUsage(10, 2)));
        }
        meter.Record(new UsageRecord(id, "echo", hour, new TokenUsage(0, 1)));
        meter.Record(new UsageRecord(id, "stub", hour, new TokenUsage(20, 5)));
        for (var i = 0; i < 100; i++)
        {
            meter.Record(new UsageRecord(id, "echo", DateTimeOffset.UtcNow.AddDays(-3), new TokenUsage(0, 0)));
        }
        await meter.FlushAsync();

        var body = JsonDocument.Parse(await _admin.GetStringAsync($"keys/{id}/usage")).RootElement;

        Assert.Equal(5, body.GetProperty("totals").GetProperty("requests").GetInt64());
        Assert.Equal(50, body.GetProperty("totals").GetProperty("inputTokens").GetInt64());
        Assert.Equal(12, body.GetProperty("totals").GetProperty("outputTokens").GetInt64());
        Assert.Equal(["echo", "stub"], body.GetProperty("hours").EnumerateArray().Select(h => h.GetProperty("upstream").GetString()!).Order().ToArray());

        var from = Uri.EscapeDataString(DateTime.UtcNow.AddDays(-4).ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture));
        var wide = JsonDocument.Parse(await _admin.GetStringAsync($"keys/{id}/usage?from={from}")).RootElement;
        Assert.Equal(105, wide.GetProperty("totals").GetProperty("requests").GetInt64());
    }

    [Fact]
    public async Task Every_change_is_audited_with_who_what_which_key_and_result_and_queryable_by_key_and_time()
    {
        var (id, _) = await CreateAsync();
        (await _admin.PatchAsync("keys/" + id, JsonBody("""{"name":"renamed"}"""))).EnsureSuccessStatusCode();
        (await _admin.PostAsync($"keys/{id}/disable", null)).EnsureSuccessStatusCode();
        (await _admin.PostAsync($"keys/{id}/enable", null)).EnsureSuccessStatusCode();
        (await _admin.PostAsync($"keys/{id}/rotate", JsonBody("""{"gracePeriodSeconds":60}"""))).EnsureSuccessStatusCode();
        (await _admin.PostAsync($"keys/{id}/revoke", null)).EnsureSuccessStatusCode();

        var byKey = JsonDocument.Parse(await _admin.GetStringAsync("audit?keyId=" + id)).RootElement.GetProperty("items");
        Assert.Equal(["key.revoke", "key.rotate", "key.enable", "key.disable", "key.update", "key.create"],
            byKey.EnumerateArray().Select(e => e.GetProperty("action").GetString()!).ToArray());
        var adminKeyId = _adminKey[4..20];
        foreach (var entry in byKey.EnumerateArray())
        {
            Assert.Equal("admin-key:" + adminKeyId, entry.GetProperty("actor").GetString());
            Assert.Equal(id, entry.GetProperty("keyId").GetString());
            Assert.Equal("success", entry.GetProperty("result").GetString());
            Assert.Equal("127.0.0.1", entry.GetProperty("clientIp").GetString());
            Assert.False(string.IsNullOrEmpty(entry.GetProperty("requestId").GetString()));
        }
        Assert.Equal("fields: name", byKey[4].GetProperty("detail").GetString());

        // By time, paged two at a time, newest first, with no duplicates.
        var seen = new List<string>();
        string? token = null;
        do
        {
            var page = JsonDocument.Parse(await _admin.GetStringAsync("audit?limit=2" + (token is null ? "" : "&continuationToken=" + token))).RootElement;
            seen.AddRange(page.GetProperty("items").EnumerateArray().Select(e => e.GetProperty("id").GetString()!));
            token = page.GetProperty("continuationToken").GetString();
        }
        while (token is not null);
        Assert.Equal(6, seen.Count);
        Assert.Equal(seen.Count, seen.Distinct().Count());

        // A range before anything happened is empty.
        var before = JsonDocument.Parse(await _admin.GetStringAsync("audit?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z")).RootElement;
        Assert.Equal(0, before.GetProperty("items").GetArrayLength());

    }

    [Fact]
    public async Task Missing_and_wrong_admin_keys_get_401_and_are_audited_without_the_presented_value()
    {
        using var anonymous = new HttpClient { BaseAddress = new Uri(_gateway.BaseAddress, "/api/admin/") };
        using var none = await anonymous.GetAsync("keys");
        Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
        Assert.Equal("admin_unauthorized", (await JsonAsync(none)).GetProperty("code").GetString());

        var forged = "fpa_" + _adminKey[4..20] + "_" + new string('A', 43) + "AAAAAA";
        using var wrongClient = _gateway.AdminClient(forged);
        using var wrong = await wrongClient.GetAsync("keys");
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        // A client key is not an admin key.
        var (_, clientKey) = await CreateAsync();
        using var clientKeyClient = _gateway.AdminClient(clientKey);
        using var asClient = await clientKeyClient.GetAsync("keys");
        Assert.Equal(HttpStatusCode.Unauthorized, asClient.StatusCode);

        var audit = JsonDocument.Parse(await _admin.GetStringAsync("audit")).RootElement.GetProperty("items").EnumerateArray()
            .Where(e => e.GetProperty("action").GetString() == "admin.auth_failed").ToList();
        Assert.Equal(3, audit.Count);
        Assert.All(audit, e => Assert.Equal("unauthenticated", e.GetProperty("result").GetString()));
        var rows = await DumpTableAsync(_gateway, FuncProxyTables.Audit);
        Assert.DoesNotContain(rows, r => r.Contains(forged[21..], StringComparison.Ordinal) || r.Contains(clientKey[21..], StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_audit_table_never_holds_key_material()
    {
        var (id, key) = await CreateAsync("""{"name":"x","allowedUpstreams":["echo"]}""");
        using var rotated = await _admin.PostAsync($"keys/{id}/rotate", JsonBody("""{"gracePeriodSeconds":5}"""));
        var newKey = (await JsonAsync(rotated)).GetProperty("key").GetString()!;
        (await _admin.PostAsync($"keys/{id}/revoke", null)).EnsureSuccessStatusCode();

        var rows = await DumpTableAsync(_gateway, FuncProxyTables.Audit);
        var keyRows = await DumpTableAsync(_gateway, FuncProxyTables.Keys);

        Assert.NotEmpty(rows);
        foreach (var secret in new[] { key, newKey, _adminKey }.Select(k => k[21..]))
        {
            Assert.DoesNotContain(rows, r => r.Contains(secret, StringComparison.Ordinal));
            Assert.DoesNotContain(keyRows, r => r.Contains(secret, StringComparison.Ordinal));
        }
        Assert.DoesNotContain(rows, r => r.Contains("Hash", StringComparison.Ordinal));
        Assert.False(_gateway.Logs.Contains(key[21..]) || _gateway.Logs.Contains(newKey[21..]) || _gateway.Logs.Contains(_adminKey[21..]));
    }

    [Fact]
    public async Task Unknown_ids_get_404_and_malformed_ids_get_400_naming_the_id()
    {
        var unknown = new string('a', 16);
        foreach (var (method, path) in new[] { ("GET", ""), ("PATCH", ""), ("POST", "/disable"), ("POST", "/enable"), ("POST", "/revoke"), ("POST", "/rotate"), ("GET", "/usage") })
        {
            using var request = new HttpRequestMessage(new HttpMethod(method), "keys/" + unknown + path)
            {
                Content = method == "PATCH" ? JsonBody("""{"name":"x"}""") : null,
            };
            using var response = await _admin.SendAsync(request);
            Assert.True(response.StatusCode == HttpStatusCode.NotFound, $"{method} {path}: {response.StatusCode}");
            Assert.Equal("key_not_found", (await JsonAsync(response)).GetProperty("code").GetString());
        }
        using var malformed = await _admin.GetAsync("keys/NOT-AN-ID");
        Assert.Equal(HttpStatusCode.BadRequest, malformed.StatusCode);
        Assert.Equal(["id"], await ErrorFieldsAsync(malformed));
    }

    [Fact]
    public async Task Bad_fields_are_refused_with_400_naming_each_one()
    {
        using var response = await _admin.PostAsync("keys", JsonBody("""
            {"name":"","owner":"bad\u0001owner","allowedUpstreams":["nope","echo","echo"],"expiresAt":"2001-01-01T00:00:00Z",
             "limits":{"requestsPerMinute":-1,"bogus":1,"tokensPerDay":"many"},"metadata":{"ok":"x","bad name!":"y"},"extra":true}
            """));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        var fields = await ErrorFieldsAsync(response);
        foreach (var expected in new[] { "name", "owner", "allowedUpstreams[0]", "allowedUpstreams[2]", "expiresAt", "limits.requestsPerMinute", "limits.bogus", "limits.tokensPerDay", "metadata", "extra" })
        {
            Assert.Contains(expected, fields);
        }

        using var missing = await _admin.PostAsync("keys", JsonBody("{}"));
        Assert.Equal(["name", "allowedUpstreams"], await ErrorFieldsAsync(missing));
        using var notJson = await _admin.PostAsync("keys", JsonBody("{nope"));
        Assert.Equal(["$"], await ErrorFieldsAsync(notJson));
        using var tooLong = await _admin.PostAsync("keys", JsonBody($$"""{"name":"{{new string('n', 101)}}","allowedUpstreams":["*"]}"""));
        Assert.Equal(["name"], await ErrorFieldsAsync(tooLong));
        using var badQuery = await _admin.GetAsync("keys?status=gone&limit=0&bogus=1");
        Assert.Equal(["bogus", "status", "limit"], await ErrorFieldsAsync(badQuery));
        using var badAudit = await _admin.GetAsync("audit?keyId=x&from=yesterday&continuationToken=zzz");
        Assert.Equal(["keyId", "from", "continuationToken"], (await ErrorFieldsAsync(badAudit)).Distinct().ToArray());
        using var emptyPatch = await _admin.PatchAsync("keys/" + new string('a', 16), JsonBody("{}"));
        Assert.Equal(["$"], await ErrorFieldsAsync(emptyPatch));
    }

    [Fact]
    public async Task A_retried_create_with_the_same_Idempotency_Key_returns_the_same_record_without_minting_or_showing_a_key()
    {
        const string body = """{"name":"idem","allowedUpstreams":["echo"]}""";
        HttpRequestMessage Request(string json) => new(HttpMethod.Post, "keys") { Content = JsonBody(json), Headers = { { "Idempotency-Key", "create-idem-1" } } };

        using var first = await _admin.SendAsync(Request(body));
        using var second = await _admin.SendAsync(Request(body));
        using var different = await _admin.SendAsync(Request("""{"name":"other","allowedUpstreams":["echo"]}"""));

        Assert.Equal(HttpStatusCode.Created, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        var a = await JsonAsync(first);
        var b = await JsonAsync(second);
        Assert.Equal(a.GetProperty("record").GetProperty("id").GetString(), b.GetProperty("record").GetProperty("id").GetString());
        Assert.Equal(JsonValueKind.Null, b.GetProperty("key").ValueKind);
        Assert.False(b.GetProperty("keyShown").GetBoolean());
        Assert.Equal("true", second.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal(HttpStatusCode.UnprocessableEntity, different.StatusCode);
        var list = JsonDocument.Parse(await _admin.GetStringAsync("keys")).RootElement.GetProperty("items");
        Assert.Single(list.EnumerateArray(), k => k.GetProperty("name").GetString() == "idem");
    }

    [Fact]
    public async Task The_admin_route_takes_precedence_over_the_proxy_route()
    {
        using var anonymous = await _gateway.Client.GetAsync("/api/admin/keys");
        Assert.Equal("admin_unauthorized", (await JsonAsync(anonymous)).GetProperty("code").GetString());
        using var root = await _admin.GetAsync("/api/admin");
        Assert.Equal("not_found", (await JsonAsync(root)).GetProperty("code").GetString());
        using var wrongMethod = await _admin.DeleteAsync("keys");
        Assert.Equal(HttpStatusCode.MethodNotAllowed, wrongMethod.StatusCode);
        Assert.Equal("GET, POST", string.Join(", ", wrongMethod.Content.Headers.Allow));
    }
}
