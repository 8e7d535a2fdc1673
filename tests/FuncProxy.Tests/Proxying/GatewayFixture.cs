using FuncProxy.Tests.Infrastructure;

namespace FuncProxy.Tests.Proxying;

/// <summary>One provider stub and one gateway in front of it, with an upstream for each behaviour under test.</summary>
public sealed class GatewayFixture : IAsyncLifetime
{
    public const string ProviderSecret = "provider-secret-value-0001";

    public UpstreamStub Stub { get; private set; } = null!;
    public GatewayHost Gateway { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Stub = await UpstreamStub.StartAsync();
        var origin = Stub.BaseAddress.GetLeftPart(UriPartial.Authority);
        Gateway = await GatewayHost.StartAsync(new Dictionary<string, string?>
        {
            ["FuncProxy:Upstreams:stub:BaseUrl"] = origin + "/v1",
            ["FuncProxy:Upstreams:stub:SecretName"] = "stub-key",
            ["FuncProxy:Secrets:stub-key"] = ProviderSecret,
            ["FuncProxy:Upstreams:anthropic:BaseUrl"] = origin + "/v1",
            ["FuncProxy:Upstreams:anthropic:SecretName"] = "stub-key",
            ["FuncProxy:Upstreams:anthropic:AuthHeader"] = "x-api-key",
            // As appsettings.json has it for the real provider: the origin, so Anthropic's SDKs add /v1/messages.
            ["FuncProxy:Upstreams:claude:BaseUrl"] = origin,
            ["FuncProxy:Upstreams:claude:SecretName"] = "stub-key",
            ["FuncProxy:Upstreams:claude:AuthHeader"] = "x-api-key",
            ["FuncProxy:Upstreams:echo:BaseUrl"] = origin + "/echo/base",
            ["FuncProxy:Upstreams:small:BaseUrl"] = origin + "/echo/small",
            ["FuncProxy:Upstreams:small:MaxRequestBodyBytes"] = "1024",
            ["FuncProxy:Upstreams:root:BaseUrl"] = origin,
            ["FuncProxy:Upstreams:slow:BaseUrl"] = origin,
            ["FuncProxy:Upstreams:slow:Timeout"] = "00:00:01",
            ["FuncProxy:Upstreams:dead:BaseUrl"] = RefusingPort.Url("/v1"),
            ["FuncProxy:Upstreams:nosecret:BaseUrl"] = origin + "/v1",
            ["FuncProxy:Upstreams:nosecret:SecretName"] = "missing-secret",
        });
    }

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await Stub.DisposeAsync();
    }
}
