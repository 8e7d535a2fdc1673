using System.Net.Http.Headers;
using System.Text.Json;
using FuncProxy.Tests.Infrastructure;

namespace FuncProxy.Tests.Proxying;

/// <summary>
/// What of a client's request reaches the upstream: methods, hop-by-hop and forwarding headers, path parameters. Sent as
/// raw HTTP, since HttpClient would normalise some of these away before the gateway ever saw them.
/// </summary>
public sealed class RequestHygieneTests(GatewayFixture fixture) : IClassFixture<GatewayFixture>
{
    private GatewayHost Gateway => fixture.Gateway;

    private static Dictionary<string, string> EchoedHeaders(string body) =>
        JsonDocument.Parse(body).RootElement.GetProperty("headers").EnumerateObject()
            .ToDictionary(p => p.Name, p => p.Value.GetString()!, StringComparer.OrdinalIgnoreCase);

    [Fact]
    public async Task Headers_the_client_names_in_Connection_do_not_reach_the_upstream()
    {
        // HttpClient, not raw HTTP: the raw sender needs "Connection: close", and Kestrel replaces a Connection value that
        // holds "close" (or "keep-alive", or "upgrade") among unknown names with that one word before the gateway sees
        // it (HttpHeaders.ParseConnection), so the names are lost to any application on Kestrel (see SECURITY.md).
        var key = await Gateway.MintKeyAsync("echo");
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/echo/h");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Value);
        request.Headers.Connection.Add("X-Hop-One");
        request.Headers.Connection.Add("x-hop-two");
        request.Headers.Add("X-Hop-One", "1");
        request.Headers.Add("X-Hop-Two", "2");
        request.Headers.Add("X-End-To-End", "kept");
        using var response = await Gateway.Client.SendAsync(request);

        Assert.Equal(200, (int)response.StatusCode);
        var headers = EchoedHeaders(await response.Content.ReadAsStringAsync());
        Assert.DoesNotContain("X-Hop-One", headers.Keys);
        Assert.DoesNotContain("X-Hop-Two", headers.Keys);
        Assert.Equal("kept", headers["X-End-To-End"]);
    }

    [Theory]
    [InlineData("Content-Length")]
    [InlineData("content-type")]
    [InlineData("Host")]
    [InlineData("Transfer-Encoding")]
    public async Task A_Connection_header_naming_a_header_that_describes_the_message_gets_400_problem_json(string named)
    {
        var key = await Gateway.MintKeyAsync("echo");
        var before = fixture.Stub.Requests.Count;
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/echo/h") { Content = new StringContent("{}", System.Text.Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Value);
        request.Headers.Connection.Add(named);
        using var response = await Gateway.Client.SendAsync(request);

        await Problems.AssertProblemAsync(response, 400, "invalid_header");
        Assert.Equal(before, fixture.Stub.Requests.Count);
    }

    [Fact]
    public async Task No_forwarding_client_identity_or_override_header_reaches_the_upstream()
    {
        string[] spoofed =
        [
            "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Prefix", "X-Forwarded-Port", "X-Forwarded-Server",
            "X-Forwarded-Scheme", "X-Forwarded-Uri", "X-Forwarded-Ssl", "X-Forwarded-Client-Cert", "X-Forwarded-Anything", "Forwarded",
            "X-Real-IP", "X-Client-IP", "True-Client-IP", "CF-Connecting-IP", "X-Cluster-Client-IP", "X-Original-URL", "X-Original-For",
            "X-Original-Host", "X-Rewrite-URL", "X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-NAME", "X-MS-CLIENT-PRINCIPAL-ID",
            "X-ARR-ClientCert", "X-SSL-Client-Cert", "X-Client-Cert", "Ssl-Client-Cert", "X-HTTP-Method-Override", "X-Method-Override",
        ];
        var key = await Gateway.MintKeyAsync("echo");
        var (status, _, body) = await RawHttp.SendAsync(Gateway.BaseAddress, "GET", "/api/echo/h",
            [$"Authorization: Bearer {key.Value}", .. spoofed.Select(h => h + ": spoofed"), "X-Custom: kept"]);

        Assert.Equal(200, status);
        var headers = EchoedHeaders(body);
        Assert.DoesNotContain(spoofed, headers.ContainsKey);
        Assert.DoesNotContain(headers.Values, v => v.Contains("spoofed", StringComparison.Ordinal));
        Assert.Equal("kept", headers["X-Custom"]);
    }

    [Theory]
    [InlineData("TRACE")]
    [InlineData("CONNECT")]
    [InlineData("TRACK")]
    [InlineData("PROPFIND")]
    [InlineData("MKCOL")]
    [InlineData("FROB")]
    public async Task Methods_outside_the_forwarded_set_get_405_problem_json_with_Allow_and_never_reach_the_upstream(string method)
    {
        var key = await Gateway.MintKeyAsync("stub");
        var before = fixture.Stub.Requests.Count;

        var (status, head, body) = await RawHttp.SendAsync(Gateway.BaseAddress, method, "/api/stub/chat/completions", [$"Authorization: Bearer {key.Value}"]);

        Assert.Equal(405, status);
        Assert.Contains("Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS", head, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("Content-Type: application/problem+json", head, StringComparison.OrdinalIgnoreCase);
        Assert.Equal("method_not_allowed", JsonDocument.Parse(body).RootElement.GetProperty("code").GetString());
        Assert.DoesNotContain(GatewayFixture.ProviderSecret, body, StringComparison.Ordinal);
        Assert.Equal(before, fixture.Stub.Requests.Count);
    }

    [Theory]
    [InlineData("GET")]
    [InlineData("HEAD")]
    [InlineData("POST")]
    [InlineData("PUT")]
    [InlineData("PATCH")]
    [InlineData("DELETE")]
    [InlineData("OPTIONS")]
    public async Task The_methods_http_apis_use_are_forwarded(string method)
    {
        var key = await Gateway.MintKeyAsync("echo");
        var (status, _, _) = await RawHttp.SendAsync(Gateway.BaseAddress, method, "/api/echo/m", [$"Authorization: Bearer {key.Value}"], method is "POST" or "PUT" or "PATCH" ? "{}" : null);
        Assert.Equal(200, status);
        Assert.Contains(fixture.Stub.Requests, r => r.Method == method && r.Path == "/echo/base/m");
    }

    [Theory]
    [InlineData("/api/echo/..;/secret")]
    [InlineData("/api/echo/a/..;jsessionid=1/secret")]
    [InlineData("/api/echo/.;x/secret")]
    [InlineData("/api/echo/..%3B/secret")]
    [InlineData("/api/echo/;x/secret")]
    [InlineData("/api/echo/..%20/secret")]
    [InlineData("/api/echo/.../secret")]
    [InlineData("/api/echo/.%20./secret")]
    [InlineData("/api/echo/%EF%BC%8E%EF%BC%8E/secret")]
    public async Task Segments_an_upstream_could_read_as_dot_dot_get_400_invalid_path(string target)
    {
        var key = await Gateway.MintKeyAsync("echo");
        var before = fixture.Stub.Requests.Count;
        var (status, _, body) = await RawHttp.SendAsync(Gateway.BaseAddress, "GET", target, [$"Authorization: Bearer {key.Value}"]);
        Assert.Equal(400, status);
        Assert.Equal("invalid_path", JsonDocument.Parse(body).RootElement.GetProperty("code").GetString());
        Assert.Equal(before, fixture.Stub.Requests.Count);
    }

    [Fact]
    public async Task Path_parameters_that_are_not_dot_segments_are_still_forwarded()
    {
        var key = await Gateway.MintKeyAsync("echo");
        var (status, _, body) = await RawHttp.SendAsync(Gateway.BaseAddress, "GET", "/api/echo/models/m;v=1/x", [$"Authorization: Bearer {key.Value}"]);
        Assert.Equal(200, status);
        Assert.Equal("/echo/base/models/m;v=1/x", JsonDocument.Parse(body).RootElement.GetProperty("path").GetString());
    }

    [Fact]
    public async Task An_upgrade_request_is_forwarded_as_a_plain_request_never_as_a_tunnel()
    {
        var key = await Gateway.MintKeyAsync("echo");
        var (status, head, body) = await RawHttp.SendAsync(Gateway.BaseAddress, "GET", "/api/echo/ws",
        [
            $"Authorization: Bearer {key.Value}", "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ]);
        Assert.Equal(200, status);
        Assert.DoesNotContain("101", head.Split("\r\n")[0], StringComparison.Ordinal);
        var headers = EchoedHeaders(body);
        Assert.DoesNotContain("Upgrade", headers.Keys);
    }
}
