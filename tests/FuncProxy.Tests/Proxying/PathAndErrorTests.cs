using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace FuncProxy.Tests.Proxying;

public sealed class PathAndErrorTests(GatewayFixture fixture) : IClassFixture<GatewayFixture>
{
    private GatewayHost Gateway => fixture.Gateway;

    [Theory]
    [InlineData("/api/echo/..")]
    [InlineData("/api/echo/../../secret")]
    [InlineData("/api/echo/a/../../../secret")]
    [InlineData("/api/echo/%2e%2e/%2e%2e/secret")]
    [InlineData("/api/echo/%2E%2E%2Fsecret")]
    [InlineData("/api/echo/..%2f..%2fsecret")]
    [InlineData("/api/echo/a%2fb")]
    [InlineData("/api/echo/a%5c..%5csecret")]
    [InlineData("/api/echo/a\\..\\secret")]
    [InlineData("/api/echo/%252e%252e/secret")]
    [InlineData("/api/echo/http://evil.example/x")]
    [InlineData("/api/echo//evil.example/x")]
    [InlineData("/api/echo/@evil.example/x")]
    [InlineData("/api/echo/x?next=http://evil.example")]
    [InlineData("/api/echo/%00")]
    public async Task No_path_trick_reaches_anything_but_the_configured_base_url(string target)
    {
        var key = await Gateway.MintKeyAsync("echo");
        var before = fixture.Stub.Requests.Count;

        var (status, _, body) = await RawHttp.SendAsync(Gateway.BaseAddress, "GET", target, [$"Authorization: Bearer {key.Value}"]);

        var reached = fixture.Stub.Requests.Skip(before).ToList();
        Assert.All(reached, r => Assert.StartsWith("/echo/base/", r.Path, StringComparison.Ordinal));
        Assert.All(reached, r => Assert.DoesNotContain("..", r.Path, StringComparison.Ordinal));
        if (status == 200)
        {
            // Allowed only when it stayed below the base path, as data: what the upstream saw is inside /echo/base/.
            var echoed = JsonDocument.Parse(body).RootElement.GetProperty("path").GetString()!;
            Assert.StartsWith("/echo/base/", echoed, StringComparison.Ordinal);
        }
        else
        {
            Assert.Contains(status, new[] { 400, 404 });
        }
    }

    [Fact]
    public async Task The_path_and_query_are_appended_below_the_base_url()
    {
        var key = await Gateway.MintKeyAsync("echo");
        using var response = await Gateway.SendAsync(HttpMethod.Get, "/api/echo/models/gpt-4o:generate?api-version=2024-10-21&x=a%20b", key.Value);
        var echoed = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("/echo/base/models/gpt-4o:generate", echoed.GetProperty("path").GetString());
        Assert.Equal("?api-version=2024-10-21&x=a%20b", echoed.GetProperty("query").GetString());
    }

    [Fact]
    public async Task Client_credentials_and_hop_by_hop_headers_never_reach_the_upstream()
    {
        var key = await Gateway.MintKeyAsync("echo");
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/echo/h");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Value);
        request.Headers.Add("x-api-key", key.Value);
        request.Headers.Add("X-Admin-Key", "admin-value");
        request.Headers.Add("Cookie", "session=abc");
        request.Headers.Add("X-Forwarded-For", "10.9.8.7");
        request.Headers.Add("Proxy-Authorization", "Basic Zm9vOmJhcg==");
        request.Headers.Add("Keep-Alive", "timeout=5");
        request.Headers.Add("X-Custom", "kept");
        using var response = await Gateway.Client.SendAsync(request);
        var headers = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("headers");
        foreach (var gone in new[] { "Authorization", "x-api-key", "api-key", "X-Admin-Key", "Cookie", "X-Forwarded-For", "Proxy-Authorization", "Keep-Alive" })
        {
            Assert.False(headers.TryGetProperty(gone, out _) || headers.EnumerateObject().Any(p => p.Name.Equals(gone, StringComparison.OrdinalIgnoreCase)), gone);
        }
        Assert.Equal("kept", headers.EnumerateObject().Single(p => p.Name.Equals("X-Custom", StringComparison.OrdinalIgnoreCase)).Value.GetString());
    }

    [Fact]
    public async Task A_body_over_the_limit_declared_up_front_gets_413_without_reaching_the_upstream()
    {
        var key = await Gateway.MintKeyAsync("small");
        var before = fixture.Stub.Requests.Count;
        using var response = await Gateway.SendAsync(HttpMethod.Post, "/api/small/upload", key.Value, new ByteArrayContent(new byte[4096]));
        var problem = await Problems.AssertProblemAsync(response, 413, "request_too_large");
        Assert.Equal(1024, problem.GetProperty("limitBytes").GetInt64());
        Assert.Equal(before, fixture.Stub.Requests.Count);
    }

    [Fact]
    public async Task A_chunked_body_that_grows_past_the_limit_gets_413()
    {
        var key = await Gateway.MintKeyAsync("small");
        using var response = await Gateway.SendAsync(HttpMethod.Post, "/api/small/upload", key.Value, new ChunkedContent(8, 1024));
        await Problems.AssertProblemAsync(response, 413, "request_too_large");
    }

    [Fact]
    public async Task A_chunked_body_that_crosses_the_limit_while_the_token_limiter_reads_ahead_gets_413()
    {
        var key = await Gateway.Services.GetRequiredService<FuncProxy.Keys.KeyLifecycle>().CreateAsync(new FuncProxy.Keys.KeyCreation
        {
            Name = "tokens",
            AllowedUpstreams = ["small"],
            Limits = new FuncProxy.Keys.KeyLimits { TokensPerMinute = 1_000_000 },
        });
        var content = new ChunkedContent(8, 1024);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await Gateway.SendAsync(HttpMethod.Post, "/api/small/upload", key.Value, content);
        await Problems.AssertProblemAsync(response, 413, "request_too_large");
    }

    [Fact]
    public async Task A_body_within_the_limit_streams_through_whole()
    {
        var key = await Gateway.MintKeyAsync("small");
        using var response = await Gateway.SendAsync(HttpMethod.Post, "/api/small/upload", key.Value, new ChunkedContent(4, 200));
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal(800, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("bodyLength").GetInt64());
    }

    [Fact]
    public async Task A_body_above_the_servers_own_default_limit_but_within_the_upstreams_goes_through_on_a_token_limited_key()
    {
        // Kestrel's default limit is 30,000,000 bytes; the gateway's default is 32 MiB, and the token limiter reads the
        // start of the body before forwarding, so the server's limit must be lifted before anything reads the body.
        var key = await Gateway.Services.GetRequiredService<FuncProxy.Keys.KeyLifecycle>().CreateAsync(new FuncProxy.Keys.KeyCreation
        {
            Name = "big-body",
            AllowedUpstreams = ["echo"],
            Limits = new FuncProxy.Keys.KeyLimits { TokensPerMinute = 1_000_000_000 },
        });
        const int Size = 31_000_000;
        var body = new byte[Size];
        body.AsSpan().Fill((byte)' ');
        body[0] = (byte)'{';
        body[^1] = (byte)'}';
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/echo/upload") { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Value);

        using var response = await Gateway.Client.SendAsync(request);

        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal(Size, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("bodyLength").GetInt64());
    }

    [Fact]
    public async Task An_upstream_refusing_connections_gives_502()
    {
        var key = await Gateway.MintKeyAsync("dead");
        using var response = await Gateway.SendAsync(HttpMethod.Get, "/api/dead/models", key.Value);
        await Problems.AssertProblemAsync(response, 502, "upstream_unreachable");
    }

    [Fact]
    public async Task A_hanging_upstream_gives_504_within_the_configured_timeout_and_is_cancelled()
    {
        fixture.Stub.ResetSignals();
        var key = await Gateway.MintKeyAsync("slow");
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/slow/hang");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Value);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var response = await Gateway.Client.SendAsync(request);
        clock.Stop();
        await Problems.AssertProblemAsync(response, 504, "upstream_timeout");
        // Not before the timeout; the upper bound only tells "the timeout fired" from "the upstream answered" (it never does).
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(60));
        await fixture.Stub.HangCancelled.Task.WaitAsync(TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task A_client_gone_mid_stream_cancels_the_upstream_call()
    {
        fixture.Stub.ResetSignals();
        var key = await Gateway.MintKeyAsync("root");
        using var client = new HttpClient { BaseAddress = Gateway.BaseAddress };
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/root/stream-forever");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Value);
        using (var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(200, (int)response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: {\"tick\":0}", await reader.ReadLineAsync());
            Assert.False(fixture.Stub.StreamCancelled.Task.IsCompleted);
        }
        client.CancelPendingRequests();
        client.Dispose();
        await fixture.Stub.StreamCancelled.Task.WaitAsync(TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task A_missing_provider_secret_is_a_503_that_names_no_secret()
    {
        var key = await Gateway.MintKeyAsync("nosecret");
        using var response = await Gateway.SendAsync(HttpMethod.Get, "/api/nosecret/models", key.Value);
        var problem = await Problems.AssertProblemAsync(response, 503, "credential_not_configured");
        Assert.DoesNotContain("missing-secret", problem.GetRawText(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("/api")]
    [InlineData("/api/")]
    [InlineData("/elsewhere")]
    public async Task A_route_outside_the_gateways_gets_a_problem_404(string path)
    {
        using var response = await Gateway.Client.GetAsync(path);
        await Problems.AssertProblemAsync(response, 404, "not_found");
    }

    [Fact]
    public async Task Calls_the_gateway_answers_itself_are_not_metered_as_upstream_usage()
    {
        var key = await Gateway.MintKeyAsync("nosecret", "echo");
        foreach (var path in new[] { "/api/nosecret/models", "/api/echo/models" })
        {
            using var response = await Gateway.SendAsync(HttpMethod.Get, path, key.Value);
            Assert.Equal(path.Contains("nosecret", StringComparison.Ordinal) ? 503 : 200, (int)response.StatusCode);
        }
        var meter = Gateway.Services.GetRequiredService<FuncProxy.Proxying.UsageMeter>();
        await meter.FlushAsync();

        var rows = await meter.ReadAsync(key.Record.Id, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddHours(1));

        var row = Assert.Single(rows);
        Assert.Equal("echo", row.Upstream);
        Assert.Equal(1, row.Requests);
    }

    [Fact]
    public async Task Health_answers_without_a_key()
    {
        using var response = await Gateway.Client.GetAsync("/api/health");
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("ok", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("status").GetString());
    }

    /// <summary>A body sent in chunks with no Content-Length.</summary>
    private sealed class ChunkedContent(int chunks, int chunkSize) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context)
        {
            var chunk = Encoding.ASCII.GetBytes(new string('x', chunkSize));
            for (var i = 0; i < chunks; i++)
            {
                await stream.WriteAsync(chunk);
                await stream.FlushAsync();
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}
