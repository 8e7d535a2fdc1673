using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using FuncProxy.Keys;
using FuncProxy.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace FuncProxy.Tests.Http;

/// <summary>
/// A corpus of hostile inputs (malformed JSON text, odd headers and query strings) thrown at every management and proxy
/// endpoint: no answer may be a 5xx, every error is problem+json, and the log holds no exception.
/// </summary>
public sealed class HostileInputTests : IAsyncLifetime
{
    private UpstreamStub _stub = null!;
    private WebApplication _hostileUpstream = null!;
    private GatewayHost _gateway = null!;
    private HttpClient _admin = null!;
    private string _adminKey = null!;
    private string _keyId = null!;
    private string _tokenKey = null!;

    public async Task InitializeAsync()
    {
        _stub = await UpstreamStub.StartAsync();
        _hostileUpstream = await StartHostileUpstreamAsync();
        var hostile = _hostileUpstream.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        _gateway = await GatewayHost.StartAsync(new Dictionary<string, string?>
        {
            ["FuncProxy:Upstreams:echo:BaseUrl"] = new Uri(_stub.BaseAddress, "/echo/base").ToString(),
            ["FuncProxy:Upstreams:hostile:BaseUrl"] = hostile,
            ["FuncProxy:TrustedProxies:0"] = "127.0.0.1",
            ["FuncProxy:Admin:RequestsPerMinutePerIp"] = "100000",
            ["FuncProxy:Admin:MaxFailedAttempts"] = "100000",
            ["FuncProxy:Keys:MaxFailuresPerIp"] = "100000",
        });
        _adminKey = await _gateway.MintAdminKeyAsync();
        _admin = _gateway.AdminClient(_adminKey);
        var issued = await _gateway.Services.GetRequiredService<KeyLifecycle>().CreateAsync(new KeyCreation
        {
            Name = "hostile-target",
            AllowedUpstreams = ["echo", "hostile"],
            Limits = new KeyLimits { TokensPerMinute = 1_000_000_000 },
        });
        _keyId = issued.Record.Id;
        _tokenKey = issued.Value;
    }

    public async Task DisposeAsync()
    {
        _admin.Dispose();
        await _gateway.DisposeAsync();
        await _hostileUpstream.StopAsync();
        await _hostileUpstream.DisposeAsync();
        await _stub.DisposeAsync();
    }

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    private static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    /// <summary>Malformed JSON text, each as raw bytes (so invalid UTF-8 stays invalid).</summary>
    public static IEnumerable<(string Name, byte[] Body)> HostileBodies()
    {
        yield return ("lone high surrogate escape in a value", Utf8("""{"name":"\ud800","allowedUpstreams":["echo"]}"""));
        yield return ("lone low surrogate escape in an array", Utf8("""{"name":"ok","allowedUpstreams":["\udc00"]}"""));
        yield return ("reversed surrogate pair", Utf8("""{"name":"\udc00\ud800","allowedUpstreams":["echo"]}"""));
        yield return ("lone surrogate escape as a member name", Utf8("""{"\ud800":1}"""));
        yield return ("lone surrogate escape as a token-estimate member name", Utf8("""{"max_tokens\ud800":1,"model":"x"}"""));
        yield return ("lone surrogate escape as a metadata name", Utf8("""{"name":"ok","allowedUpstreams":["echo"],"metadata":{"\ud83d":"x"}}"""));
        yield return ("lone surrogate escape as a metadata value", Utf8("""{"name":"ok","allowedUpstreams":["echo"],"metadata":{"team":"\udfff"}}"""));
        yield return ("lone surrogate escape as a limit name", Utf8("""{"limits":{"\ud800":1}}"""));
        yield return ("lone surrogate escape in expiresAt", Utf8("""{"expiresAt":"\ud800"}"""));
        yield return ("lone surrogate escape in gracePeriodSeconds name", Utf8("""{"gracePeriodSeconds\ud800":1}"""));
        yield return ("invalid UTF-8 in a value", Concat(Utf8("{\"name\":\""), [0xC3, 0x28], Utf8(""","allowedUpstreams":["echo"]}""")));
        yield return ("overlong UTF-8 slash", Concat(Utf8("{\"name\":\""), [0xC0, 0xAF], Utf8(""","allowedUpstreams":["echo"]}""")));
        yield return ("UTF-8-encoded surrogate", Concat(Utf8("{\"name\":\""), [0xED, 0xA0, 0x80], Utf8(""","allowedUpstreams":["echo"]}""")));
        yield return ("invalid UTF-8 in a member name", Concat(Utf8("{\""), [0xFF, 0xFE], Utf8("\":1}")));
        yield return ("truncated UTF-8 sequence", Concat(Utf8("{\"name\":\""), [0xE2, 0x82], Utf8("\"}")));
        yield return ("escaped and raw invalid UTF-8 together", Concat(Utf8("""{"name":"\n"""), [0xF8, 0x88, 0x80, 0x80, 0x80], Utf8("\"}")));
        yield return ("UTF-16 with a byte order mark", Concat([0xFF, 0xFE], Encoding.Unicode.GetBytes("""{"name":"x"}""")));
        yield return ("UTF-8 byte order mark", Concat([0xEF, 0xBB, 0xBF], Utf8("""{"name":"x","allowedUpstreams":["echo"]}""")));
        yield return ("duplicate top-level member", Utf8("""{"name":"a","allowedUpstreams":["echo"],"allowedUpstreams":["*"]}"""));
        yield return ("duplicate member spelled with an escape", Utf8("""{"name":"a","n\u0061me":"b","allowedUpstreams":["echo"]}"""));
        yield return ("duplicate nested member", Utf8("""{"limits":{"requestsPerMinute":1,"requestsPerMinute":2}}"""));
        yield return ("deep nesting", Utf8(new string('[', 5000) + new string(']', 5000)));
        yield return ("huge exponent", Utf8("""{"limits":{"requestsPerMinute":1e400},"gracePeriodSeconds":1e400}"""));
        yield return ("huge integer", Utf8("""{"limits":{"requestsPerMinute":99999999999999999999999999},"gracePeriodSeconds":-99999999999999999999}"""));
        yield return ("negative zero and fractions", Utf8("""{"limits":{"requestsPerMinute":-0.0},"gracePeriodSeconds":1.5}"""));
        yield return ("dates at the ends of time", Utf8("""{"expiresAt":"9999-12-31T23:59:59-14:00"}"""));
        yield return ("dates before time", Utf8("""{"expiresAt":"0001-01-01T00:00:00+14:00"}"""));
        yield return ("NUL in a string", Utf8("""{"name":"\u0000","allowedUpstreams":["echo"],"metadata":{"a":"\u0000"}}"""));
        yield return ("raw control character", Utf8("{\"name\":\"a\tb\"}"));
        yield return ("NaN literal", Utf8("""{"limits":{"requestsPerMinute":NaN}}"""));
        yield return ("comment", Utf8("""/* hi */ {"name":"x"}"""));
        yield return ("trailing comma", Utf8("""{"name":"x",}"""));
        yield return ("trailing garbage", Utf8("""{"name":"x"} {"name":"y"}"""));
        yield return ("unterminated", Utf8("""{"name":"x"""));
        yield return ("null", Utf8("null"));
        yield return ("array", Utf8("[]"));
        yield return ("string", Utf8("\"x\""));
        yield return ("number", Utf8("12"));
        yield return ("whitespace only", Utf8("   \r\n  "));
        yield return ("wrong types everywhere", Utf8("""{"name":[],"owner":{},"allowedUpstreams":"echo","expiresAt":1,"limits":[],"metadata":"x","gracePeriodSeconds":"1"}"""));
        yield return ("empty names", Utf8("""{"":1,"name":"","allowedUpstreams":[""],"metadata":{"":""}}"""));
        yield return ("long member name", Utf8("{\"" + new string('n', 30_000) + "\":1}"));
        yield return ("too large", Utf8("{\"name\":\"" + new string('x', 70_000) + "\"}"));
    }

    [Fact]
    public async Task Malformed_json_text_gets_4xx_problem_json_from_every_admin_body_endpoint_and_is_forwarded_untouched_on_the_proxy_path()
    {
        var failures = new List<string>();
        foreach (var (name, body) in HostileBodies())
        {
            foreach (var (method, path, contentType) in new (string, string, string)[]
            {
                ("POST", "/api/admin/keys", "application/json"),
                ("PATCH", $"/api/admin/keys/{_keyId}", "application/merge-patch+json"),
                ("PATCH", $"/api/admin/keys/{_keyId}", "application/json"),
                ("POST", $"/api/admin/keys/{_keyId}/rotate", "application/json"),
            })
            {
                using var request = new HttpRequestMessage(new HttpMethod(method), path) { Content = Bytes(body, contentType) };
                request.Headers.Add("X-Admin-Key", _adminKey);
                using var response = await _gateway.Client.SendAsync(request);
                await CheckAsync(failures, $"{method} {path} [{contentType}] with {name}", response, expectError: true);
            }
            foreach (var upstream in new[] { "echo", "hostile" })
            {
                using var proxied = new HttpRequestMessage(HttpMethod.Post, $"/api/{upstream}/v1/chat/completions") { Content = Bytes(body, "application/json") };
                proxied.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _tokenKey);
                using var answer = await _gateway.Client.SendAsync(proxied);
                await CheckAsync(failures, $"proxy to {upstream} with {name}", answer, expectError: false);
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        AssertNoExceptionLogged();
    }

    [Fact]
    public async Task A_lone_surrogate_escape_in_an_admin_create_gets_400_problem_json_naming_the_problem()
    {
        using var response = await _admin.PostAsync("keys", Bytes(Utf8("""{"name":"\ud800","allowedUpstreams":["echo"]}"""), "application/json"));
        var problem = await Problems.AssertProblemAsync(response, 400, "invalid_request");
        Assert.Contains("surrogate", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        AssertNoExceptionLogged();
    }

    [Fact]
    public async Task A_member_named_twice_in_an_admin_body_is_refused_with_400_instead_of_the_last_one_winning()
    {
        using var create = await _admin.PostAsync("keys", Bytes(Utf8("""{"name":"dup","allowedUpstreams":["echo"],"allowedUpstreams":["*"]}"""), "application/json"));
        var problem = await Problems.AssertProblemAsync(create, 400, "invalid_request");
        Assert.Contains("more than once", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);

        using var patch = await _admin.PatchAsync($"keys/{_keyId}", Bytes(Utf8("""{"allowedUpstreams":["echo"],"allowedUpstreams":["*"]}"""), "application/merge-patch+json"));
        await Problems.AssertProblemAsync(patch, 400, "invalid_request");
        using var record = await _admin.GetAsync($"keys/{_keyId}");
        var upstreams = JsonDocument.Parse(await record.Content.ReadAsStringAsync()).RootElement.GetProperty("allowedUpstreams");
        Assert.DoesNotContain(upstreams.EnumerateArray(), u => u.GetString() == "*");
    }

    [Fact]
    public async Task A_lone_surrogate_member_name_on_a_token_limited_key_is_forwarded_instead_of_failing_with_500()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/echo/v1/chat/completions")
        {
            Content = Bytes(Utf8("""{"max_tokens\ud800":1,"model":"x"}"""), "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _tokenKey);
        using var response = await _gateway.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        AssertNoExceptionLogged();
    }

    [Theory]
    [InlineData("/json-lone-name")]
    [InlineData("/json-invalid-utf8")]
    [InlineData("/sse-lone-name")]
    public async Task An_upstream_answer_with_malformed_json_text_in_its_usage_reaches_the_client_unchanged(string path)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/hostile" + path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _tokenKey);
        using var response = await _gateway.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HostileAnswers[path], await response.Content.ReadAsByteArrayAsync());
        AssertNoExceptionLogged();
    }

    [Fact]
    public async Task The_upstreams_cookies_banners_and_host_policies_do_not_reach_the_client_and_every_answer_says_nosniff()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/hostile/banner");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _tokenKey);
        using var response = await _gateway.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var names = response.Headers.Select(h => h.Key).Concat(response.Content.Headers.Select(h => h.Key)).ToList();
        foreach (var gone in new[] { "Set-Cookie", "Server", "X-Powered-By", "X-AspNet-Version", "Via", "Strict-Transport-Security", "Clear-Site-Data", "X-Upstream-Hop" })
        {
            Assert.DoesNotContain(names, n => n.Equals(gone, StringComparison.OrdinalIgnoreCase));
        }
        Assert.Equal("nosniff", Assert.Single(response.Headers.GetValues("X-Content-Type-Options")));
        Assert.Equal("12", Assert.Single(response.Headers.GetValues("openai-processing-ms")));
    }

    [Fact]
    public async Task Odd_headers_and_query_strings_never_get_a_5xx_and_every_error_is_problem_json()
    {
        var failures = new List<string>();
        var admin = $"X-Admin-Key: {_adminKey}";
        var bearer = $"Authorization: Bearer {_tokenKey}";
        var cases = new (string Method, string Target, string[] Headers, string? Body)[]
        {
            ("GET", "/api/admin/keys", [admin, "X-Forwarded-For: "], null),
            ("GET", "/api/admin/keys", [admin, "X-Forwarded-For: ,,,, ,"], null),
            ("GET", "/api/admin/keys", [admin, "X-Forwarded-For: ::::, [::1]:80, 1.2.3.4:80, 999.1.1.1, unknown, fe80::1%eth0"], null),
            ("GET", "/api/admin/keys", [admin, "X-Forwarded-For: " + string.Join(",", Enumerable.Repeat("10.0.0.1", 500))], null),
            ("GET", "/api/admin/keys", [admin, "X-Forwarded-For: 1.2.3.4", "X-Forwarded-For: 5.6.7.8"], null),
            ("GET", "/api/echo/x", [bearer, "X-Forwarded-For: %00, \"1.2.3.4\", 1.2.3.4/8"], null),
            ("GET", "/api/admin/keys", ["X-Admin-Key: fpa_"], null),
            ("GET", "/api/admin/keys", ["X-Admin-Key: " + new string('a', 6000)], null),
            ("GET", "/api/admin/keys", [admin, admin], null),
            ("GET", "/api/admin/keys", ["Authorization: Bearer"], null),
            ("GET", "/api/admin/keys", ["Authorization: Bearer    "], null),
            ("GET", "/api/admin/keys", ["Authorization: Basic Zm9vOmJhcg=="], null),
            ("GET", "/api/echo/x", ["Authorization: Bearer"], null),
            ("GET", "/api/echo/x", ["Authorization: Bearer fpk_"], null),
            ("GET", "/api/echo/x", ["Authorization: Bearer fpk_" + new string('a', 16) + "_" + new string('b', 49)], null),
            ("GET", "/api/echo/x", [bearer, bearer], null),
            ("GET", "/api/echo/x", ["x-api-key: " + new string('k', 6000)], null),
            ("GET", "/api/echo/x", ["api-key: ", "x-api-key: \t"], null),
            ("POST", "/api/admin/keys", [admin, "Idempotency-Key: a", "Idempotency-Key: b", "Content-Type: application/json"], """{"name":"i","allowedUpstreams":["echo"]}"""),
            ("POST", "/api/admin/keys", [admin, "Idempotency-Key: " + new string('i', 300), "Content-Type: application/json"], """{"name":"i","allowedUpstreams":["echo"]}"""),
            ("POST", "/api/admin/keys", [admin, "Idempotency-Key: has space", "Content-Type: application/json"], """{"name":"i","allowedUpstreams":["echo"]}"""),
            ("PATCH", $"/api/admin/keys/{_keyId}", [admin, "If-Match: garbage", "Content-Type: application/json"], """{"name":"m"}"""),
            ("PATCH", $"/api/admin/keys/{_keyId}", [admin, "Content-Type: application/json; charset=utf-16"], """{"name":"m"}"""),
            ("PATCH", $"/api/admin/keys/{_keyId}", [admin, "Content-Type: application/json;;;=;"], """{"name":"m"}"""),
            ("PATCH", $"/api/admin/keys/{_keyId}", [admin, "Content-Type: text/plain"], """{"name":"m"}"""),
            ("PATCH", $"/api/admin/keys/{_keyId}", [admin, "Content-Type: application/json", "Content-Type: text/plain"], """{"name":"m"}"""),
            ("GET", "/api/admin/keys?limit=99999999999999999999", [admin], null),
            ("GET", "/api/admin/keys?limit=-1&limit=2", [admin], null),
            ("GET", "/api/admin/keys?status=1", [admin], null),
            ("GET", "/api/admin/keys?status=Active,Revoked", [admin], null),
            ("GET", "/api/admin/keys?continuationToken=%FF%FE", [admin], null),
            ("GET", "/api/admin/keys?continuationToken=a%ED%A0%80b", [admin], null),
            ("GET", "/api/admin/keys?continuationToken=====", [admin], null),
            ("GET", "/api/admin/keys?owner=%00", [admin], null),
            ("GET", "/api/admin/keys?owner=%ED%A0%80", [admin], null),
            ("GET", "/api/admin/keys?owner=%27%20or%20%271%27%20eq%20%271", [admin], null),
            ("GET", "/api/admin/keys?upstream=%C0%AF", [admin], null),
            ("GET", "/api/admin/keys?%FF=1&=2&&&", [admin], null),
            ("GET", "/api/admin/audit?from=9999-12-31T23:59:59-14:00", [admin], null),
            ("GET", "/api/admin/audit?from=0001-01-01T00:00:00%2B14:00&to=0001-01-01T00:00:01%2B14:00", [admin], null),
            ("GET", "/api/admin/audit?continuationToken=%FF", [admin], null),
            ("GET", "/api/admin/audit?continuationToken=" + new string('A', 150), [admin], null),
            ("GET", "/api/admin/audit?keyId=%ED%A0%80", [admin], null),
            ("GET", $"/api/admin/keys/{_keyId}/usage?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z", [admin], null),
            ("GET", "/api/admin/keys/%ED%A0%80", [admin], null),
            ("GET", "/api/admin/keys/" + new string('a', 3000), [admin], null),
            ("GET", "/api/echo/%ED%A0%80", [bearer], null),
            ("GET", "/api/echo/%C0%AF", [bearer], null),
            ("GET", "/api/%ED%A0%80/x", [bearer], null),
            ("GET", "/api/echo/x?%ED%A0%80=%FF", [bearer], null),
        };
        foreach (var (method, target, headers, body) in cases)
        {
            var (status, head, content) = await RawHttp.SendAsync(_gateway.BaseAddress, method, target, headers, body);
            CheckRaw(failures, $"{method} {target} [{string.Join(" | ", headers.Select(h => h.Length > 80 ? h[..80] + "…" : h))}]", status, head, content);
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        AssertNoExceptionLogged();
    }

    private static ByteArrayContent Bytes(byte[] body, string contentType)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        return content;
    }

    private static async Task CheckAsync(List<string> failures, string what, HttpResponseMessage response, bool expectError)
    {
        var status = (int)response.StatusCode;
        var body = await response.Content.ReadAsStringAsync();
        if (status >= 500)
        {
            failures.Add($"{what}: {status} {body}");
        }
        else if (expectError && status < 400)
        {
            failures.Add($"{what}: accepted with {status}");
        }
        else if (status >= 400 && !IsProblem(response.Content.Headers.ContentType?.MediaType, body))
        {
            failures.Add($"{what}: {status} without problem+json ({response.Content.Headers.ContentType})");
        }
    }

    internal static void CheckRaw(List<string> failures, string what, int status, string head, string body)
    {
        var contentType = head.Split("\r\n").FirstOrDefault(l => l.StartsWith("Content-Type:", StringComparison.OrdinalIgnoreCase))?["Content-Type:".Length..].Trim();
        if (status >= 500)
        {
            failures.Add($"{what}: {status} {body}");
        }
        else if (status >= 400 && !IsProblem(contentType?.Split(';')[0], body))
        {
            failures.Add($"{what}: {status} without problem+json ({contentType})");
        }
    }

    private static bool IsProblem(string? mediaType, string body)
    {
        if (mediaType != "application/problem+json")
        {
            return false;
        }
        try
        {
            using var document = JsonDocument.Parse(body);
            return document.RootElement.TryGetProperty("code", out _) && document.RootElement.TryGetProperty("requestId", out _);
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>No error-level line, and no exception attached to any line an operator sees (Information and up).</summary>
    private void AssertNoExceptionLogged()
    {
        var bad = _gateway.Logs.Lines.Where(l =>
            l.StartsWith("Error", StringComparison.Ordinal) || l.StartsWith("Critical", StringComparison.Ordinal)
            || (!l.StartsWith("Debug", StringComparison.Ordinal) && !l.StartsWith("Trace", StringComparison.Ordinal) && !l.EndsWith("| ", StringComparison.Ordinal)
                && !l.Contains(" scope: ", StringComparison.Ordinal)))
            .ToList();
        Assert.True(bad.Count == 0, string.Join("\n", bad.Take(5)));
    }

    private static readonly Dictionary<string, byte[]> HostileAnswers = new()
    {
        ["/json-lone-name"] = Encoding.UTF8.GetBytes("""{"id":"x","usage":{"\ud800":1,"prompt_tokens":3,"completion_tokens":2}}"""),
        ["/json-invalid-utf8"] = Concat(Encoding.UTF8.GetBytes("{\"id\":\""), [0xC3, 0x28], Encoding.UTF8.GetBytes(""","usage":{"prompt_tokens":3}}""")),
        ["/sse-lone-name"] = Encoding.UTF8.GetBytes("data: {\"usage\":{\"\\udc00\":1,\"prompt_tokens\":3}}\n\ndata: {\"\\ud800\":{\"usage\":1},\"usage\":{\"output_tokens\":2}}\n\ndata: [DONE]\n\n"),
    };

    /// <summary>An upstream that answers with malformed JSON text in the places the usage scanners read.</summary>
    private static async Task<WebApplication> StartHostileUpstreamAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        foreach (var (path, bytes) in HostileAnswers)
        {
            var contentType = path.StartsWith("/sse", StringComparison.Ordinal) ? "text/event-stream" : "application/json";
            app.MapGet(path, async (HttpContext c) =>
            {
                c.Response.ContentType = contentType;
                await c.Response.Body.WriteAsync(bytes);
            });
        }
        app.MapGet("/banner", async (HttpContext c) =>
        {
            var h = c.Response.Headers;
            h.Append("Set-Cookie", "__cf_bm=tracking; path=/; HttpOnly");
            h.Append("Set-Cookie", "session=upstream; path=/");
            h["X-Powered-By"] = "Express";
            h["X-AspNet-Version"] = "4.0.30319";
            h["Via"] = "1.1 upstream-cache";
            h["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains; preload";
            h["Clear-Site-Data"] = "\"*\"";
            h["Connection"] = "X-Upstream-Hop";
            h["X-Upstream-Hop"] = "hop";
            h["X-Content-Type-Options"] = "sniff-me";
            h["openai-processing-ms"] = "12";
            c.Response.ContentType = "application/json";
            await c.Response.WriteAsync("{}");
        });
        app.MapFallback(async (HttpContext c) =>
        {
            await c.Request.Body.CopyToAsync(Stream.Null);
            c.Response.ContentType = "application/json";
            await c.Response.WriteAsync("""{"ok":true,"usage":{"prompt_tokens":1,"completion_tokens":1}}""");
        });
        await app.StartAsync();
        return app;
    }
}
