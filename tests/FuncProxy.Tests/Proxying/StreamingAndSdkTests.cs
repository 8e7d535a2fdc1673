using System.ClientModel;
using System.Net.Http.Headers;
using System.Text;
using FuncProxy.Tests.Infrastructure;
using OpenAI;
using OpenAI.Chat;

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
}
