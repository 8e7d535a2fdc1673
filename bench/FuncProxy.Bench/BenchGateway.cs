using FuncProxy.Server;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace FuncProxy.Bench;

/// <summary>FuncProxy.Server in this process, on a free loopback port, with one upstream <c>stub</c> in front of the provider stub.</summary>
internal static class BenchGateway
{
    public static async Task<(WebApplication App, string Address)> StartAsync(string storageConnectionString, string stubOrigin)
    {
        var gateway = await GatewayServer.BuildAsync(["--urls", "http://127.0.0.1:0"], b =>
        {
            b.Configuration.Sources.Clear();
            b.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["FuncProxy:Storage:ConnectionString"] = storageConnectionString,
                ["FuncProxy:Upstreams:stub:BaseUrl"] = stubOrigin + "/v1",
                ["FuncProxy:Upstreams:stub:SecretName"] = "stub-key",
                ["FuncProxy:Secrets:stub-key"] = "bench-provider-secret",
            });
            b.Logging.ClearProviders();
        }, startLocalStorage: false);
        await gateway.StartAsync();
        return (gateway, Address(gateway));
    }

    public static string Address(WebApplication app) =>
        app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
}
