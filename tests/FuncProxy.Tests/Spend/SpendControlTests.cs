using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using FuncProxy.Keys;
using FuncProxy.Proxying;
using FuncProxy.RateLimiting;
using FuncProxy.Server;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using OpenAI;
using OpenAI.Chat;

namespace FuncProxy.Tests.Spend;

/// <summary>Models, prices, budgets and metering by model, through one gateway on Azurite in front of the provider stub.</summary>
public sealed class SpendControlTests : IAsyncLifetime
{
    // Prices per million tokens chosen so one stub call costs a round number of micro-dollars: 12 input tokens of which 4
    // cached, 5 output: (8 x 100) + (4 x 50) + (5 x 200) = 2,000 micro-dollars.
    public const long CallCostMicroUsd = (8 * 100) + (4 * 50) + (5 * 200);

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2030, 1, 1, 10, 0, 5, TimeSpan.Zero));
    private readonly string _prefix = TestStorage.NewTablePrefix();
    private UpstreamStub _stub = null!;
    private GatewayHost _gateway = null!;

    public static Dictionary<string, string?> Settings(UpstreamStub stub)
    {
        var v1 = new Uri(stub.BaseAddress, "/v1").ToString();
        var settings = new Dictionary<string, string?>
        {
            ["FuncProxy:Upstreams:openai:BaseUrl"] = v1,
            ["FuncProxy:Upstreams:anthropic:BaseUrl"] = v1,
            ["FuncProxy:Upstreams:anthropic:AuthHeader"] = "x-api-key",
            ["FuncProxy:Limits:UseStorageClock"] = "false",
        };
        foreach (var upstream in new[] { "openai", "anthropic" })
        {
            settings[$"FuncProxy:Upstreams:{upstream}:Prices:0:Model"] = "gpt-test*";
            settings[$"FuncProxy:Upstreams:{upstream}:Prices:0:InputPerMillion"] = "100";
            settings[$"FuncProxy:Upstreams:{upstream}:Prices:0:OutputPerMillion"] = "200";
            settings[$"FuncProxy:Upstreams:{upstream}:Prices:0:CachedInputPerMillion"] = "50";
            settings[$"FuncProxy:Upstreams:{upstream}:Prices:1:Model"] = "claude-test";
            settings[$"FuncProxy:Upstreams:{upstream}:Prices:1:InputPerMillion"] = "100";
            settings[$"FuncProxy:Upstreams:{upstream}:Prices:1:OutputPerMillion"] = "200";
            settings[$"FuncProxy:Upstreams:{upstream}:Prices:1:CachedInputPerMillion"] = "50";
        }
        return settings;
    }

    public async Task InitializeAsync()
    {
        _stub = await UpstreamStub.StartAsync();
        _stub.StreamDelay = TimeSpan.FromMilliseconds(2);
        _gateway = await GatewayHost.StartAsync(Settings(_stub), _prefix, s => s.AddSingleton<TimeProvider>(_time));
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _stub.DisposeAsync();
    }

    private Task<IssuedKey> MintAsync(KeyCreation creation) =>
        _gateway.Services.GetRequiredService<KeyLifecycle>().CreateAsync(creation with { AllowedUpstreams = ["openai", "anthropic"] });

    private async Task<(HttpResponseMessage Response, string Body)> PostAsync(IssuedKey key, string path, string json)
    {
        var response = await _gateway.SendAsync(HttpMethod.Post, path, key.Value, new StringContent(json, Encoding.UTF8, "application/json"));
        return (response, await response.Content.ReadAsStringAsync());
    }

    private static string Chat(string model, bool stream = false, string extra = "") =>
        $$"""{"model":"{{model}}","max_tokens":10,"stream":{{(stream ? "true" : "false")}}{{extra}},"messages":[{"role":"user","content":"hi"}]}""";

    [Fact]
    public async Task A_model_off_the_allow_list_is_refused_with_403_model_not_allowed_and_an_alias_rewrites_the_model_sent()
    {
        var key = await MintAsync(new KeyCreation
        {
            Name = "models",
            AllowedModels = ["gpt-test-mini*"],
            ModelAliases = new Dictionary<string, string> { ["gpt-test"] = "gpt-test-mini-2030" },
        });

        var (refused, problem) = await PostAsync(key, "/api/openai/chat/completions", Chat("gpt-other"));
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Equal("application/problem+json", refused.Content.Headers.ContentType?.MediaType);
        Assert.Equal("model_not_allowed", JsonDocument.Parse(problem).RootElement.GetProperty("code").GetString());

        // The client asks for gpt-test: the alias sends gpt-test-mini-2030, which the allow-list admits, and the stub answers
        // with the model it received.
        var (ok, answer) = await PostAsync(key, "/api/openai/chat/completions", Chat("gpt-test"));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Equal("gpt-test-mini-2030", JsonDocument.Parse(answer).RootElement.GetProperty("model").GetString());

        // Streamed too, with the alias's longer name changing the body length.
        var (streamed, events) = await PostAsync(key, "/api/openai/chat/completions", Chat("GPT-TEST", stream: true));
        Assert.Equal(HttpStatusCode.OK, streamed.StatusCode);
        Assert.Contains("\"model\":\"gpt-test-mini-2030\"", events, StringComparison.Ordinal);

        // A body that names no model cannot be checked against the list.
        var (unnamed, _) = await PostAsync(key, "/api/openai/chat/completions", """{"messages":[]}""");
        Assert.Equal(HttpStatusCode.Forbidden, unnamed.StatusCode);
    }

    [Fact]
    public async Task A_per_model_limit_counts_only_calls_to_its_models_and_names_its_policy()
    {
        var key = await MintAsync(new KeyCreation
        {
            Name = "per-model",
            ModelLimits = new Dictionary<string, KeyLimits> { ["gpt-test-big*"] = new() { RequestsPerMinute = 2 } },
        });
        for (var i = 0; i < 2; i++)
        {
            var (ok, _) = await PostAsync(key, "/api/openai/chat/completions", Chat("gpt-test-big-1"));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
            Assert.Contains("\"rpm@gpt-test-big~\";q=2;w=60", ok.Headers.GetValues("RateLimit-Policy").Single(), StringComparison.Ordinal);
        }
        var (refused, problem) = await PostAsync(key, "/api/openai/chat/completions", Chat("gpt-test-big-2"));
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal("rpm@gpt-test-big~", JsonDocument.Parse(problem).RootElement.GetProperty("policy").GetString());

        // Another model of the same key is not limited by it.
        for (var i = 0; i < 3; i++)
        {
            var (other, _) = await PostAsync(key, "/api/openai/chat/completions", Chat("gpt-test-small"));
            Assert.Equal(HttpStatusCode.OK, other.StatusCode);
        }
    }

    [Fact]
    public async Task Budgets_are_charged_the_real_cost_with_cached_tokens_for_json_and_sse_of_chat_responses_and_messages()
    {
        var key = await MintAsync(new KeyCreation { Name = "budget", Limits = new KeyLimits { BudgetPerDayMicroUsd = 1_000_000 } });
        var calls = new (string Path, string Body)[]
        {
            ("/api/openai/chat/completions", Chat("gpt-test")),
            ("/api/openai/chat/completions", Chat("gpt-test", stream: true, extra: ",\"stream_options\":{\"include_usage\":true}")),
            ("/api/openai/chat/completions", Chat("gpt-test", stream: true)),
            ("/api/openai/responses", """{"model":"gpt-test","max_output_tokens":10,"input":"hi"}"""),
            ("/api/openai/responses", """{"model":"gpt-test","max_output_tokens":10,"stream":true,"input":"hi"}"""),
            ("/api/anthropic/messages", """{"model":"claude-test","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"""),
            ("/api/anthropic/messages", """{"model":"claude-test","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}"""),
        };
        foreach (var (path, body) in calls)
        {
            var (response, text) = await PostAsync(key, path, body);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path}: {(int)response.StatusCode} {text}");
            Assert.Contains("\"usd-day\";q=1000000;w=86400;funcproxy-unit=\"usd-micros\"", response.Headers.GetValues("RateLimit-Policy").Single(), StringComparison.Ordinal);
        }

        var meter = _gateway.Services.GetRequiredService<UsageMeter>();
        await meter.FlushAsync();
        var hour = new DateTimeOffset(2030, 1, 1, 10, 0, 0, TimeSpan.Zero);
        var rows = await meter.ReadAsync(key.Record.Id, hour, hour.AddHours(1));
        Assert.Equal(calls.Length, rows.Sum(r => r.Requests));
        Assert.Equal(0, rows.Sum(r => r.RequestsWithoutUsage));
        Assert.Equal(calls.Length * UpstreamStub.CachedTokens, rows.Sum(r => r.CachedInputTokens));
        Assert.Equal(calls.Length * CallCostMicroUsd, rows.Sum(r => r.CostMicroUsd));
        Assert.Equal(["claude-test", "gpt-test"], rows.Select(r => r.Model).Distinct().Order());

        // The budget's counter holds what was charged plus what this instance still holds leased (never less than spent).
        var limiter = _gateway.Services.GetRequiredService<KeyRateLimiter>();
        var policy = limiter.PoliciesFor(key.Record).Single(p => p.Unit == PolicyUnit.MicroUsd);
        // A claim for the next block may be on its way to storage: poll until the two agree.
        long counted = 0, held = 0;
        for (var i = 0; i < 1200; i++)
        {
            held = limiter.LimiterFor(key.Record.Id, policy).GetStatistics()!.CurrentAvailablePermits;
            counted = await limiter.Store.ReadUsedAsync(key.Record.Id, policy, policy.Window.StartOf(_time.GetUtcNow()));
            if (counted - held == calls.Length * CallCostMicroUsd)
            {
                break;
            }
            await Task.Delay(100);
        }
        Assert.InRange(counted, calls.Length * CallCostMicroUsd, 1_000_000);
        Assert.Equal(calls.Length * CallCostMicroUsd, counted - held);
    }

    [Fact]
    public async Task A_spent_budget_answers_429_budget_exceeded_with_the_amounts()
    {
        // 10,000 micro-dollars: a call reserves about 5,000 (its size at input price plus 10 output tokens) and costs 2,000.
        var key = await MintAsync(new KeyCreation { Name = "small-budget", Limits = new KeyLimits { BudgetPerDayMicroUsd = 10_000 } });
        var admitted = 0;
        HttpResponseMessage? refused = null;
        string problem = "";
        for (var i = 0; i < 20 && refused is null; i++)
        {
            var (response, text) = await PostAsync(key, "/api/openai/chat/completions", Chat("gpt-test"));
            if (response.StatusCode == HttpStatusCode.OK)
            {
                admitted++;
            }
            else
            {
                (refused, problem) = (response, text);
            }
        }
        Assert.NotNull(refused);
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        var body = JsonDocument.Parse(problem).RootElement;
        Assert.Equal("budget_exceeded", body.GetProperty("code").GetString());
        Assert.Equal("usd-day", body.GetProperty("policy").GetString());
        Assert.Equal(0.01m, body.GetProperty("budgetUsd").GetDecimal());
        Assert.Contains("daily budget", body.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.NotNull(refused.Headers.RetryAfter);
        // Settlement gave back what each call did not use: more calls fit than the reservations alone allow.
        Assert.InRange(admitted * CallCostMicroUsd, 3 * CallCostMicroUsd, 10_000);
    }

    [Fact]
    public async Task An_unpriced_model_is_refused_for_a_key_with_a_budget_and_reported_for_a_key_without()
    {
        var budgeted = await MintAsync(new KeyCreation { Name = "b", Limits = new KeyLimits { BudgetPerMonthMicroUsd = 5_000_000 } });
        var (refused, problem) = await PostAsync(budgeted, "/api/openai/chat/completions", Chat("mystery-model"));
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Equal("model_not_priced", JsonDocument.Parse(problem).RootElement.GetProperty("code").GetString());

        var free = await MintAsync(new KeyCreation { Name = "f" });
        var (ok, _) = await PostAsync(free, "/api/openai/chat/completions", Chat("mystery-model"));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.True(_gateway.Logs.Contains("Model mystery-model on upstream openai has no price"));
    }

    [Fact]
    public async Task A_stream_that_did_not_ask_for_usage_is_metered_and_the_client_gets_no_usage_chunk()
    {
        var key = await MintAsync(new KeyCreation { Name = "stream" });
        var (response, text) = await PostAsync(key, "/api/openai/chat/completions", Chat("gpt-test", stream: true));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var data = text.Split('\n').Where(l => l.StartsWith("data: ", StringComparison.Ordinal)).Select(l => l[6..]).ToList();
        Assert.Equal("[DONE]", data[^1]);
        // Five content chunks and the finish chunk, each whole; the usage-only chunk the gateway asked for is gone.
        var chunks = data[..^1].Select(d => JsonNode.Parse(d)!).ToList();
        Assert.Equal(6, chunks.Count);
        Assert.All(chunks, c => Assert.Single(c["choices"]!.AsArray()));
        Assert.Equal("Hello from the stub.", string.Concat(chunks.Select(c => (string?)c["choices"]![0]!["delta"]!["content"])));

        var meter = _gateway.Services.GetRequiredService<UsageMeter>();
        await meter.FlushAsync();
        var hour = new DateTimeOffset(2030, 1, 1, 10, 0, 0, TimeSpan.Zero);
        var row = Assert.Single(await meter.ReadAsync(key.Record.Id, hour, hour.AddHours(1)));
        Assert.Equal(0, row.RequestsWithoutUsage);
        Assert.Equal(UpstreamStub.PromptTokens, row.InputTokens);
        Assert.Equal(UpstreamStub.CompletionTokens, row.OutputTokens);
    }

    /// <summary>Removes <c>stream_options</c> from what the SDK sends: a client that does not ask for usage.</summary>
    private sealed class WithoutIncludeUsage : PipelinePolicy
    {
        public override void Process(PipelineMessage message, IReadOnlyList<PipelinePolicy> pipeline, int currentIndex) =>
            ProcessAsync(message, pipeline, currentIndex).AsTask().GetAwaiter().GetResult();

        public override async ValueTask ProcessAsync(PipelineMessage message, IReadOnlyList<PipelinePolicy> pipeline, int currentIndex)
        {
            using var buffer = new MemoryStream();
            await message.Request.Content!.WriteToAsync(buffer);
            var body = JsonNode.Parse(buffer.ToArray())!.AsObject();
            body.Remove("stream_options");
            message.Request.Content = BinaryContent.Create(BinaryData.FromString(body.ToJsonString()));
            await ProcessNextAsync(message, pipeline, currentIndex);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task The_official_OpenAI_SDK_streams_correctly_with_and_without_asking_for_usage_and_the_call_is_metered(bool asks)
    {
        var key = await MintAsync(new KeyCreation { Name = "sdk" });
        var options = new OpenAIClientOptions { Endpoint = new Uri(_gateway.BaseAddress, "/api/openai") };
        if (!asks)
        {
            options.AddPolicy(new WithoutIncludeUsage(), PipelinePosition.PerCall);
        }
        var client = new OpenAIClient(new ApiKeyCredential(key.Value), options).GetChatClient("gpt-test");
        var text = new StringBuilder();
        ChatTokenUsage? usage = null;
        await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("hi")]))
        {
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }
            usage ??= update.Usage;
        }
        Assert.Equal("Hello from the stub.", text.ToString());
        if (asks)
        {
            Assert.Equal(UpstreamStub.PromptTokens, usage?.InputTokenCount);
            Assert.Equal(UpstreamStub.CachedTokens, usage?.InputTokenDetails?.CachedTokenCount);
        }
        else
        {
            Assert.Null(usage);
        }

        var meter = _gateway.Services.GetRequiredService<UsageMeter>();
        await meter.FlushAsync();
        var hour = new DateTimeOffset(2030, 1, 1, 10, 0, 0, TimeSpan.Zero);
        var row = Assert.Single(await meter.ReadAsync(key.Record.Id, hour, hour.AddHours(1)));
        Assert.Equal(UpstreamStub.PromptTokens, row.InputTokens);
        Assert.Equal(CallCostMicroUsd, row.CostMicroUsd);
    }

    [Fact]
    public async Task Usage_by_model_with_cost_is_reported_by_the_management_API_and_the_CLI()
    {
        var adminKey = await _gateway.MintAdminKeyAsync();
        using var admin = _gateway.AdminClient(adminKey);
        using var created = await admin.PostAsync("keys", new StringContent(
            """{"name":"api","allowedUpstreams":["openai","anthropic"],"allowedModels":["gpt-test*","claude-*"],"modelAliases":{"fast":"gpt-test-fast"},"limits":{"budgetPerDayUsd":2.5},"modelLimits":{"claude-*":{"tokensPerMinute":100000,"budgetPerMonthUsd":1.25}}}""",
            Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var record = JsonDocument.Parse(await created.Content.ReadAsStringAsync()).RootElement;
        var id = record.GetProperty("record").GetProperty("id").GetString()!;
        var key = new IssuedKey(record.GetProperty("key").GetString()!, (await _gateway.Services.GetRequiredService<KeyStore>().FindAsync(id))!);
        Assert.Equal(2.5m, record.GetProperty("record").GetProperty("limits").GetProperty("budgetPerDayUsd").GetDecimal());
        Assert.Equal(1.25m, record.GetProperty("record").GetProperty("modelLimits").GetProperty("claude-*").GetProperty("budgetPerMonthUsd").GetDecimal());
        Assert.Equal(2_500_000, key.Record.Limits!.BudgetPerDayMicroUsd);

        Assert.Equal(HttpStatusCode.OK, (await PostAsync(key, "/api/openai/chat/completions", Chat("fast"))).Response.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await PostAsync(key, "/api/openai/chat/completions", Chat("gpt-test"))).Response.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await PostAsync(key, "/api/anthropic/messages", """{"model":"claude-test","max_tokens":10,"messages":[]}""")).Response.StatusCode);
        await _gateway.Services.GetRequiredService<UsageMeter>().FlushAsync();

        var from = Uri.EscapeDataString("2030-01-01T09:00:00Z");
        var to = Uri.EscapeDataString("2030-01-01T12:00:00Z");
        using var usageResponse = await admin.GetAsync($"keys/{id}/usage?from={from}&to={to}");
        var usage = JsonDocument.Parse(await usageResponse.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(3 * CallCostMicroUsd / 1_000_000m, usage.GetProperty("totals").GetProperty("costUsd").GetDecimal());
        Assert.Equal(3 * UpstreamStub.CachedTokens, usage.GetProperty("totals").GetProperty("cachedInputTokens").GetInt64());
        var models = usage.GetProperty("hours").EnumerateArray().Select(h => h.GetProperty("model").GetString()!).Order().ToArray();
        Assert.Equal(["claude-test", "gpt-test", "gpt-test-fast"], models);

        var cli = await RunCliAsync("keys", "usage", id, "--from", "2030-01-01T09:00:00Z", "--to", "2030-01-01T12:00:00Z");
        Assert.Equal(OperatorCli.Ok, cli.Code);
        Assert.Contains("MODEL", cli.Out, StringComparison.Ordinal);
        Assert.Contains("gpt-test-fast", cli.Out, StringComparison.Ordinal);
        Assert.Contains("0.006000", cli.Out, StringComparison.Ordinal);
        var json = await RunCliAsync("keys", "usage", id, "--from", "2030-01-01T09:00:00Z", "--to", "2030-01-01T12:00:00Z", "--json");
        var cliUsage = JsonDocument.Parse(json.Out).RootElement;
        Assert.Equal(0.006m, cliUsage.GetProperty("totals").GetProperty("costUsd").GetDecimal());
        Assert.Equal(3, cliUsage.GetProperty("hours").GetArrayLength());

        var updated = await RunCliAsync("keys", "update", id, "--limit", "budgetPerMonthUsd=12.345", "--model", "gpt-*", "--model-limit", "gpt-test*=requestsPerMinute=5", "--json");
        Assert.True(updated.Code == OperatorCli.Ok, updated.Err);
        var view = JsonDocument.Parse(updated.Out).RootElement;
        Assert.Equal(12.345m, view.GetProperty("limits").GetProperty("budgetPerMonthUsd").GetDecimal());
        Assert.Equal(5, view.GetProperty("modelLimits").GetProperty("gpt-test*").GetProperty("requestsPerMinute").GetInt64());
        var bad = await RunCliAsync("keys", "update", id, "--limit", "budgetPerDayUsd=0.0000001");
        Assert.Equal(OperatorCli.Usage, bad.Code);
    }

    private async Task<(int Code, string Out, string Err)> RunCliAsync(params string[] args) =>
        await CliRun.RunAsync(new Dictionary<string, string?>(Settings(_stub))
        {
            ["FuncProxy:Storage:ConnectionString"] = await TestStorage.GetConnectionStringAsync(),
            ["FuncProxy:Storage:TablePrefix"] = _prefix,
        }, args);
}
