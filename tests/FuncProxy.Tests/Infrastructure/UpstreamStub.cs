using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace FuncProxy.Tests.Infrastructure;

/// <summary>
/// A real HTTP server on loopback that answers as the providers do: OpenAI chat completions and Responses and Anthropic
/// messages, JSON and server-sent events, with usage as they report it (cached prompt tokens included; a chat completions
/// stream reports usage only when <c>stream_options.include_usage</c> asks). It also echoes requests, hangs, streams until cancelled and fails on demand, and
/// records every request it receives so tests can check what crossed the gateway. Shared by the tests and the benchmarks.
/// </summary>
public sealed class UpstreamStub : IAsyncDisposable
{
    public const int PromptTokens = 12;
    public const int CompletionTokens = 5;

    /// <summary>Of <see cref="PromptTokens"/>, how many the provider reports as read from its prompt cache.</summary>
    public const int CachedTokens = 4;

    private readonly WebApplication _app;

    private UpstreamStub(WebApplication app, Uri baseAddress)
    {
        _app = app;
        BaseAddress = baseAddress;
    }

    /// <summary>e.g. http://127.0.0.1:41234</summary>
    public Uri BaseAddress { get; }

    /// <summary>Every request received, in order.</summary>
    public ConcurrentQueue<RecordedRequest> Requests { get; } = new();

    /// <summary>When set, requests must carry exactly this value in <see cref="CredentialHeader"/>, else 401 (with a body that echoes part of the key, as OpenAI's does).</summary>
    public string? RequiredCredential { get; set; }

    public string CredentialHeader { get; set; } = "Authorization";

    /// <summary>When set, answers every request in place of the routes below (after recording it): a backend that throttles, fails or breaks.</summary>
    public Func<HttpContext, Task>? Override { get; set; }

    /// <summary>Delay between streamed events.</summary>
    public TimeSpan StreamDelay { get; set; } = TimeSpan.FromMilliseconds(20);

    /// <summary>
    /// When set, a streamed chat completion waits for it after its first event, so a test can see that event arrive while
    /// the rest is not even produced yet (proof that nothing buffers the stream, without timing it).
    /// </summary>
    public TaskCompletionSource? HoldAfterFirstEvent { get; set; }

    /// <summary>Completed when a <c>/stream-forever</c> call notices its client went away.</summary>
    public TaskCompletionSource StreamCancelled { get; private set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completed when a <c>/hang</c> call notices its client went away.</summary>
    public TaskCompletionSource HangCancelled { get; private set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void ResetSignals()
    {
        StreamCancelled = new(TaskCreationOptions.RunContinuationsAsynchronously);
        HangCancelled = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    public static async Task<UpstreamStub> StartAsync(bool record = true, int port = 0)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = null);
        var app = builder.Build();
        UpstreamStub? stub = null;
        app.Use(async (context, next) =>
        {
            if (record)
            {
                stub!.Requests.Enqueue(RecordedRequest.From(context));
            }
            if (stub!.RequiredCredential is { } required
                && context.Request.Headers[stub.CredentialHeader].ToString() != required)
            {
                var presented = context.Request.Headers[stub.CredentialHeader].ToString();
                context.Response.StatusCode = 401;
                context.Response.ContentType = "application/json";
                var tail = presented.Length > 4 ? presented[^4..] : presented;
                await context.Response.WriteAsync("{\"error\":{\"message\":\"Incorrect API key provided: sk-****" + tail + ".\",\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}");
                return;
            }
            if (stub.Override is { } answer)
            {
                await answer(context);
                return;
            }
            await next(context);
        });
        app.MapPost("/v1/chat/completions", (HttpContext c) => stub!.ChatCompletionsAsync(c));
        app.MapPost("/v1/messages", (HttpContext c) => stub!.MessagesAsync(c));
        app.MapPost("/v1/responses", (HttpContext c) => stub!.ResponsesAsync(c));
        // Azure OpenAI: the deployments shape (deployment in the path, api-version in the query) and the v1 API.
        app.MapPost("/openai/deployments/{deployment}/chat/completions", (HttpContext c) => stub!.ChatCompletionsAsync(c));
        app.MapPost("/openai/v1/chat/completions", (HttpContext c) => stub!.ChatCompletionsAsync(c));
        app.Map("/echo/{**rest}", (HttpContext c) => EchoAsync(c));
        app.Map("/hang", (HttpContext c) => stub!.HangAsync(c));
        app.Map("/stream-forever", (HttpContext c) => stub!.StreamForeverAsync(c));
        app.Map("/status/{code:int}", (int code) => Results.StatusCode(code));
        app.MapFallback((HttpContext c) => EchoAsync(c));
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        stub = new UpstreamStub(app, new Uri(address));
        return stub;
    }

    private async Task ChatCompletionsAsync(HttpContext context)
    {
        var body = await JsonNode.ParseAsync(context.Request.Body) ?? new JsonObject();
        var model = body["model"]?.GetValue<string>() ?? "gpt-test";
        var stream = body["stream"]?.GetValue<bool>() == true;
        var includeUsage = body["stream_options"]?["include_usage"]?.GetValue<bool>() == true;
        const string id = "chatcmpl-stub";
        const long created = 1_700_000_000;
        if (!stream)
        {
            await context.Response.WriteAsJsonAsync(new
            {
                id,
                @object = "chat.completion",
                created,
                model,
                choices = new[] { new { index = 0, message = new { role = "assistant", content = "Hello from the stub." }, finish_reason = "stop" } },
                usage = ChatUsage(),
            });
            return;
        }
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        string[] words = ["Hello", " from", " the", " stub", "."];
        for (var i = 0; i < words.Length; i++)
        {
            var chunk = new JsonObject
            {
                ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = created, ["model"] = model,
                ["choices"] = JsonSerializer.SerializeToNode(new[] { new { index = 0, delta = new { role = i == 0 ? "assistant" : null, content = words[i] }, finish_reason = (string?)null } }),
            };
            if (includeUsage)
            {
                // As OpenAI does: with include_usage every chunk carries "usage": null, and one more chunk carries the usage.
                chunk["usage"] = null;
            }
            await WriteEventAsync(context, null, chunk.ToJsonString());
            if (i == 0 && HoldAfterFirstEvent is { } hold)
            {
                await hold.Task.WaitAsync(context.RequestAborted);
            }
            await Task.Delay(StreamDelay, context.RequestAborted);
        }
        var final = new
        {
            id, @object = "chat.completion.chunk", created, model,
            choices = new[] { new { index = 0, delta = new { role = (string?)null, content = (string?)null }, finish_reason = "stop" } },
        };
        await WriteEventAsync(context, null, JsonSerializer.Serialize(final));
        if (includeUsage)
        {
            var usage = new
            {
                id, @object = "chat.completion.chunk", created, model, choices = Array.Empty<object>(),
                usage = ChatUsage(),
            };
            await WriteEventAsync(context, null, JsonSerializer.Serialize(usage));
        }
        await WriteEventAsync(context, null, "[DONE]");
    }

    private static object ChatUsage() => new
    {
        prompt_tokens = PromptTokens, completion_tokens = CompletionTokens, total_tokens = PromptTokens + CompletionTokens,
        prompt_tokens_details = new { cached_tokens = CachedTokens, audio_tokens = 0 },
        completion_tokens_details = new { reasoning_tokens = 0, audio_tokens = 0, accepted_prediction_tokens = 0, rejected_prediction_tokens = 0 },
    };

    /// <summary>OpenAI Responses: <c>usage.input_tokens_details.cached_tokens</c>; streamed, usage comes in <c>response.completed</c>.</summary>
    private async Task ResponsesAsync(HttpContext context)
    {
        var body = await JsonNode.ParseAsync(context.Request.Body) ?? new JsonObject();
        var model = body["model"]?.GetValue<string>() ?? "gpt-test";
        var stream = body["stream"]?.GetValue<bool>() == true;
        var usage = new
        {
            input_tokens = PromptTokens, input_tokens_details = new { cached_tokens = CachedTokens },
            output_tokens = CompletionTokens, output_tokens_details = new { reasoning_tokens = 0 }, total_tokens = PromptTokens + CompletionTokens,
        };
        var response = new
        {
            id = "resp_stub", @object = "response", created_at = 1_700_000_000, status = "completed", model,
            output = new[] { new { type = "message", id = "msg_stub", status = "completed", role = "assistant", content = new[] { new { type = "output_text", text = "Hello from the stub.", annotations = Array.Empty<object>() } } } },
            usage,
        };
        if (!stream)
        {
            await context.Response.WriteAsJsonAsync(response);
            return;
        }
        context.Response.ContentType = "text/event-stream";
        await WriteEventAsync(context, "response.created", JsonSerializer.Serialize(new { type = "response.created", response = new { id = "resp_stub", @object = "response", status = "in_progress", model, usage = (object?)null } }));
        foreach (var word in new[] { "Hello", " from", " the", " stub", "." })
        {
            await WriteEventAsync(context, "response.output_text.delta", JsonSerializer.Serialize(new { type = "response.output_text.delta", item_id = "msg_stub", output_index = 0, content_index = 0, delta = word }));
            await Task.Delay(StreamDelay, context.RequestAborted);
        }
        await WriteEventAsync(context, "response.completed", JsonSerializer.Serialize(new { type = "response.completed", response }));
    }

    private async Task MessagesAsync(HttpContext context)
    {
        var body = await JsonNode.ParseAsync(context.Request.Body) ?? new JsonObject();
        var model = body["model"]?.GetValue<string>() ?? "claude-test";
        var stream = body["stream"]?.GetValue<bool>() == true;
        const string id = "msg_stub";
        if (!stream)
        {
            await context.Response.WriteAsJsonAsync(new
            {
                id, type = "message", role = "assistant", model,
                content = new[] { new { type = "text", text = "Hello from the stub." } },
                stop_reason = "end_turn", stop_sequence = (string?)null,
                usage = new { input_tokens = PromptTokens - CachedTokens, cache_creation_input_tokens = 0, cache_read_input_tokens = CachedTokens, output_tokens = CompletionTokens },
            });
            return;
        }
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        await WriteEventAsync(context, "message_start", JsonSerializer.Serialize(new
        {
            type = "message_start",
            message = new { id, type = "message", role = "assistant", model, content = Array.Empty<object>(), stop_reason = (string?)null, stop_sequence = (string?)null, usage = new { input_tokens = PromptTokens - CachedTokens, cache_creation_input_tokens = 0, cache_read_input_tokens = CachedTokens, output_tokens = 1 } },
        }));
        await WriteEventAsync(context, "content_block_start", """{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}""");
        foreach (var word in new[] { "Hello", " from", " the", " stub", "." })
        {
            await WriteEventAsync(context, "content_block_delta", JsonSerializer.Serialize(new { type = "content_block_delta", index = 0, delta = new { type = "text_delta", text = word } }));
            await Task.Delay(StreamDelay, context.RequestAborted);
        }
        await WriteEventAsync(context, "content_block_stop", """{"type":"content_block_stop","index":0}""");
        await WriteEventAsync(context, "message_delta", JsonSerializer.Serialize(new { type = "message_delta", delta = new { stop_reason = "end_turn", stop_sequence = (string?)null }, usage = new { output_tokens = CompletionTokens } }));
        await WriteEventAsync(context, "message_stop", """{"type":"message_stop"}""");
    }

    private static async Task EchoAsync(HttpContext context)
    {
        long length = 0;
        var buffer = new byte[16 * 1024];
        int n;
        while ((n = await context.Request.Body.ReadAsync(buffer, context.RequestAborted)) > 0)
        {
            length += n;
        }
        await context.Response.WriteAsJsonAsync(new
        {
            method = context.Request.Method,
            path = context.Request.Path.Value,
            rawTarget = context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestFeature>()?.RawTarget,
            query = context.Request.QueryString.Value,
            headers = context.Request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase),
            bodyLength = length,
        });
    }

    private async Task HangAsync(HttpContext context)
    {
        try
        {
            await Task.Delay(Timeout.Infinite, context.RequestAborted);
        }
        catch (OperationCanceledException)
        {
            HangCancelled.TrySetResult();
        }
    }

    private async Task StreamForeverAsync(HttpContext context)
    {
        context.Response.ContentType = "text/event-stream";
        try
        {
            for (var i = 0; ; i++)
            {
                await WriteEventAsync(context, null, $$"""{"tick":{{i}}}""");
                await Task.Delay(StreamDelay, context.RequestAborted);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            StreamCancelled.TrySetResult();
        }
    }

    private static async Task WriteEventAsync(HttpContext context, string? eventName, string data)
    {
        var text = eventName is null ? $"data: {data}\n\n" : $"event: {eventName}\ndata: {data}\n\n";
        await context.Response.Body.WriteAsync(Encoding.UTF8.GetBytes(text), context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>What the stub saw of one request.</summary>
public sealed record RecordedRequest(string Method, string Path, string RawTarget, string Query, IReadOnlyDictionary<string, string> Headers)
{
    /// <summary>When the stub received it (local clock).</summary>
    public DateTimeOffset At { get; init; } = DateTimeOffset.UtcNow;

    public static RecordedRequest From(HttpContext context) => new(
        context.Request.Method,
        context.Request.Path.Value ?? "",
        context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestFeature>()?.RawTarget ?? "",
        context.Request.QueryString.Value ?? "",
        context.Request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase));
}
