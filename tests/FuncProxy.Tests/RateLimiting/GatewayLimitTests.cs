using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using FuncProxy.Keys;
using FuncProxy.Proxying;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace FuncProxy.Tests.RateLimiting;

public sealed partial class GatewayLimitTests : IAsyncLifetime
{
    // One fixed instant: every request falls in the same windows, whatever the test's real duration.
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2030, 1, 1, 10, 0, 5, TimeSpan.Zero));
    // Marks this test's own calls: the stub counts only those, whatever else reaches its port on a busy test run.
    private readonly string _testCall = Guid.NewGuid().ToString("N");
    private UpstreamStub _stub = null!;
    private GatewayHost _gateway = null!;

    public async Task InitializeAsync()
    {
        _stub = await UpstreamStub.StartAsync();
        _stub.StreamDelay = TimeSpan.FromMilliseconds(5);
        var upstream = new Uri(_stub.BaseAddress, "/v1").ToString();
        _gateway = await GatewayHost.StartAsync(
            new Dictionary<string, string?>
            {
                ["FuncProxy:Upstreams:openai:BaseUrl"] = upstream,
                ["FuncProxy:Upstreams:anthropic:BaseUrl"] = upstream,
                ["FuncProxy:Limits:UseStorageClock"] = "false",
                ["FuncProxy:Limits:ExpectedInstances"] = "1",
            },
            services: s => s.AddSingleton<TimeProvider>(_time));
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _stub.DisposeAsync();
    }

    private async Task<IssuedKey> MintAsync(KeyLimits limits) =>
        await _gateway.Services.GetRequiredService<KeyLifecycle>().CreateAsync(new KeyCreation
        {
            Name = "limited",
            AllowedUpstreams = ["openai", "anthropic"],
            Limits = limits,
        });

    private async Task<HttpResponseMessage> ChatAsync(IssuedKey key, bool stream, bool includeUsage = true, string upstream = "openai")
    {
        var path = upstream == "openai" ? "/api/openai/chat/completions" : "/api/anthropic/messages";
        object body = stream
            ? new { model = "m", max_tokens = 10, stream = true, stream_options = new { include_usage = includeUsage }, messages = new[] { new { role = "user", content = "hi" } } }
            : new { model = "m", max_tokens = 10, messages = new[] { new { role = "user", content = "hi" } } };
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body) };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Value);
        request.Headers.Add("x-test-call", _testCall);
        return await _gateway.Client.SendAsync(request);
    }

    private int ForwardedCalls() => _stub.Requests.Count(r => r.Headers.TryGetValue("x-test-call", out var call) && call == _testCall);

    [GeneratedRegex("^\"rpm\";q=2;w=60$")]
    private static partial Regex PolicyHeader();

    [GeneratedRegex("^\"rpm\";r=(\\d+);t=(\\d+)$")]
    private static partial Regex StateHeader();

    [Fact]
    public async Task Proxied_responses_and_the_429_carry_RateLimit_headers_and_the_429_names_the_policy()
    {
        var key = await MintAsync(new KeyLimits { RequestsPerMinute = 2 });

        using var first = await ChatAsync(key, stream: false);
        using var second = await ChatAsync(key, stream: false);
        using var third = await ChatAsync(key, stream: false);

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        foreach (var ok in new[] { first, second })
        {
            Assert.Matches(PolicyHeader(), Assert.Single(ok.Headers.GetValues("RateLimit-Policy")));
            var state = StateHeader().Match(Assert.Single(ok.Headers.GetValues("RateLimit")));
            Assert.True(state.Success);
            Assert.InRange(int.Parse(state.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture), 1, 60);
        }
        Assert.Equal("\"rpm\";r=1;t=55", first.Headers.GetValues("RateLimit").Single());
        Assert.Equal("\"rpm\";r=0;t=55", second.Headers.GetValues("RateLimit").Single());

        Assert.Equal(HttpStatusCode.TooManyRequests, third.StatusCode);
        Assert.Equal("application/problem+json", third.Content.Headers.ContentType?.MediaType);
        Assert.Equal("55", third.Headers.GetValues("Retry-After").Single());
        Assert.Equal("55000", third.Headers.GetValues("retry-after-ms").Single());
        Assert.Matches(PolicyHeader(), third.Headers.GetValues("RateLimit-Policy").Single());
        Assert.Equal("\"rpm\";r=0;t=55", third.Headers.GetValues("RateLimit").Single());
        var problem = await third.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("rpm", problem.GetProperty("policy").GetString());
        Assert.Equal("rate_limited", problem.GetProperty("code").GetString());
        Assert.Equal(429, problem.GetProperty("status").GetInt32());
        Assert.Contains("rpm", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(2, ForwardedCalls());
    }

    [Theory]
    [InlineData("tokensPerMinute", "tpm")]
    [InlineData("tokensPerDay", "tpd")]
    [InlineData("tokensPerMonth", "tpmonth")]
    public async Task A_call_reserving_more_tokens_than_a_whole_window_allows_gets_413_without_Retry_After_and_takes_nothing(string limit, string policy)
    {
        var limits = KeyLimits.FromOverrides([KeyValuePair.Create(limit, 5000L), KeyValuePair.Create("requestsPerMinute", 10L)])!;
        var key = await MintAsync(limits);

        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/openai/chat/completions")
        {
            Content = JsonContent.Create(new { model = "m", max_tokens = 6000, messages = new[] { new { role = "user", content = "hi" } } }),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Value);
        using var tooLarge = await _gateway.Client.SendAsync(request);

        var problem = await Problems.AssertProblemAsync(tooLarge, 413, "tokens_exceed_limit");
        Assert.False(tooLarge.Headers.Contains("Retry-After"));
        Assert.False(tooLarge.Headers.Contains("retry-after-ms"));
        Assert.Equal(policy, problem.GetProperty("policy").GetString());
        Assert.Equal(5000, problem.GetProperty("limitTokens").GetInt64());
        Assert.True(problem.GetProperty("requestedTokens").GetInt64() >= 6000);
        // Nothing was taken: a call that fits still gets the whole window, and the refused one used no request permit.
        using var fits = await ChatAsync(key, stream: false);
        Assert.Equal(HttpStatusCode.OK, fits.StatusCode);
        Assert.Matches("\"rpm\";r=9;", fits.Headers.GetValues("RateLimit").Single());
    }

    [Fact]
    public async Task Concurrent_streaming_calls_never_use_more_tokens_than_the_token_limit()
    {
        const int Limit = 300;
        const int TokensPerCall = UpstreamStub.PromptTokens + UpstreamStub.CompletionTokens;
        var key = await MintAsync(new KeyLimits { TokensPerMinute = Limit });
        var admitted = 0;
        var refusedRounds = 0;

        for (var round = 0; round < 10 && refusedRounds < 2; round++)
        {
            var calls = await Task.WhenAll(Enumerable.Range(0, 8).Select(async _ =>
            {
                using var response = await ChatAsync(key, stream: true);
                var text = await response.Content.ReadAsStringAsync();
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    Assert.Contains("data: [DONE]", text, StringComparison.Ordinal);
                    Assert.Contains("\"tpm\";q=300;w=60;funcproxy-unit=\"tokens\"", response.Headers.GetValues("RateLimit-Policy").Single(), StringComparison.Ordinal);
                    return true;
                }
                Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
                return false;
            }));
            admitted += calls.Count(c => c);
            refusedRounds += calls.All(c => !c) ? 1 : 0;
        }

        // Every admitted call reported its usage; together they stay within the limit...
        Assert.InRange(admitted * TokensPerCall, 1, Limit);
        // ...and settling returned the unused part of each reservation (about 40 tokens reserved, 17 used), so far more
        // calls fit than reservations alone would allow (300 / 40 = 7).
        Assert.True(admitted >= 12, $"only {admitted} calls admitted");
    }

    [Fact]
    public async Task Usage_rows_count_requests_and_tokens_for_json_and_sse_of_both_providers()
    {
        var key = await MintAsync(new KeyLimits { RequestsPerMinute = 100 });
        foreach (var (upstream, stream, includeUsage) in new[]
        {
            ("openai", false, true), ("openai", true, true), ("openai", true, false),
            ("anthropic", false, true), ("anthropic", true, true),
        })
        {
            using var response = await ChatAsync(key, stream, includeUsage, upstream);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            await response.Content.ReadAsStringAsync();
        }

        var meter = _gateway.Services.GetRequiredService<UsageMeter>();
        await meter.FlushAsync();
        var hour = new DateTimeOffset(2030, 1, 1, 10, 0, 0, TimeSpan.Zero);
        var totals = (await meter.ReadAsync(key.Record.Id, hour, hour.AddHours(1))).ToDictionary(t => t.Upstream);

        // The stream that did not ask for usage is made to report it (FuncProxy:Spend:IncludeStreamUsage, on by default).
        var openai = totals["openai"];
        Assert.Equal(3, openai.Requests);
        Assert.Equal(3 * UpstreamStub.PromptTokens, openai.InputTokens);
        Assert.Equal(3 * UpstreamStub.CompletionTokens, openai.OutputTokens);
        Assert.Equal(0, openai.RequestsWithoutUsage);
        var anthropic = totals["anthropic"];
        Assert.Equal(2, anthropic.Requests);
        Assert.Equal(2 * UpstreamStub.PromptTokens, anthropic.InputTokens);
        Assert.Equal(2 * UpstreamStub.CompletionTokens, anthropic.OutputTokens);
        Assert.Equal(0, anthropic.RequestsWithoutUsage);
    }
}
