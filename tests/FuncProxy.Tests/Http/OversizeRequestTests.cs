using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using FuncProxy.Keys;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace FuncProxy.Tests.Http;

/// <summary>
/// Requests too large in their target or header block, sent byte for byte over a raw socket: up to Kestrel's ceiling
/// (four times the gateway's own limits on the Kestrel host) the gateway answers 414/431 problem+json; beyond it, and for
/// a request that is not HTTP, the answer is Kestrel's own (an empty body and <c>Connection: close</c>), as SECURITY.md
/// documents. Also: <c>X-Content-Type-Options: nosniff</c> on every answer the application writes, and bodies that name a
/// member the gateway reads twice refused on the proxy path.
/// </summary>
public sealed class OversizeRequestTests : IAsyncLifetime
{
    private const int TargetLimit = 8 * 1024;
    private const int HeadersLimit = 32 * 1024;
    private const int HeaderCountLimit = 100;

    private UpstreamStub _stub = null!;
    private GatewayHost _gateway = null!;

    public async Task InitializeAsync()
    {
        _stub = await UpstreamStub.StartAsync();
        _gateway = await GatewayHost.StartAsync(new Dictionary<string, string?>
        {
            ["FuncProxy:Upstreams:echo:BaseUrl"] = new Uri(_stub.BaseAddress, "/echo/base").ToString(),
            ["FuncProxy:Upstreams:openai:BaseUrl"] = new Uri(_stub.BaseAddress, "/v1").ToString(),
            ["FuncProxy:Limits:UseStorageClock"] = "false",
        });
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _stub.DisposeAsync();
    }

    private sealed record RawAnswer(int Status, string Head, string Body)
    {
        public string? Header(string name) => Head.Split("\r\n").Skip(1)
            .Select(l => l.Split(':', 2))
            .Where(p => p.Length == 2 && p[0].Trim().Equals(name, StringComparison.OrdinalIgnoreCase))
            .Select(p => p[1].Trim())
            .FirstOrDefault();
    }

    /// <summary>
    /// Writes the request as given and reads the answer to the end. A server that refuses a request may close the
    /// connection before reading all of it (a reset); what arrived before that is the answer.
    /// </summary>
    private async Task<RawAnswer> SendRawAsync(string request)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, _gateway.BaseAddress.Port);
        var stream = client.GetStream();
        try
        {
            await stream.WriteAsync(Encoding.Latin1.GetBytes(request));
        }
        catch (IOException)
        {
            // Refused before the whole request was written: the answer is already on its way.
        }
        var received = new MemoryStream();
        var buffer = new byte[16 * 1024];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        try
        {
            int n;
            while ((n = await stream.ReadAsync(buffer, timeout.Token)) > 0)
            {
                received.Write(buffer, 0, n);
            }
        }
        catch (IOException) when (received.Length > 0)
        {
        }
        var text = Encoding.Latin1.GetString(received.ToArray());
        var split = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        Assert.True(split > 0, "an HTTP answer:\n" + text);
        var head = text[..split];
        var status = int.Parse(head.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        var body = text[(split + 4)..];
        if (head.Contains("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase))
        {
            body = RawHttp.Dechunk(body);
        }
        return new RawAnswer(status, head, body);
    }

    private string Get(string target, IEnumerable<string>? headers = null)
    {
        var request = new StringBuilder();
        request.Append("GET ").Append(target).Append(" HTTP/1.1\r\n");
        request.Append("Host: ").Append(_gateway.BaseAddress.Authority).Append("\r\n");
        request.Append("Connection: close\r\n");
        foreach (var h in headers ?? [])
        {
            request.Append(h).Append("\r\n");
        }
        return request.Append("\r\n").ToString();
    }

    /// <summary>A target of exactly <paramref name="length"/> characters: a path under the echo upstream plus a query.</summary>
    private static string Target(int length)
    {
        const string prefix = "/api/echo/x?q=";
        return prefix + new string('a', length - prefix.Length);
    }

    private static void AssertProblem(RawAnswer answer, int status, string code)
    {
        Assert.True(answer.Status == status, $"expected {status}, got:\n{answer.Head}\n\n{answer.Body}");
        Assert.StartsWith("application/problem+json", answer.Header("Content-Type"), StringComparison.Ordinal);
        Assert.Equal("nosniff", answer.Header("X-Content-Type-Options"));
        using var problem = JsonDocument.Parse(answer.Body);
        Assert.Equal(status, problem.RootElement.GetProperty("status").GetInt32());
        Assert.Equal(code, problem.RootElement.GetProperty("code").GetString());
        Assert.Equal(problem.RootElement.GetProperty("requestId").GetString(), answer.Header("x-request-id"));
    }

    /// <summary>Kestrel's own refusal: the status, no body at all, and the connection closed.</summary>
    private static void AssertKestrelsOwn(RawAnswer answer, int status)
    {
        Assert.True(answer.Status == status, $"expected {status}, got:\n{answer.Head}\n\n{answer.Body}");
        Assert.Equal("0", answer.Header("Content-Length"));
        Assert.Equal("", answer.Body);
        Assert.Equal("close", answer.Header("Connection"));
        Assert.Null(answer.Header("Server"));
    }

    [Fact]
    public async Task A_target_longer_than_the_gateways_limit_gets_414_problem_json_before_any_key_is_looked_at()
    {
        var tooLong = await SendRawAsync(Get(Target(TargetLimit + 1)));
        AssertProblem(tooLong, 414, "uri_too_long");
        Assert.Contains("8192", JsonDocument.Parse(tooLong.Body).RootElement.GetProperty("detail").GetString(), StringComparison.Ordinal);

        // Up to Kestrel's ceiling (four times the limit) the answer is still the gateway's; the management API's too.
        AssertProblem(await SendRawAsync(Get(Target(4 * TargetLimit - 100))), 414, "uri_too_long");
        AssertProblem(await SendRawAsync(Get("/api/admin/keys?q=" + new string('a', TargetLimit))), 414, "uri_too_long");

        // At the limit the request goes on to the key check.
        AssertProblem(await SendRawAsync(Get(Target(TargetLimit))), 401, "invalid_api_key");
    }

    [Fact]
    public async Task Headers_larger_in_total_than_the_gateways_limit_get_431_problem_json()
    {
        // Ten headers of 4 KiB: each far below any per-header limit, 40 KiB together.
        var big = Enumerable.Range(0, 10).Select(i => $"X-Filler-{i}: " + new string('h', 4096)).ToList();
        var answer = await SendRawAsync(Get("/api/echo/x", big));
        AssertProblem(answer, 431, "request_headers_too_large");
        Assert.Contains(HeadersLimit.ToString(System.Globalization.CultureInfo.InvariantCulture), JsonDocument.Parse(answer.Body).RootElement.GetProperty("detail").GetString(), StringComparison.Ordinal);

        // One header sent many times counts every time, as Kestrel counts it.
        var repeated = Enumerable.Repeat("X-Same: " + new string('r', 1000), 40).ToList();
        AssertProblem(await SendRawAsync(Get("/api/health", repeated)), 431, "request_headers_too_large");

        // Well within the limit: answered as usual.
        var fine = await SendRawAsync(Get("/api/health", big.Take(4)));
        Assert.Equal(200, fine.Status);
    }

    [Fact]
    public async Task More_header_fields_than_the_gateway_accepts_get_431_problem_json()
    {
        var many = Enumerable.Range(0, HeaderCountLimit + 50).Select(i => $"X-Field-{i}: v").ToList();
        var answer = await SendRawAsync(Get("/api/echo/x", many));
        AssertProblem(answer, 431, "request_headers_too_large");
        Assert.Contains("at most 100", JsonDocument.Parse(answer.Body).RootElement.GetProperty("detail").GetString(), StringComparison.Ordinal);

        var fewer = Enumerable.Range(0, HeaderCountLimit - 10).Select(i => $"X-Field-{i}: v").ToList();
        Assert.Equal(200, (await SendRawAsync(Get("/api/health", fewer))).Status);
    }

    [Fact]
    public async Task Beyond_Kestrels_ceiling_or_not_HTTP_the_answer_is_Kestrels_own_empty_one_and_the_connection_closes()
    {
        // What SECURITY.md documents for requests the application never sees.
        AssertKestrelsOwn(await SendRawAsync(Get(Target(4 * TargetLimit + 1000))), 414);
        AssertKestrelsOwn(await SendRawAsync(Get("/api/health", Enumerable.Range(0, 40).Select(i => $"X-Filler-{i}: " + new string('h', 4096)))), 431);
        AssertKestrelsOwn(await SendRawAsync(Get("/api/health", Enumerable.Range(0, 4 * HeaderCountLimit + 1).Select(i => $"X-Field-{i}: v"))), 431);
        AssertKestrelsOwn(await SendRawAsync("G@T /api/health HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        AssertKestrelsOwn(await SendRawAsync("GET /api/health HTTP/1.7\r\nHost: x\r\n\r\n"), 505);
        AssertKestrelsOwn(await SendRawAsync("GET /api/health HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n"), 400);
    }

    [Fact]
    public async Task Every_answer_the_application_writes_says_nosniff_including_404_405_and_429()
    {
        var key = await _gateway.Services.GetRequiredService<KeyLifecycle>().CreateAsync(new KeyCreation
        {
            Name = "nosniff",
            AllowedUpstreams = ["echo"],
            Limits = new KeyLimits { RequestsPerMinute = 1 },
        });
        var answers = new List<(string What, HttpResponseMessage Response)>();
        async Task SendAsync(string what, HttpMethod method, string path, string? bearer = null)
        {
            using var request = new HttpRequestMessage(method, path);
            if (bearer is not null)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
            }
            answers.Add((what, await _gateway.Client.SendAsync(request)));
        }
        await SendAsync("health", HttpMethod.Get, "/api/health");
        await SendAsync("proxied 200", HttpMethod.Get, "/api/echo/x", key.Value);
        await SendAsync("429", HttpMethod.Get, "/api/echo/x", key.Value);
        await SendAsync("401", HttpMethod.Get, "/api/echo/x");
        await SendAsync("404 outside /api", HttpMethod.Get, "/nowhere");
        await SendAsync("404 unknown upstream", HttpMethod.Get, "/api/nowhere/x", key.Value);
        await SendAsync("405 TRACE", HttpMethod.Trace, "/api/echo/x", key.Value);
        await SendAsync("admin 401", HttpMethod.Get, "/api/admin/keys");
        await SendAsync("HEAD health", HttpMethod.Head, "/api/health");
        try
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, answers.Single(a => a.What == "429").Response.StatusCode);
            Assert.Equal(HttpStatusCode.MethodNotAllowed, answers.Single(a => a.What == "405 TRACE").Response.StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, answers.Single(a => a.What == "404 outside /api").Response.StatusCode);
            var missing = answers
                .Where(a => !a.Response.Headers.TryGetValues("X-Content-Type-Options", out var v) || v.SingleOrDefault() != "nosniff")
                .Select(a => $"{a.What}: {(int)a.Response.StatusCode}")
                .ToList();
            Assert.True(missing.Count == 0, "without nosniff: " + string.Join(", ", missing));
        }
        finally
        {
            foreach (var (_, response) in answers)
            {
                response.Dispose();
            }
        }
    }

    [Theory]
    [InlineData("""{"model":"gpt-4o-mini","messages":[],"model":"gpt-4o"}""", "model")]
    [InlineData("""{"model":"gpt-4o-mini","max_tokens":1,"messages":[],"max_tokens":100000}""", "max_tokens")]
    [InlineData("""{"model":"gpt-4o-mini","m\u0061x_tokens":1,"max_tokens":100000}""", "max_tokens")]
    [InlineData("""{"model":"gpt-4o-mini","stream":false,"stream":true}""", "stream")]
    [InlineData("""{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true,"include_usage":false}}""", "stream_options.include_usage")]
    public async Task A_body_naming_a_member_the_gateway_reads_twice_is_refused_with_400_and_not_forwarded(string body, string member)
    {
        // The gateway would judge one value (allow-list, token quota) while the provider's parser might take the other.
        var key = await _gateway.Services.GetRequiredService<KeyLifecycle>().CreateAsync(new KeyCreation
        {
            Name = "duplicates",
            AllowedUpstreams = ["openai"],
            AllowedModels = ["gpt-4o-mini"],
            Limits = new KeyLimits { TokensPerMinute = 10_000 },
        });
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/openai/chat/completions")
        {
            Content = new StringContent(body, Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Value);
        using var response = await _gateway.Client.SendAsync(request);

        var problem = await Problems.AssertProblemAsync(response, 400, "invalid_request");
        Assert.Contains($"'{member}' more than once", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal("nosniff", response.Headers.GetValues("X-Content-Type-Options").Single());
        Assert.DoesNotContain(_stub.Requests, r => r.Path == "/v1/chat/completions");

        // The same call without the duplicate goes through.
        using var fine = new HttpRequestMessage(HttpMethod.Post, "/api/openai/chat/completions")
        {
            Content = new StringContent("""{"model":"gpt-4o-mini","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json"),
        };
        fine.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Value);
        using var ok = await _gateway.Client.SendAsync(fine);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }
}
