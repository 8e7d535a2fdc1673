using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using FuncProxy.Keys;
using FuncProxy.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace FuncProxy.Tests.Proxying;

/// <summary>One provider stub and one gateway with upstreams of every CORS shape: listed origins, credentials, any origin, none.</summary>
public sealed class CorsFixture : IAsyncLifetime
{
    public const string App = "https://app.example.com";
    public const string Dev = "http://localhost:5173";

    public UpstreamStub Stub { get; private set; } = null!;
    public GatewayHost Gateway { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Stub = await UpstreamStub.StartAsync();
        var origin = Stub.BaseAddress.GetLeftPart(UriPartial.Authority);
        Gateway = await GatewayHost.StartAsync(new Dictionary<string, string?>
        {
            ["FuncProxy:Upstreams:web:BaseUrl"] = origin + "/v1",
            ["FuncProxy:Upstreams:web:Cors:AllowedOrigins:0"] = App,
            ["FuncProxy:Upstreams:web:Cors:AllowedOrigins:1"] = Dev,
            ["FuncProxy:Upstreams:web:Cors:AllowedHeaders:0"] = "Authorization",
            ["FuncProxy:Upstreams:web:Cors:AllowedHeaders:1"] = "Content-Type",
            ["FuncProxy:Upstreams:web:Cors:ExposedHeaders:0"] = "openai-processing-ms",
            ["FuncProxy:Upstreams:creds:BaseUrl"] = origin + "/v1",
            ["FuncProxy:Upstreams:creds:Cors:AllowedOrigins:0"] = App,
            ["FuncProxy:Upstreams:creds:Cors:AllowCredentials"] = "true",
            ["FuncProxy:Upstreams:anyone:BaseUrl"] = origin + "/v1",
            ["FuncProxy:Upstreams:anyone:Cors:AllowedOrigins:0"] = "*",
            ["FuncProxy:Upstreams:closed:BaseUrl"] = origin + "/v1",
        });
    }

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await Stub.DisposeAsync();
    }
}

/// <summary>
/// CORS answered by the gateway (docs/cors.md): preflights without a key that never reach the upstream, grants on every
/// answer to a listed origin (errors and SSE streams included), no grant ever for an unlisted origin, and keys narrowed
/// to their own origins. Real HTTP against the real host and the provider stub.
/// </summary>
public sealed class CorsTests(CorsFixture fixture) : IClassFixture<CorsFixture>
{
    private GatewayHost Gateway => fixture.Gateway;

    private static HttpRequestMessage Preflight(string path, string origin, string method = "POST", string? headers = "authorization,content-type")
    {
        var request = new HttpRequestMessage(HttpMethod.Options, path);
        request.Headers.Add("Origin", origin);
        request.Headers.Add("Access-Control-Request-Method", method);
        if (headers is not null)
        {
            request.Headers.Add("Access-Control-Request-Headers", headers);
        }
        return request;
    }

    private static HttpRequestMessage Chat(string upstream, string? origin, string? key, bool stream = false)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, $"/api/{upstream}/chat/completions")
        {
            Content = new StringContent($$"""{"model":"gpt-4o-mini","stream":{{(stream ? "true" : "false")}},"messages":[]}""", Encoding.UTF8, "application/json"),
        };
        if (origin is not null)
        {
            request.Headers.Add("Origin", origin);
        }
        if (key is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }
        return request;
    }

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? string.Join(", ", values)
        : response.Content.Headers.TryGetValues(name, out var content) ? string.Join(", ", content) : null;

    private static void AssertNoGrant(HttpResponseMessage response)
    {
        var granted = response.Headers.Concat(response.Content.Headers).Where(h => h.Key.StartsWith("Access-Control-", StringComparison.OrdinalIgnoreCase)).Select(h => h.Key).ToList();
        Assert.True(granted.Count == 0, "expected no CORS grant, got " + string.Join(", ", granted));
    }

    private static void AssertVaryOrigin(HttpResponseMessage response) =>
        Assert.Contains(response.Headers.Vary, v => string.Equals(v, "Origin", StringComparison.OrdinalIgnoreCase));

    private int UpstreamCalls => fixture.Stub.Requests.Count;

    [Theory]
    [InlineData(CorsFixture.App)]
    [InlineData(CorsFixture.Dev)]
    public async Task A_preflight_from_a_listed_origin_is_granted_by_the_gateway_without_a_key_and_never_reaches_the_upstream(string origin)
    {
        var before = UpstreamCalls;
        using var request = Preflight("/api/web/chat/completions", origin);
        using var response = await Gateway.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        Assert.Equal(origin, Header(response, "Access-Control-Allow-Origin"));
        Assert.Contains("POST", Header(response, "Access-Control-Allow-Methods")!, StringComparison.Ordinal);
        var allowedHeaders = Header(response, "Access-Control-Allow-Headers")!.Split(',', StringSplitOptions.TrimEntries);
        Assert.Contains("Authorization", allowedHeaders, StringComparer.OrdinalIgnoreCase);
        Assert.Contains("Content-Type", allowedHeaders, StringComparer.OrdinalIgnoreCase);
        Assert.Equal("600", Header(response, "Access-Control-Max-Age"));
        Assert.Null(Header(response, "Access-Control-Allow-Credentials"));
        AssertVaryOrigin(response);
        Assert.Equal(before, UpstreamCalls);
    }

    [Theory]
    [InlineData("https://evil.example")]
    [InlineData("https://app.example.com.evil.example")]
    [InlineData("http://app.example.com")]
    [InlineData("https://app.example.com:8443")]
    [InlineData("null")]
    public async Task A_preflight_from_an_unlisted_origin_gets_403_problem_json_and_no_grant(string origin)
    {
        var before = UpstreamCalls;
        using var request = Preflight("/api/web/chat/completions", origin);
        using var response = await Gateway.Client.SendAsync(request);

        await Problems.AssertProblemAsync(response, 403, "cors_not_allowed");
        AssertNoGrant(response);
        AssertVaryOrigin(response);
        Assert.Equal(before, UpstreamCalls);
    }

    [Theory]
    [InlineData("PUT", "authorization")]
    [InlineData("DELETE", null)]
    [InlineData("POST", "authorization,x-not-listed")]
    public async Task A_preflight_for_a_method_or_header_the_upstream_does_not_allow_gets_403_and_no_grant(string method, string? headers)
    {
        using var request = Preflight("/api/web/chat/completions", CorsFixture.App, method, headers);
        using var response = await Gateway.Client.SendAsync(request);

        var problem = await Problems.AssertProblemAsync(response, 403, "cors_not_allowed");
        Assert.Contains(headers?.EndsWith("x-not-listed", StringComparison.Ordinal) == true ? "x-not-listed" : method, problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        AssertNoGrant(response);
    }

    [Fact]
    public async Task By_default_an_upstream_allows_no_cross_origin_access_and_its_own_grants_are_dropped()
    {
        using (var preflight = Preflight("/api/closed/chat/completions", CorsFixture.App))
        using (var response = await Gateway.Client.SendAsync(preflight))
        {
            await Problems.AssertProblemAsync(response, 403, "cors_not_allowed");
            AssertNoGrant(response);
        }

        // The provider answers with a grant of its own (as some do: 'Access-Control-Allow-Origin: *'); it never reaches the browser.
        var key = await Gateway.MintKeyAsync("closed", "web");
        fixture.Stub.Override = async context =>
        {
            context.Response.Headers["Access-Control-Allow-Origin"] = "*";
            context.Response.Headers["Access-Control-Allow-Credentials"] = "true";
            context.Response.Headers["Access-Control-Expose-Headers"] = "*";
            await context.Response.WriteAsJsonAsync(new { ok = true });
        };
        try
        {
            using (var call = Chat("closed", "https://evil.example", key.Value))
            using (var response = await Gateway.Client.SendAsync(call))
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                AssertNoGrant(response);
            }
            // On an upstream with a policy, the gateway's grant replaces the provider's '*'.
            using (var call = Chat("web", CorsFixture.App, key.Value))
            using (var response = await Gateway.Client.SendAsync(call))
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.Equal(CorsFixture.App, Header(response, "Access-Control-Allow-Origin"));
                Assert.Null(Header(response, "Access-Control-Allow-Credentials"));
                Assert.DoesNotContain("*", Header(response, "Access-Control-Expose-Headers")!, StringComparison.Ordinal);
            }
        }
        finally
        {
            fixture.Stub.Override = null;
        }
    }

    [Fact]
    public async Task A_call_from_a_listed_origin_carries_the_grant_and_exposes_the_rate_limit_and_request_id_headers()
    {
        var key = await Gateway.MintKeyAsync("web");
        using var call = Chat("web", CorsFixture.App, key.Value);
        using var response = await Gateway.Client.SendAsync(call);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(CorsFixture.App, Header(response, "Access-Control-Allow-Origin"));
        AssertVaryOrigin(response);
        var exposed = Header(response, "Access-Control-Expose-Headers")!.Split(',', StringSplitOptions.TrimEntries);
        foreach (var name in (string[])["RateLimit", "RateLimit-Policy", "Retry-After", "retry-after-ms", "request-id", "x-request-id", "openai-processing-ms"])
        {
            Assert.Contains(name, exposed, StringComparer.OrdinalIgnoreCase);
        }
    }

    [Fact]
    public async Task A_call_from_an_unlisted_origin_gets_no_grant_so_the_browser_cannot_read_it()
    {
        var key = await Gateway.MintKeyAsync("web");
        using var call = Chat("web", "https://evil.example", key.Value);
        using var response = await Gateway.Client.SendAsync(call);

        AssertNoGrant(response);
        AssertVaryOrigin(response);
    }

    [Fact]
    public async Task Refusals_401_403_and_429_carry_the_grant_so_a_page_can_read_why()
    {
        using (var call = Chat("web", CorsFixture.App, "fpk_not_a_real_key"))
        using (var response = await Gateway.Client.SendAsync(call))
        {
            await Problems.AssertProblemAsync(response, 401, "invalid_api_key");
            Assert.Equal(CorsFixture.App, Header(response, "Access-Control-Allow-Origin"));
        }

        var other = await Gateway.MintKeyAsync("closed");
        using (var call = Chat("web", CorsFixture.App, other.Value))
        using (var response = await Gateway.Client.SendAsync(call))
        {
            await Problems.AssertProblemAsync(response, 403, "upstream_not_allowed");
            Assert.Equal(CorsFixture.App, Header(response, "Access-Control-Allow-Origin"));
        }

        var limited = await Gateway.Services.GetRequiredService<KeyLifecycle>().CreateAsync(new KeyCreation
        {
            Name = "one-a-minute",
            AllowedUpstreams = ["web"],
            Limits = new KeyLimits { RequestsPerMinute = 1 },
        });
        using (var first = Chat("web", CorsFixture.App, limited.Value))
        using (var response = await Gateway.Client.SendAsync(first))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        using (var second = Chat("web", CorsFixture.App, limited.Value))
        using (var response = await Gateway.Client.SendAsync(second))
        {
            await Problems.AssertProblemAsync(response, 429, "rate_limited");
            Assert.Equal(CorsFixture.App, Header(response, "Access-Control-Allow-Origin"));
            Assert.NotNull(response.Headers.RetryAfter);
            Assert.Contains("Retry-After", Header(response, "Access-Control-Expose-Headers")!, StringComparison.OrdinalIgnoreCase);
        }
    }

    [Fact]
    public async Task A_streamed_SSE_answer_to_a_listed_origin_carries_the_grant()
    {
        var key = await Gateway.MintKeyAsync("web");
        using var call = Chat("web", CorsFixture.Dev, key.Value, stream: true);
        using var response = await Gateway.Client.SendAsync(call, HttpCompletionOption.ResponseHeadersRead);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(CorsFixture.Dev, Header(response, "Access-Control-Allow-Origin"));
        var body = await response.Content.ReadAsStringAsync();
        Assert.Contains("data: [DONE]", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Credentials_are_granted_only_to_a_listed_origin_and_a_star_origin_never_comes_with_credentials()
    {
        var key = await Gateway.MintKeyAsync("creds", "anyone");
        using (var preflight = Preflight("/api/creds/chat/completions", CorsFixture.App, headers: "authorization,content-type,x-stainless-os"))
        using (var response = await Gateway.Client.SendAsync(preflight))
        {
            Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
            Assert.Equal(CorsFixture.App, Header(response, "Access-Control-Allow-Origin"));
            Assert.Equal("true", Header(response, "Access-Control-Allow-Credentials"));
            // Any header allowed: the requested names are echoed, never a literal '*' (which means nothing with credentials).
            Assert.Contains("x-stainless-os", Header(response, "Access-Control-Allow-Headers")!, StringComparison.OrdinalIgnoreCase);
        }
        using (var call = Chat("creds", CorsFixture.App, key.Value))
        using (var response = await Gateway.Client.SendAsync(call))
        {
            Assert.Equal(CorsFixture.App, Header(response, "Access-Control-Allow-Origin"));
            Assert.Equal("true", Header(response, "Access-Control-Allow-Credentials"));
        }
        using (var call = Chat("creds", "https://evil.example", key.Value))
        using (var response = await Gateway.Client.SendAsync(call))
        {
            AssertNoGrant(response);
        }
        using (var call = Chat("anyone", "https://anywhere.example", key.Value))
        using (var response = await Gateway.Client.SendAsync(call))
        {
            Assert.Equal("*", Header(response, "Access-Control-Allow-Origin"));
            Assert.Null(Header(response, "Access-Control-Allow-Credentials"));
        }
    }

    [Fact]
    public async Task A_key_with_its_own_origins_is_refused_from_any_other_origin_before_anything_is_forwarded()
    {
        var key = await Gateway.Services.GetRequiredService<KeyLifecycle>().CreateAsync(new KeyCreation
        {
            Name = "dev-only",
            AllowedUpstreams = ["web"],
            AllowedOrigins = [CorsFixture.Dev],
        });

        var before = UpstreamCalls;
        using (var call = Chat("web", CorsFixture.App, key.Value))
        using (var response = await Gateway.Client.SendAsync(call))
        {
            await Problems.AssertProblemAsync(response, 403, "origin_not_allowed");
            AssertNoGrant(response);
        }
        Assert.Equal(before, UpstreamCalls);

        using (var call = Chat("web", CorsFixture.Dev, key.Value))
        using (var response = await Gateway.Client.SendAsync(call))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(CorsFixture.Dev, Header(response, "Access-Control-Allow-Origin"));
        }
        // Without an Origin (a server, an SDK outside a browser) the key works as any other.
        using (var call = Chat("web", null, key.Value))
        using (var response = await Gateway.Client.SendAsync(call))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            AssertNoGrant(response);
        }
    }

    [Fact]
    public async Task The_management_API_sets_and_validates_a_keys_origins()
    {
        using var admin = Gateway.AdminClient(await Gateway.MintAdminKeyAsync());
        using (var bad = await admin.PostAsJsonAsync("keys", new { name = "b", allowedUpstreams = new[] { "web" }, allowedOrigins = new[] { "https://app.example.com/", "*", "null" } }))
        {
            var problem = await Problems.AssertProblemAsync(bad, 400, "invalid_request");
            var fields = problem.GetProperty("errors").EnumerateArray().Select(e => e.GetProperty("field").GetString()).ToList();
            Assert.Equal(["allowedOrigins[0]", "allowedOrigins[1]", "allowedOrigins[2]"], fields);
        }

        using var created = await admin.PostAsJsonAsync("keys", new { name = "browser", allowedUpstreams = new[] { "web" }, allowedOrigins = new[] { CorsFixture.App } });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var body = await created.Content.ReadFromJsonAsync<JsonElement>();
        var record = body.GetProperty("record");
        Assert.Equal([CorsFixture.App], record.GetProperty("allowedOrigins").EnumerateArray().Select(o => o.GetString()));
        var id = record.GetProperty("id").GetString();
        var value = body.GetProperty("key").GetString();

        using (var call = Chat("web", CorsFixture.Dev, value))
        using (var response = await Gateway.Client.SendAsync(call))
        {
            await Problems.AssertProblemAsync(response, 403, "origin_not_allowed");
        }

        using var patch = new HttpRequestMessage(HttpMethod.Patch, $"keys/{id}") { Content = JsonContent.Create(new { allowedOrigins = new[] { CorsFixture.Dev } }) };
        patch.Content.Headers.ContentType = new MediaTypeHeaderValue("application/merge-patch+json");
        using var patched = await admin.SendAsync(patch);
        Assert.Equal(HttpStatusCode.OK, patched.StatusCode);
        var fetched = await admin.GetFromJsonAsync<JsonElement>($"keys/{id}");
        Assert.Equal([CorsFixture.Dev], fetched.GetProperty("allowedOrigins").EnumerateArray().Select(o => o.GetString()));
    }
}
