using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using FuncProxy.Http;
using FuncProxy.RateLimiting;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;
using static FuncProxy.Tests.Admin.AdminTestKit;

namespace FuncProxy.Tests.Admin;

/// <summary>
/// Per-IP failure counts, lockouts and the admin rate limit shared by all instances (FuncProxy:Lockouts): three hosts on
/// one table prefix act as three instances of one deployment on one Azurite. Callers are told apart by
/// X-Forwarded-For from the trusted loopback proxy, so each test locks out an address of its own.
/// </summary>
public sealed class SharedLockoutTests(ITestOutputHelper output) : IAsyncLifetime
{
    private UpstreamStub _stub = null!;

    public async Task InitializeAsync() => _stub = await UpstreamStub.StartAsync(record: false);

    public async Task DisposeAsync() => await _stub.DisposeAsync();

    private Dictionary<string, string?> SettingsWith(params (string Key, string? Value)[] extra) =>
        Settings(_stub, [("FuncProxy:TrustedProxies:0", "127.0.0.1"), .. extra]);

    private static async Task<(HttpStatusCode Status, string? Code)> CallAsync(GatewayHost gateway, string key, string clientIp)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/echo/ping");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        request.Headers.Add("X-Forwarded-For", clientIp);
        using var response = await gateway.Client.SendAsync(request);
        var code = response.Content.Headers.ContentType?.MediaType == "application/problem+json"
            ? (await JsonAsync(response)).GetProperty("code").GetString() : null;
        return (response.StatusCode, code);
    }

    private static async Task<HttpStatusCode> AdminCallAsync(GatewayHost gateway, string adminKey, string clientIp)
    {
        using var client = gateway.AdminClient(adminKey);
        client.DefaultRequestHeaders.Add("X-Forwarded-For", clientIp);
        using var response = await client.GetAsync("keys?limit=1");
        return response.StatusCode;
    }

    private static string Guess(FuncProxy.Keys.IssuedKey valid) => "fpk_" + valid.Record.Id + "_" + new string('A', 43) + "AAAAAA";

    [Fact]
    public async Task Refused_keys_spread_over_three_instances_add_up_to_one_limit_and_lock_the_IP_out_on_all()
    {
        // 6 failures allowed per hour: 2 on each instance reach it only together (per instance each saw 2, far below 6).
        var settings = SettingsWith(("FuncProxy:Keys:MaxFailuresPerIp", "6"), ("FuncProxy:Keys:FailureWindow", "01:00:00"),
            ("FuncProxy:Keys:LockoutDuration", "00:05:00"));
        var prefix = TestStorage.NewTablePrefix();
        await using var a = await GatewayHost.StartAsync(settings, prefix);
        await using var b = await GatewayHost.StartAsync(settings, prefix);
        await using var c = await GatewayHost.StartAsync(settings, prefix);
        var valid = await a.MintKeyAsync("echo");
        const string Attacker = "203.0.113.61";
        await FixedWindows.AwayFromEndAsync(TimeSpan.FromHours(1), TimeSpan.FromSeconds(30));

        foreach (var instance in new[] { a, b, c })
        {
            for (var i = 0; i < 2; i++)
            {
                Assert.Equal(HttpStatusCode.Unauthorized, (await CallAsync(instance, Guess(valid), Attacker)).Status);
            }
        }

        // The sixth failure tripped the lockout on c at once; a and b learn it from the lockouts table.
        Assert.Equal((HttpStatusCode.TooManyRequests, "too_many_failed_keys"), await CallAsync(c, valid.Value, Attacker));
        foreach (var instance in new[] { a, b })
        {
            var refused = await Eventually.PollAsync(() => CallAsync(instance, valid.Value, Attacker), r => r.Status == HttpStatusCode.TooManyRequests);
            Assert.Equal("too_many_failed_keys", refused.Code);
        }
        // Another caller is untouched everywhere.
        foreach (var instance in new[] { a, b, c })
        {
            Assert.Equal(HttpStatusCode.OK, (await CallAsync(instance, valid.Value, "198.51.100.61")).Status);
        }
    }

    [Fact]
    public async Task An_IP_locked_out_on_one_instance_is_refused_by_the_others_within_the_sync_interval()
    {
        var settings = SettingsWith(("FuncProxy:Keys:MaxFailuresPerIp", "3"), ("FuncProxy:Keys:FailureWindow", "01:00:00"),
            ("FuncProxy:Keys:LockoutDuration", "00:05:00"));
        var prefix = TestStorage.NewTablePrefix();
        await using var a = await GatewayHost.StartAsync(settings, prefix);
        await using var b = await GatewayHost.StartAsync(settings, prefix);
        await using var c = await GatewayHost.StartAsync(settings, prefix);
        var valid = await a.MintKeyAsync("echo");
        const string Attacker = "203.0.113.62";
        await FixedWindows.AwayFromEndAsync(TimeSpan.FromHours(1), TimeSpan.FromSeconds(30));
        // Warm: the key record is cached on b and c, so what follows measures the lockout, not a key read.
        Assert.Equal(HttpStatusCode.OK, (await CallAsync(b, valid.Value, "198.51.100.62")).Status);
        Assert.Equal(HttpStatusCode.OK, (await CallAsync(c, valid.Value, "198.51.100.62")).Status);

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await CallAsync(a, Guess(valid), Attacker)).Status);
        }
        var clock = Stopwatch.StartNew();
        Assert.Equal(HttpStatusCode.TooManyRequests, (await CallAsync(a, valid.Value, Attacker)).Status);
        foreach (var instance in new[] { b, c })
        {
            var refused = await Eventually.PollAsync(() => CallAsync(instance, valid.Value, Attacker), r => r.Status == HttpStatusCode.TooManyRequests);
            Assert.Equal((HttpStatusCode.TooManyRequests, "too_many_failed_keys"), refused);
        }
        // Reported, never asserted (a busy machine stretches it): the bound is the sync interval plus a table write and read.
        output.WriteLine($"b and c refused the address {clock.ElapsedMilliseconds} ms after a did (sync interval 1 s).");
        // One row written, by a, once: the others learned it by reading.
        var board = a.Services.GetRequiredService<LockoutBoard>();
        Assert.True(await Eventually.TrueAsync(() => Task.FromResult(board.Writes >= 1)));
        Assert.Equal(1, board.Writes);
        Assert.Equal(0, b.Services.GetRequiredService<LockoutBoard>().Writes);
    }

    [Fact]
    public async Task Failed_admin_authentications_on_three_instances_add_up_and_lock_the_IP_out_of_the_admin_API_everywhere()
    {
        var settings = SettingsWith(("FuncProxy:Admin:MaxFailedAttempts", "3"), ("FuncProxy:Admin:FailureWindow", "01:00:00"),
            ("FuncProxy:Admin:LockoutDuration", "00:05:00"));
        var prefix = TestStorage.NewTablePrefix();
        await using var a = await GatewayHost.StartAsync(settings, prefix);
        await using var b = await GatewayHost.StartAsync(settings, prefix);
        await using var c = await GatewayHost.StartAsync(settings, prefix);
        var adminKey = await a.MintAdminKeyAsync();
        const string Attacker = "203.0.113.63";
        await FixedWindows.AwayFromEndAsync(TimeSpan.FromHours(1), TimeSpan.FromSeconds(30));

        foreach (var instance in new[] { a, b, c })
        {
            Assert.Equal(HttpStatusCode.Unauthorized, await AdminCallAsync(instance, "fpa_wrong", Attacker));
        }
        foreach (var instance in new[] { a, b, c })
        {
            // Even with a valid admin key.
            Assert.Equal(HttpStatusCode.TooManyRequests,
                await Eventually.PollAsync(() => AdminCallAsync(instance, adminKey, Attacker), s => s == HttpStatusCode.TooManyRequests));
        }
        Assert.Equal(HttpStatusCode.OK, await AdminCallAsync(b, adminKey, "198.51.100.63"));
    }

    [Fact]
    public async Task The_admin_rate_limit_per_IP_is_one_budget_for_all_instances()
    {
        var settings = SettingsWith(("FuncProxy:Admin:RequestsPerMinutePerIp", "6"), ("FuncProxy:Admin:MaxFailedAttempts", "1000"));
        var prefix = TestStorage.NewTablePrefix();
        await using var a = await GatewayHost.StartAsync(settings, prefix);
        await using var b = await GatewayHost.StartAsync(settings, prefix);
        await using var c = await GatewayHost.StartAsync(settings, prefix);
        var adminKey = await a.MintAdminKeyAsync();
        const string Operator = "203.0.113.64";
        await FixedWindows.AwayFromEndAsync(TimeSpan.FromMinutes(1), TimeSpan.FromSeconds(20));

        // 4 calls on each instance: 12 in all, each instance well within 6 on its own. Together they share one budget of 6
        // (near the limit the limiter may refuse a little early, never admit more).
        var admitted = 0;
        var refused = 0;
        foreach (var instance in new[] { a, b, c })
        {
            for (var i = 0; i < 4; i++)
            {
                var status = await AdminCallAsync(instance, adminKey, Operator);
                admitted += status == HttpStatusCode.OK ? 1 : 0;
                refused += status == HttpStatusCode.TooManyRequests ? 1 : 0;
            }
        }
        Assert.InRange(admitted, 3, 6);
        Assert.Equal(12 - admitted, refused);
        Assert.Equal(HttpStatusCode.OK, await AdminCallAsync(a, adminKey, "198.51.100.64"));
    }

    [Fact]
    public async Task Calls_that_fail_nothing_cost_no_storage_operation_for_lockouts()
    {
        // No limits are configured, so the limiter's counters are not touched by these calls either: any counter
        // operation would be the lockout's.
        await using var gateway = await GatewayHost.StartAsync(SettingsWith(("FuncProxy:Keys:MaxFailuresPerIp", "3")));
        var valid = await gateway.MintKeyAsync("echo");
        Assert.Equal(HttpStatusCode.OK, (await CallAsync(gateway, valid.Value, "198.51.100.65")).Status);
        var store = gateway.Services.GetRequiredService<CounterStore>();
        var before = store.Operations;

        for (var i = 0; i < 50; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await CallAsync(gateway, valid.Value, $"198.51.100.{i + 1}")).Status);
        }

        Assert.Equal(before, store.Operations);
        // One refused key is counted in storage: the counter is real.
        Assert.Equal(HttpStatusCode.Unauthorized, (await CallAsync(gateway, Guess(valid), "203.0.113.65")).Status);
        Assert.True(store.Operations > before);
    }

    [Fact]
    public async Task Unshared_lockouts_stay_on_the_instance_that_counted_them()
    {
        var settings = SettingsWith(("FuncProxy:Lockouts:Shared", "false"), ("FuncProxy:Keys:MaxFailuresPerIp", "3"),
            ("FuncProxy:Keys:LockoutDuration", "00:05:00"));
        var prefix = TestStorage.NewTablePrefix();
        await using var a = await GatewayHost.StartAsync(settings, prefix);
        await using var b = await GatewayHost.StartAsync(settings, prefix);
        var valid = await a.MintKeyAsync("echo");
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await CallAsync(a, Guess(valid), "203.0.113.66")).Status);
        }
        Assert.Equal(HttpStatusCode.TooManyRequests, (await CallAsync(a, valid.Value, "203.0.113.66")).Status);
        // a wrote no lockout row (sharing is off): even a read of the lockouts table teaches b nothing.
        await b.Services.GetRequiredService<LockoutBoard>().RefreshAsync();
        Assert.Equal(HttpStatusCode.OK, (await CallAsync(b, valid.Value, "203.0.113.66")).Status);
    }
}
