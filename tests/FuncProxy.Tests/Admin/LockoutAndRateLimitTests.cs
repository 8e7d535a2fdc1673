using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using FuncProxy.Tests.Infrastructure;
using static FuncProxy.Tests.Admin.AdminTestKit;

namespace FuncProxy.Tests.Admin;

/// <summary>Per-IP admin rate limit, admin lockout after failed authentications, client-key lockout, trusted proxies.</summary>
public sealed class LockoutAndRateLimitTests : IAsyncLifetime
{
    private UpstreamStub _stub = null!;

    public async Task InitializeAsync() => _stub = await UpstreamStub.StartAsync();

    public async Task DisposeAsync() => await _stub.DisposeAsync();

    [Fact]
    public async Task Repeated_failed_admin_authentications_lock_the_IP_out_even_for_a_valid_key_until_the_lockout_ends()
    {
        await using var gateway = await GatewayHost.StartAsync(Settings(_stub,
            ("FuncProxy:Admin:MaxFailedAttempts", "3"), ("FuncProxy:Admin:LockoutDuration", "00:00:08"),
            // Failures are counted in fixed windows aligned to UTC: an hour's, so the three below share one.
            ("FuncProxy:Admin:FailureWindow", "01:00:00")));
        await FixedWindows.AwayFromEndAsync(TimeSpan.FromHours(1), TimeSpan.FromSeconds(30));
        var adminKey = await gateway.MintAdminKeyAsync();
        using var admin = gateway.AdminClient(adminKey);
        using var wrong = gateway.AdminClient("fpa_wrong");

        for (var i = 0; i < 3; i++)
        {
            using var failed = await wrong.GetAsync("keys");
            Assert.Equal(HttpStatusCode.Unauthorized, failed.StatusCode);
        }
        using var locked = await admin.GetAsync("keys");
        Assert.Equal(HttpStatusCode.TooManyRequests, locked.StatusCode);
        Assert.Equal("admin_locked_out", (await JsonAsync(locked)).GetProperty("code").GetString());
        var retryAfter = int.Parse(locked.Headers.GetValues("Retry-After").Single(), System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(retryAfter, 1, 8);

        // The lockout ends 8 s after the third failure: wait for that (generously, on a busy machine), never a fixed sleep.
        var after = await Eventually.PollAsync(() => admin.GetAsync("keys"), r => r.StatusCode != HttpStatusCode.TooManyRequests);
        using (after)
        {
            Assert.Equal(HttpStatusCode.OK, after.StatusCode);
        }
        using var audit = await admin.GetAsync("audit");
        var actions = (await JsonAsync(audit)).GetProperty("items").EnumerateArray().Select(e => e.GetProperty("action").GetString()).ToList();
        Assert.Equal(3, actions.Count(a => a == "admin.auth_failed"));
        Assert.Single(actions, a => a == "admin.lockout");
    }

    [Fact]
    public async Task Admin_calls_beyond_the_per_IP_budget_get_429_with_Retry_After()
    {
        await using var gateway = await GatewayHost.StartAsync(Settings(_stub, ("FuncProxy:Admin:RequestsPerMinutePerIp", "5")));
        using var admin = gateway.AdminClient(await gateway.MintAdminKeyAsync());
        // The budget is per minute of UTC (shared by all instances through storage): the six calls below share one.
        await FixedWindows.AwayFromEndAsync(TimeSpan.FromMinutes(1), TimeSpan.FromSeconds(20));
        for (var i = 0; i < 5; i++)
        {
            using var ok = await admin.GetAsync("keys");
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }
        using var limited = await admin.GetAsync("keys");
        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        Assert.Equal("admin_rate_limited", (await JsonAsync(limited)).GetProperty("code").GetString());
        Assert.True(int.Parse(limited.Headers.GetValues("Retry-After").Single(), System.Globalization.CultureInfo.InvariantCulture) >= 1);
    }

    [Fact]
    public async Task Repeated_refused_client_keys_lock_the_IP_out_of_the_proxy_with_429_and_Retry_After()
    {
        await using var gateway = await GatewayHost.StartAsync(Settings(_stub,
            ("FuncProxy:Keys:MaxFailuresPerIp", "3"), ("FuncProxy:Keys:LockoutDuration", "00:00:30"), ("FuncProxy:Keys:FailureWindow", "01:00:00")));
        await FixedWindows.AwayFromEndAsync(TimeSpan.FromHours(1), TimeSpan.FromSeconds(30));
        var valid = await gateway.MintKeyAsync("echo");
        var guess = "fpk_" + valid.Record.Id + "_" + new string('A', 43) + "AAAAAA";
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(401, await CallWithKeyAsync(gateway.Client, guess));
        }

        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/echo/ping");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", valid.Value);
        using var locked = await gateway.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.TooManyRequests, locked.StatusCode);
        Assert.Equal("too_many_failed_keys", (await JsonAsync(locked)).GetProperty("code").GetString());
        Assert.InRange(int.Parse(locked.Headers.GetValues("Retry-After").Single(), System.Globalization.CultureInfo.InvariantCulture), 25, 30);
        Assert.Empty(_stub.Requests);
    }

    [Fact]
    public async Task X_Forwarded_For_is_believed_only_from_a_configured_trusted_proxy()
    {
        await using var untrusting = await GatewayHost.StartAsync(Settings(_stub));
        await using var trusting = await GatewayHost.StartAsync(Settings(_stub, ("FuncProxy:TrustedProxies:0", "127.0.0.1")));
        foreach (var gateway in new[] { untrusting, trusting })
        {
            using var anonymous = new HttpClient { BaseAddress = new Uri(gateway.BaseAddress, "/api/admin/") };
            anonymous.DefaultRequestHeaders.Add("X-Forwarded-For", "198.51.100.1, 203.0.113.9");
            (await anonymous.GetAsync("keys")).Dispose();
        }

        async Task<string> FailedFromAsync(GatewayHost gateway)
        {
            using var admin = gateway.AdminClient(await gateway.MintAdminKeyAsync());
            var items = JsonDocument.Parse(await admin.GetStringAsync("audit")).RootElement.GetProperty("items");
            return items.EnumerateArray().Single(e => e.GetProperty("action").GetString() == "admin.auth_failed").GetProperty("clientIp").GetString()!;
        }
        Assert.Equal("127.0.0.1", await FailedFromAsync(untrusting));
        // The rightmost untrusted hop is the client; the left one was written by the client itself and is not believed.
        Assert.Equal("203.0.113.9", await FailedFromAsync(trusting));
    }
}
