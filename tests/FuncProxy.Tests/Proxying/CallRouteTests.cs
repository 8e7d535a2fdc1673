using FuncProxy.Proxying;
using FuncProxy.RateLimiting;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Options;

namespace FuncProxy.Tests.Proxying;

/// <summary>
/// The Kestrel host hands client calls to the proxy before endpoint routing (issue 11: routing allocated route values on
/// every call). It must read <c>/api/{upstream}/{**path}</c> as routing did and leave the management API, health and the
/// 404s to routing; the end-to-end tests of those routes run through the same pipeline.
/// </summary>
public sealed class CallRouteTests
{
    private static readonly UpstreamCatalog Catalog = new(
        Options.Create(new FuncProxyOptions { Upstreams = { ["OpenAI"] = new UpstreamOptions { BaseUrl = new Uri("https://api.openai.com/v1") } } }),
        new LimiterClock(TimeProvider.System));

    [Theory]
    [InlineData("/api/openai/chat/completions", "OpenAI", "chat/completions")]
    [InlineData("/API/OPENAI/v1/models", "OpenAI", "v1/models")]
    [InlineData("/api/openai", "OpenAI", null)]
    [InlineData("/api/openai/", "OpenAI", "")]
    [InlineData("/api/unknown/x/y", "unknown", "x/y")]
    [InlineData("/api/stub%2Fx/y", "stub%2Fx", "y")]
    public void A_call_is_read_as_routing_read_it(string requestPath, string upstream, string? path)
    {
        Assert.True(FuncProxyApplicationBuilderExtensions.TryMatchCall(requestPath, Catalog, out var readUpstream, out var readPath));
        Assert.Equal(upstream, readUpstream);
        Assert.Equal(path, readPath);
    }

    [Theory]
    [InlineData("/api/admin/keys")]
    [InlineData("/API/Admin")]
    [InlineData("/api/health")]
    [InlineData("/api/HEALTH/")]
    [InlineData("/api//chat")]
    [InlineData("/api/")]
    [InlineData("/api")]
    [InlineData("/apix/openai/chat")]
    [InlineData("/openai/chat")]
    [InlineData(null)]
    public void Everything_else_is_left_to_routing(string? requestPath) =>
        Assert.False(FuncProxyApplicationBuilderExtensions.TryMatchCall(requestPath, Catalog, out _, out _));
}
