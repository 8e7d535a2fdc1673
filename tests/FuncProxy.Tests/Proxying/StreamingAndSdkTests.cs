using System.ClientModel;
using System.Net.Http.Headers;
using System.Text;
using FuncProxy.Tests.Infrastructure;
using Anthropic;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Embeddings;
using OpenAI.Responses;

namespace FuncProxy.Tests.Proxying;

public sealed class StreamingAndSdkTests(GatewayFixture fixture) : IClassFixture<GatewayFixture>
{
    private GatewayHost Gateway => fixture.Gateway;

    private ChatClient OpenAIThroughGateway(string key) =>
        new OpenAIClient(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(Gateway.BaseAddress, "/api/stub") })
            .GetChatClient("gpt-test");

    [Fact]
    public async Task The_official_OpenAI_SDK_completes_a_chat_through_the_gateway()
    {
        var key = await Gateway.MintKeyAsync("stub");
        ChatCompletion completion = await OpenAIThroughGateway(key.Value).CompleteChatAsync([new UserChatMessage("hi")]);
        Assert.Equal("Hello from the stub.", completion.Content[0].Text);
        Assert.Equal(UpstreamStub.PromptTokens, completion.Usage.InputTokenCount);
        Assert.Equal(UpstreamStub.CompletionTokens, completion.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task The_official_OpenAI_SDK_streams_a_chat_through_the_gateway()
    {
        var key = await Gateway.MintKeyAsync("stub");
        var text = new StringBuilder();
        var updates = 0;
        await foreach (var update in OpenAIThroughGateway(key.Value).CompleteChatStreamingAsync([new UserChatMessage("hi")]))
        {
            updates++;
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }
        }
        Assert.Equal("Hello from the stub.", text.ToString());
        Assert.True(updates >= 5, $"expected one update per streamed event, got {updates}");
    }

    [Fact]
    public async Task The_OpenAI_SDK_sees_a_refused_key_as_an_authentication_error_with_the_gateway_message()
    {
        var error = await Assert.ThrowsAsync<ClientResultException>(() => OpenAIThroughGateway("fpk_not_a_key").CompleteChatAsync([new UserChatMessage("hi")]));
        Assert.Equal(401, error.Status);
        Assert.Contains("A valid API key is required", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Server_sent_events_reach_the_client_as_they_are_produced()
    {
        var key = await Gateway.MintKeyAsync("stub");
        // The stub holds the rest of the stream until the test has read the first event: if anything between buffered the
        // response, that event would never arrive (bounded wait), whatever the machine's speed.
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        fixture.Stub.HoldAfterFirstEvent = hold;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/api/stub/chat/completions")
            {
                Content = new StringContent("""{"model":"gpt-test","stream":true,"messages":[]}""", Encoding.UTF8, "application/json"),
            };
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Value);
            using var response = await Gateway.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            var first = await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));

            Assert.StartsWith("data: ", first);
            Assert.False(hold.Task.IsCompleted);
            hold.SetResult();
            var rest = await reader.ReadToEndAsync();
            Assert.Contains("data: [DONE]", rest, StringComparison.Ordinal);
        }
        finally
        {
            fixture.Stub.HoldAfterFirstEvent = null;
            hold.TrySetResult();
        }
    }

    [Fact]
    public async Task An_Anthropic_style_upstream_gets_its_bare_key_in_x_api_key()
    {
        var key = await Gateway.MintKeyAsync("anthropic");
        var before = fixture.Stub.Requests.Count;
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/anthropic/messages")
        {
            Content = new StringContent("""{"model":"claude-test","max_tokens":64,"stream":true,"messages":[]}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("x-api-key", key.Value);
        request.Headers.Add("anthropic-version", "2023-06-01");
        using var response = await Gateway.Client.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(200, (int)response.StatusCode);
        Assert.Contains("event: message_stop", body, StringComparison.Ordinal);
        var seen = fixture.Stub.Requests.Skip(before).Single();
        Assert.Equal(GatewayFixture.ProviderSecret, seen.Headers["x-api-key"]);
        Assert.Equal("2023-06-01", seen.Headers["anthropic-version"]);
        Assert.False(seen.Headers.ContainsKey("Authorization"));
    }

    private AnthropicClient AnthropicThroughGateway(string key) =>
        new() { ApiKey = key, BaseUrl = new Uri(Gateway.BaseAddress, "/api/claude").ToString(), MaxRetries = 0 };

    private static MessageCreateParams Hello() => new()
    {
        MaxTokens = 64,
        Messages = [new UserMessageParam { Content = "hi" }],
        Model = "claude-test",
    };

    [Fact]
    public async Task The_official_Anthropic_SDK_completes_a_message_through_the_gateway()
    {
        var key = await Gateway.MintKeyAsync("claude");
        var message = await AnthropicThroughGateway(key.Value).Messages.Create(Hello());
        Assert.Equal("Hello from the stub.", string.Concat(message.Content.Select(c => c.Value is TextBlock t ? t.Text : "")));
        // Anthropic counts cache reads apart from input_tokens, as the stub reports them.
        Assert.Equal(UpstreamStub.PromptTokens - UpstreamStub.CachedTokens, message.Usage.InputTokens);
        Assert.Equal(UpstreamStub.CachedTokens, message.Usage.CacheReadInputTokens);
    }

    [Fact]
    public async Task The_Anthropic_SDK_sees_a_refused_key_as_an_authentication_error_with_the_gateway_message_and_request_id()
    {
        var error = await Assert.ThrowsAnyAsync<AnthropicApiException>(() => AnthropicThroughGateway("fpk_not_a_key").Messages.Create(Hello()));
        Assert.IsType<AnthropicUnauthorizedException>(error);
        // What the SDK parsed out of the body (Anthropic's error shape), as it does for Anthropic's own errors.
        Assert.StartsWith("A valid API key is required", error.ApiMessage, StringComparison.Ordinal);
        Assert.Contains("authentication_error", $"{error.Type}", StringComparison.Ordinal);
        Assert.False(string.IsNullOrEmpty(error.RequestID));
    }

    [Fact]
    public async Task Gateway_errors_carry_the_request_id_in_both_headers_and_Anthropic_clients_get_Anthropic_s_error_shape()
    {
        var key = await Gateway.MintKeyAsync("stub");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/claude/v1/messages") { Content = new StringContent("{}", Encoding.UTF8, "application/json") };
        request.Headers.Add("x-api-key", key.Value);
        request.Headers.Add("anthropic-version", "2023-06-01");
        using var response = await Gateway.Client.SendAsync(request);
        Assert.Equal(403, (int)response.StatusCode);
        var body = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        var id = response.Headers.GetValues("request-id").Single();
        Assert.Equal(id, response.Headers.GetValues("x-request-id").Single());
        Assert.Equal("error", body.GetProperty("type").GetString());
        Assert.Equal("permission_error", body.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal(id, body.GetProperty("request_id").GetString());
        Assert.Equal("upstream_not_allowed", body.GetProperty("code").GetString());

        // Without anthropic-version: the problem type URI and the OpenAI-style error object, as before.
        using var openAi = await Gateway.SendAsync(HttpMethod.Post, "/api/claude/v1/messages", key.Value, new StringContent("{}", Encoding.UTF8, "application/json"));
        var problem = System.Text.Json.JsonDocument.Parse(await openAi.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("urn:funcproxy:problem:upstream_not_allowed", problem.GetProperty("type").GetString());
        Assert.Equal("upstream_not_allowed", problem.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal(openAi.Headers.GetValues("x-request-id").Single(), openAi.Headers.GetValues("request-id").Single());
    }

    private OpenAIClient OpenAIClientThroughGateway(string key) =>
        new(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(Gateway.BaseAddress, "/api/stub") });

    [Fact]
    public async Task The_official_OpenAI_SDK_calls_the_Responses_API_embeddings_and_models_list_through_the_gateway_on_the_stub()
    {
        var key = await Gateway.MintKeyAsync("stub");
        var client = OpenAIClientThroughGateway(key.Value);
#pragma warning disable OPENAI001 // The Responses client is marked experimental in this SDK version.
        var responses = client.GetResponsesClient();
        ResponseResult response = await responses.CreateResponseAsync("gpt-4o-mini", "Say hello");
        Assert.Equal("Hello from the stub.", response.GetOutputText());
        Assert.Equal(UpstreamStub.PromptTokens, response.Usage.InputTokenCount);
        Assert.Equal(UpstreamStub.CompletionTokens, response.Usage.OutputTokenCount);

        var streamed = new StringBuilder();
        var completed = false;
        await foreach (var update in await responses.CreateResponseStreamingAsync("gpt-4o-mini", "Say hello"))
        {
            if (update is StreamingResponseOutputTextDeltaUpdate delta)
            {
                streamed.Append(delta.Delta);
            }
            completed |= update is StreamingResponseCompletedUpdate { Response.Usage.OutputTokenCount: UpstreamStub.CompletionTokens };
        }
#pragma warning restore OPENAI001
        Assert.Equal("Hello from the stub.", streamed.ToString());
        Assert.True(completed, "the stream ends with response.completed carrying usage");

        OpenAIEmbedding embedding = await client.GetEmbeddingClient("text-embedding-3-small").GenerateEmbeddingAsync("hello");
        Assert.Equal(8, embedding.ToFloats().Length);
        var models = await client.GetOpenAIModelClient().GetModelsAsync();
        Assert.Contains(models.Value, m => m.Id == "gpt-4o-mini");
    }

    [Fact]
    public async Task The_gateway_meters_the_usage_the_Responses_API_reports_in_JSON_and_in_its_event_stream()
    {
        var key = await Gateway.MintKeyAsync("stub");
        var meter = (FuncProxy.Proxying.UsageMeter)Gateway.Services.GetService(typeof(FuncProxy.Proxying.UsageMeter))!;
        foreach (var stream in new[] { false, true })
        {
            using var response = await Gateway.SendAsync(HttpMethod.Post, "/api/stub/responses", key.Value,
                new StringContent($$"""{"model":"gpt-4o-mini","input":"hi","stream":{{(stream ? "true" : "false")}}}""", Encoding.UTF8, "application/json"));
            Assert.Equal(200, (int)response.StatusCode);
            _ = await response.Content.ReadAsStringAsync();
        }
        // Metering is recorded when the response has ended, just after the client has read it.
        IReadOnlyList<FuncProxy.Proxying.UsageRow> rows = [];
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (waited.Elapsed < Eventually.DefaultBound * 2 && rows.Sum(r => r.Requests) < 2)
        {
            await meter.FlushAsync();
            rows = await meter.ReadAsync(key.Record.Id, DateTimeOffset.UtcNow.AddHours(-2), DateTimeOffset.UtcNow.AddHours(1));
            await Task.Delay(100);
        }
        Assert.Equal(2, rows.Sum(r => r.Requests));
        Assert.Equal(2 * UpstreamStub.PromptTokens, rows.Sum(r => r.InputTokens));
        Assert.Equal(2 * UpstreamStub.CompletionTokens, rows.Sum(r => r.OutputTokens));
        Assert.Equal(0, rows.Sum(r => r.RequestsWithoutUsage));
    }

    [Fact]
    public async Task The_provider_stub_answers_a_route_it_does_not_implement_with_404_problem_json_not_an_echo()
    {
        var key = await Gateway.MintKeyAsync("stub");
        using var response = await Gateway.SendAsync(HttpMethod.Post, "/api/stub/images/generations", key.Value, new StringContent("{}", Encoding.UTF8, "application/json"));
        Assert.Equal(404, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var body = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Contains("/v1/images/generations", body.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        var error = await Assert.ThrowsAsync<ClientResultException>(() => OpenAIClientThroughGateway(key.Value).GetImageClient("dall-e-3").GenerateImageAsync("a cat"));
        Assert.Equal(404, error.Status);
    }
}
