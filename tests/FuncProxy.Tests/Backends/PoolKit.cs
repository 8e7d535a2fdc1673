using System.Diagnostics;
using System.Text;
using FuncProxy.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;

namespace FuncProxy.Tests.Backends;

/// <summary>Stub backends that misbehave on purpose, and the settings of a pool made of them.</summary>
internal static class PoolKit
{
    public const string Upstream = "pool";

    /// <summary>Settings for one backend of the <c>pool</c> upstream at <paramref name="baseUrl"/>.</summary>
    public static Dictionary<string, string?> Backend(string name, string baseUrl, int priority = 0, int weight = 1)
    {
        var at = $"FuncProxy:Upstreams:{Upstream}:Backends:{name}";
        return new()
        {
            [$"{at}:BaseUrl"] = baseUrl,
            [$"{at}:Priority"] = priority.ToString(System.Globalization.CultureInfo.InvariantCulture),
            [$"{at}:Weight"] = weight.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
    }

    public static Dictionary<string, string?> Merge(params Dictionary<string, string?>[] parts)
    {
        var all = new Dictionary<string, string?>();
        foreach (var part in parts)
        {
            foreach (var (k, v) in part)
            {
                all[k] = v;
            }
        }
        return all;
    }

    /// <summary>The stub's origin plus <c>/v1</c>, as an OpenAI base URL.</summary>
    public static string V1(UpstreamStub stub) => stub.BaseAddress.GetLeftPart(UriPartial.Authority) + "/v1";

    /// <summary>A base URL on a loopback port nothing listens on: connections are refused.</summary>
    public static string Refusing() => RefusingPort.Url("/v1");

    /// <summary>Answers 429 with <c>retry-after-ms</c> (Azure OpenAI's form), as a throttled deployment does.</summary>
    public static Func<HttpContext, Task> Throttled(int retryAfterMs) => async context =>
    {
        context.Response.StatusCode = StatusCodes.Status429TooManyRequests;
        context.Response.Headers["retry-after-ms"] = retryAfterMs.ToString(System.Globalization.CultureInfo.InvariantCulture);
        context.Response.Headers.RetryAfter = Math.Max(1, retryAfterMs / 1000).ToString(System.Globalization.CultureInfo.InvariantCulture);
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync("""{"error":{"code":"429","message":"Rate limit is exceeded."}}""");
    };

    /// <summary>Answers <paramref name="status"/> with a body naming <paramref name="who"/>.</summary>
    public static Func<HttpContext, Task> Failing(int status, string who) => async context =>
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync("{\"error\":{\"message\":\"failed at " + who + "\"}}");
    };

    /// <summary>Never answers (until the gateway gives up and goes away).</summary>
    public static readonly Func<HttpContext, Task> Hanging = async context =>
    {
        try
        {
            await Task.Delay(Timeout.Infinite, context.RequestAborted);
        }
        catch (OperationCanceledException)
        {
        }
    };

    /// <summary>Starts a server-sent event stream, sends one event, then breaks the connection.</summary>
    public static readonly Func<HttpContext, Task> BreaksAfterFirstEvent = async context =>
    {
        context.Response.ContentType = "text/event-stream";
        await context.Response.Body.WriteAsync(Encoding.UTF8.GetBytes("data: {\"first\":true}\n\n"));
        await context.Response.Body.FlushAsync();
        await Task.Delay(200);
        context.Abort();
    };

    /// <summary>Chat completion request body (JSON).</summary>
    public static StringContent Chat(string model = "gpt-test", bool stream = false) =>
        new($$"""{"model":"{{model}}","stream":{{(stream ? "true" : "false")}},"messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json");

    /// <summary>Polls <paramref name="condition"/> every 50 ms for up to 120 s (a generous bound for a busy machine).</summary>
    public static async Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan? bound = null)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < (bound ?? TimeSpan.FromSeconds(120)))
        {
            if (await condition())
            {
                return true;
            }
            await Task.Delay(50);
        }
        return await condition();
    }
}
