using System.ClientModel;
using System.Text;
using Azure.AI.OpenAI;
using FuncProxy.Tests.Infrastructure;
using OpenAI;
using OpenAI.Chat;
using static FuncProxy.Tests.Backends.PoolKit;

namespace FuncProxy.Tests.Backends;

/// <summary>
/// Azure OpenAI's two URL shapes through a pool of two regions with different deployment names: the official
/// <c>AzureOpenAIClient</c> (deployment in the path, <c>api-version</c> in the query) and the <c>OpenAI</c> client on
/// Azure's v1 API (<c>/openai/v1/</c>, deployment in the JSON <c>model</c>), each with the FuncProxy key as its api key.
/// </summary>
public sealed class AzureOpenAITests : IAsyncLifetime
{
    private UpstreamStub _ptu = null!;
    private UpstreamStub _eastus = null!;
    private GatewayHost _gateway = null!;
    private string _key = null!;

    public async Task InitializeAsync()
    {
        _ptu = await UpstreamStub.StartAsync();
        _ptu.Override = Throttled(retryAfterMs: 100); // the provisioned deployment is full: every call spills over
        _eastus = await UpstreamStub.StartAsync();
        string Origin(UpstreamStub s) => s.BaseAddress.GetLeftPart(UriPartial.Authority);
        _gateway = await GatewayHost.StartAsync(new Dictionary<string, string?>
        {
            ["FuncProxy:Upstreams:azure:Backends:ptu:BaseUrl"] = Origin(_ptu),
            ["FuncProxy:Upstreams:azure:Backends:ptu:Priority"] = "0",
            ["FuncProxy:Upstreams:azure:Backends:ptu:SecretName"] = "aoai-ptu",
            ["FuncProxy:Upstreams:azure:Backends:ptu:AuthHeader"] = "api-key",
            ["FuncProxy:Upstreams:azure:Backends:ptu:Deployments:gpt-4o"] = "gpt4o-ptu",
            ["FuncProxy:Upstreams:azure:Backends:eastus:BaseUrl"] = Origin(_eastus),
            ["FuncProxy:Upstreams:azure:Backends:eastus:Priority"] = "1",
            ["FuncProxy:Upstreams:azure:Backends:eastus:SecretName"] = "aoai-eastus",
            ["FuncProxy:Upstreams:azure:Backends:eastus:AuthHeader"] = "api-key",
            ["FuncProxy:Upstreams:azure:Backends:eastus:Deployments:gpt-4o"] = "gpt4o-east",
            ["FuncProxy:Secrets:aoai-ptu"] = "ptu-secret-value",
            ["FuncProxy:Secrets:aoai-eastus"] = "eastus-secret-value",
        });
        _key = (await _gateway.MintKeyAsync("azure")).Value;
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _ptu.DisposeAsync();
        await _eastus.DisposeAsync();
    }

    [Fact]
    public async Task AzureOpenAIClient_with_the_FuncProxy_key_reaches_each_region_under_its_own_deployment_name()
    {
        var client = new AzureOpenAIClient(new Uri(_gateway.BaseAddress, "/api/azure"), new ApiKeyCredential(_key));

        ChatCompletion completion = await client.GetChatClient("gpt-4o").CompleteChatAsync([new UserChatMessage("hi")]);

        Assert.Equal("Hello from the stub.", completion.Content[0].Text);
        var tried = Assert.Single(_ptu.Requests);
        Assert.Equal("/openai/deployments/gpt4o-ptu/chat/completions", tried.Path);
        var served = Assert.Single(_eastus.Requests);
        Assert.Equal("/openai/deployments/gpt4o-east/chat/completions", served.Path);
        Assert.Contains("api-version=", served.Query, StringComparison.Ordinal);
        Assert.Equal("eastus-secret-value", served.Headers["api-key"]);
        Assert.Equal("ptu-secret-value", tried.Headers["api-key"]);
        Assert.DoesNotContain(_key, string.Join(" ", served.Headers.Values), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_OpenAI_client_on_the_v1_API_gets_the_model_mapped_to_the_serving_regions_deployment()
    {
        var chat = new OpenAIClient(new ApiKeyCredential(_key), new OpenAIClientOptions { Endpoint = new Uri(_gateway.BaseAddress, "/api/azure/openai/v1") })
            .GetChatClient("gpt-4o");

        ChatCompletion completion = await chat.CompleteChatAsync([new UserChatMessage("hi")]);
        var text = new StringBuilder();
        await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("hi")]))
        {
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }
        }

        Assert.Equal("gpt4o-east", completion.Model); // the stub echoes the model it was sent
        Assert.Equal("Hello from the stub.", completion.Content[0].Text);
        Assert.Equal("Hello from the stub.", text.ToString());
        Assert.All(_eastus.Requests, r => Assert.Equal("/openai/v1/chat/completions", r.Path));
        Assert.Equal(2, _eastus.Requests.Count);
    }
}
