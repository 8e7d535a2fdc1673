using System.Text.Json;
using FuncProxy.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace FuncProxy.Tests.OperatorConsole;

/// <summary>
/// CORS as a browser enforces it: a page served from one loopback origin calls the gateway on another with
/// <c>fetch</c> (a preflight, since it sends <c>Authorization</c> and JSON), in headless Chromium. Runs with the other
/// browser tests (<see cref="ConsoleCollection"/>).
/// </summary>
[Collection(ConsoleCollection.Name)]
public sealed class CorsBrowserTests
{
    [BrowserFact]
    public async Task A_page_on_a_listed_origin_reads_the_answer_and_its_headers_and_a_page_elsewhere_is_blocked_by_the_browser()
    {
        await using var listed = await PageServer.StartAsync();
        await using var unlisted = await PageServer.StartAsync();
        await using var stub = await UpstreamStub.StartAsync();
        var stubOrigin = stub.BaseAddress.GetLeftPart(UriPartial.Authority);
        await using var gateway = await GatewayHost.StartAsync(new Dictionary<string, string?>
        {
            ["FuncProxy:Upstreams:web:BaseUrl"] = stubOrigin + "/v1",
            ["FuncProxy:Upstreams:web:Cors:AllowedOrigins:0"] = listed.Origin,
            // A limit, so the answer carries RateLimit-Policy for the page to read.
            ["FuncProxy:Limits:RequestsPerMinute"] = "1000",
        });
        var key = await gateway.MintKeyAsync("web");
        await using var browser = await ConsoleBrowser.LaunchAsync();

        const string Script = """
            async ([url, key]) => {
              try {
                const response = await fetch(url, {
                  method: 'POST',
                  headers: { 'Authorization': 'Bearer ' + key, 'Content-Type': 'application/json' },
                  body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
                });
                const text = await response.text();
                return JSON.stringify({ status: response.status, requestId: response.headers.get('x-request-id'),
                  rateLimitPolicy: response.headers.get('RateLimit-Policy'), streamed: text.includes('[DONE]') });
              } catch (e) {
                return JSON.stringify({ error: String(e) });
              }
            }
            """;
        var url = new Uri(gateway.BaseAddress, "/api/web/chat/completions").ToString();

        await using (var watched = await browser.OpenAsync())
        {
            await watched.Page.GotoAsync(listed.Origin + "/");
            var result = JsonDocument.Parse(await watched.Page.EvaluateAsync<string>(Script, new[] { url, key.Value })).RootElement;
            Assert.False(result.TryGetProperty("error", out var error), "the listed origin's fetch failed: " + error);
            Assert.Equal(200, result.GetProperty("status").GetInt32());
            Assert.True(result.GetProperty("streamed").GetBoolean());
            Assert.False(string.IsNullOrEmpty(result.GetProperty("requestId").GetString()), "x-request-id is not exposed to the page");
            Assert.Equal(JsonValueKind.String, result.GetProperty("rateLimitPolicy").ValueKind);
        }

        var calls = stub.Requests.Count;
        await using (var watched = await browser.OpenAsync())
        {
            await watched.Page.GotoAsync(unlisted.Origin + "/");
            var result = JsonDocument.Parse(await watched.Page.EvaluateAsync<string>(Script, new[] { url, key.Value })).RootElement;
            // The browser refuses the preflight's answer, so the call itself is never sent.
            Assert.Contains("Failed to fetch", result.GetProperty("error").GetString(), StringComparison.Ordinal);
        }
        Assert.Equal(calls, stub.Requests.Count);
    }

    /// <summary>A loopback server of one empty page: an origin for the browser to call the gateway from.</summary>
    private sealed class PageServer : IAsyncDisposable
    {
        private readonly WebApplication _app;

        private PageServer(WebApplication app, string origin)
        {
            _app = app;
            Origin = origin;
        }

        public string Origin { get; }

        public static async Task<PageServer> StartAsync()
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            var app = builder.Build();
            app.MapGet("/", (HttpContext context) => Results.Content("<!doctype html><title>page</title><p>page</p>", "text/html"));
            await app.StartAsync();
            var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            return new PageServer(app, new Uri(address).GetLeftPart(UriPartial.Authority));
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
