using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using FuncProxy.Http;
using FuncProxy.Tests.Infrastructure;
using static FuncProxy.Tests.Admin.AdminTestKit;

namespace FuncProxy.Tests.Admin;

/// <summary>
/// Client address resolution behind a front end (FuncProxy:ClientIpHeader, X-Forwarded-For with ports) and lockouts
/// that fail safe: an address that is only a proxy hop is never locked out. The Functions host and App Service's front
/// end cannot run here; the gateway is called on loopback with the headers they would set.
/// </summary>
public sealed class ClientAddressTests : IAsyncLifetime
{
    private UpstreamStub _stub = null!;

    public async Task InitializeAsync() => _stub = await UpstreamStub.StartAsync();

    public async Task DisposeAsync() => await _stub.DisposeAsync();

    [Theory]
    [InlineData("203.0.113.7", "203.0.113.7")]
    [InlineData(" 203.0.113.7:51234 ", "203.0.113.7")]
    [InlineData("2001:db8::1", "2001:db8::1")]
    [InlineData("[2001:db8::1]:443", "2001:db8::1")]
    [InlineData("[2001:db8::1]", "2001:db8::1")]
    [InlineData("::ffff:198.51.100.9", "198.51.100.9")]
    public void Forwarded_addresses_are_parsed_with_the_port_dropped(string text, string expected)
    {
        Assert.True(ClientAddress.TryParseAddress(text, out var address));
        Assert.Equal(expected, address.ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("1")]
    [InlineData("1.2.3")]
    [InlineData("0x7f.0.0.1")]
    [InlineData("1.2.3.4.5")]
    [InlineData("1.2.3.4:")]
    [InlineData("1.2.3.4:99999")]
    [InlineData("1.2.3.4:80x")]
    [InlineData("1.2.3.4, 5.6.7.8")]
    [InlineData("example.com")]
    [InlineData("fe80::1%eth0")]
    [InlineData("[2001:db8::1]x")]
    [InlineData("[1.2.3.4]:80")]
    public void Malformed_forwarded_addresses_are_refused(string text)
    {
        Assert.False(ClientAddress.TryParseAddress(text, out _));
    }

    [Fact]
    public async Task With_a_client_IP_header_configured_that_header_is_the_client_and_the_admin_endpoint_shows_its_source()
    {
        await using var gateway = await GatewayHost.StartAsync(Settings(_stub, ("FuncProxy:ClientIpHeader", "X-Client-IP")));
        using var admin = gateway.AdminClient(await gateway.MintAdminKeyAsync());
        admin.DefaultRequestHeaders.Add("X-Client-IP", "198.51.100.7:4711");

        var body = await JsonAsync(await admin.GetAsync("client-address"));

        Assert.Equal("198.51.100.7", body.GetProperty("clientIp").GetString());
        Assert.Equal("X-Client-IP", body.GetProperty("source").GetString());
        Assert.False(body.GetProperty("proxyHop").GetBoolean());
        Assert.Equal("127.0.0.1", body.GetProperty("connectionIp").GetString());
    }

    [Fact]
    public async Task One_caller_locked_out_by_the_client_IP_header_does_not_lock_out_another_caller_behind_the_same_front_end()
    {
        await using var gateway = await GatewayHost.StartAsync(Settings(_stub, ("FuncProxy:ClientIpHeader", "X-Client-IP"),
            ("FuncProxy:Keys:MaxFailuresPerIp", "3"), ("FuncProxy:Keys:LockoutDuration", "00:05:00"), ("FuncProxy:Keys:FailureWindow", "01:00:00")));
        await FixedWindows.AwayFromEndAsync(TimeSpan.FromHours(1), TimeSpan.FromSeconds(30));
        var valid = await gateway.MintKeyAsync("echo");
        var guess = "fpk_" + valid.Record.Id + "_" + new string('A', 43) + "AAAAAA";
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(gateway, guess, "203.0.113.66:1000"));
        }

        Assert.Equal(HttpStatusCode.TooManyRequests, await CallAsync(gateway, valid.Value, "203.0.113.66:2000"));
        Assert.Equal(HttpStatusCode.OK, await CallAsync(gateway, valid.Value, "198.51.100.20:3000"));
    }

    [Fact]
    public async Task Failures_without_a_readable_client_IP_header_are_never_counted_towards_a_lockout()
    {
        await using var gateway = await GatewayHost.StartAsync(Settings(_stub, ("FuncProxy:ClientIpHeader", "X-Client-IP"),
            ("FuncProxy:Keys:MaxFailuresPerIp", "3"), ("FuncProxy:Admin:MaxFailedAttempts", "3")));
        var valid = await gateway.MintKeyAsync("echo");
        var guess = "fpk_" + valid.Record.Id + "_" + new string('A', 43) + "AAAAAA";
        using var wrongAdmin = gateway.AdminClient("fpa_wrong");
        for (var i = 0; i < 5; i++)
        {
            // Missing, then a list (two values in one header): neither names one client.
            Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(gateway, guess, i % 2 == 0 ? null : "203.0.113.1, 203.0.113.2"));
            using var refused = await wrongAdmin.GetAsync("keys");
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        }

        Assert.Equal(HttpStatusCode.OK, await CallAsync(gateway, valid.Value, null));
        using var admin = gateway.AdminClient(await gateway.MintAdminKeyAsync());
        var body = await JsonAsync(await admin.GetAsync("client-address"));
        Assert.True(body.GetProperty("proxyHop").GetBoolean());
        Assert.Equal("connection", body.GetProperty("source").GetString());
        var audit = JsonDocument.Parse(await admin.GetStringAsync("audit")).RootElement.GetProperty("items");
        Assert.DoesNotContain(audit.EnumerateArray(), e => e.GetProperty("action").GetString() == "admin.lockout");
    }

    [Fact]
    public async Task Behind_a_front_end_the_connection_address_is_never_locked_out()
    {
        await using var gateway = await GatewayHost.StartAsync(Settings(_stub, ("FuncProxy:BehindFrontEnd", "true"),
            ("FuncProxy:Keys:MaxFailuresPerIp", "2")));
        var valid = await gateway.MintKeyAsync("echo");
        var guess = "fpk_" + valid.Record.Id + "_" + new string('A', 43) + "AAAAAA";
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(gateway, guess, "203.0.113.5"));
        }

        Assert.Equal(HttpStatusCode.OK, await CallAsync(gateway, valid.Value, null));
        using var admin = gateway.AdminClient(await gateway.MintAdminKeyAsync());
        var body = await JsonAsync(await admin.GetAsync("client-address"));
        Assert.True(body.GetProperty("proxyHop").GetBoolean());
        Assert.Equal("127.0.0.1", body.GetProperty("clientIp").GetString());
    }

    [Fact]
    public async Task A_trusted_proxy_that_forwards_no_client_is_not_locked_out_and_forwarded_ports_are_dropped()
    {
        await using var gateway = await GatewayHost.StartAsync(Settings(_stub, ("FuncProxy:TrustedProxies:0", "127.0.0.1"),
            ("FuncProxy:Keys:MaxFailuresPerIp", "2")));
        var valid = await gateway.MintKeyAsync("echo");
        var guess = "fpk_" + valid.Record.Id + "_" + new string('A', 43) + "AAAAAA";
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(gateway, guess, null, forwardedFor: null));
        }
        Assert.Equal(HttpStatusCode.OK, await CallAsync(gateway, valid.Value, null, forwardedFor: null));

        using var admin = gateway.AdminClient(await gateway.MintAdminKeyAsync());
        admin.DefaultRequestHeaders.Add("X-Forwarded-For", "192.0.2.1, 198.51.100.44:61000");
        var body = await JsonAsync(await admin.GetAsync("client-address"));
        Assert.Equal("198.51.100.44", body.GetProperty("clientIp").GetString());
        Assert.Equal("X-Forwarded-For", body.GetProperty("source").GetString());
        Assert.False(body.GetProperty("proxyHop").GetBoolean());
    }

    private static async Task<HttpStatusCode> CallAsync(GatewayHost gateway, string key, string? clientIp, string? forwardedFor = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/echo/ping");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (clientIp is not null)
        {
            request.Headers.TryAddWithoutValidation("X-Client-IP", clientIp);
        }
        if (forwardedFor is not null)
        {
            request.Headers.TryAddWithoutValidation("X-Forwarded-For", forwardedFor);
        }
        using var response = await gateway.Client.SendAsync(request);
        return response.StatusCode;
    }
}
