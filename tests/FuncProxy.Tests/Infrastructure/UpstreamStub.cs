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
/// A real HTTP server on loopback that answers as the providers do, with usage as each reports it (cached prompt tokens included; a chat completions stream reports usage only when
/// <c>stream_options.include_usage</c> asks): OpenAI chat completions
/// and the Responses API (JSON and server-sent events), embeddings (float and base64) and the models list; Anthropic
/// messages (JSON and SSE), token counting and its models list (a request with <c>anthropic-version</c>). It also echoes
/// requests (<c>/echo/...</c>), hangs, streams until cancelled and fails on demand, and records every request it receives
/// so tests can check what crossed the gateway. Any other route is a 404 problem+json, as a provider's unknown route is
/// an error: an SDK call the stub does not implement must fail, not "succeed" with junk. Shared by the tests, the
/// benchmarks and the offline walk-through (bench/FuncProxy.Stub).
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
            try
            {
                await next(context);
            }
            catch (JsonException) when (!context.Response.HasStarted)
            {
                // As the providers answer a body that is not JSON: the client's error (400 invalid_request_error), not a 500.
                context.Response.StatusCode = 400;
                context.Response.ContentType = "application/json";
                await context.Response.WriteAsync("{\"error\":{\"message\":\"We could not parse the JSON body of your request.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}");
            }
        });
        app.MapPost("/v1/chat/completions", (HttpContext c) => stub!.ChatCompletionsAsync(c));
        app.MapPost("/v1/responses", (HttpContext c) => stub!.ResponsesAsync(c));
        app.MapPost("/v1/embeddings", (HttpContext c) => EmbeddingsAsync(c));
        app.MapGet("/v1/models", (HttpContext c) => ModelsAsync(c, null));
        app.MapGet("/v1/models/{id}", (HttpContext c, string id) => ModelsAsync(c, id));
        app.MapPost("/v1/messages", (HttpContext c) => stub!.MessagesAsync(c));
        app.MapPost("/v1/messages/count_tokens", (HttpContext c) => c.Response.WriteAsJsonAsync(new { input_tokens = PromptTokens }));
        // Azure OpenAI: the deployments shape (deployment in the path, api-version in the query) and the v1 API.
        app.MapPost("/openai/deployments/{deployment}/chat/completions", (HttpContext c) => stub!.ChatCompletionsAsync(c));
        app.MapPost("/openai/v1/chat/completions", (HttpContext c) => stub!.ChatCompletionsAsync(c));
        app.Map("/echo/{**rest}", (HttpContext c) => EchoAsync(c));
        // Under an OpenAI-style base URL (.../v1) too, for the pool tests whose backends are configured that way.
        app.Map("/v1/echo/{**rest}", (HttpContext c) => EchoAsync(c));
        app.Map("/hang", (HttpContext c) => stub!.HangAsync(c));
        app.Map("/stream-forever", (HttpContext c) => stub!.StreamForeverAsync(c));
        app.Map("/status/{code:int}", (int code) => Results.StatusCode(code));
        app.MapFallback((HttpContext c) => NotFoundAsync(c));
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

    /// <summary>The routes the stub answers as a provider would, for its 404 and its start-up banner.</summary>
    public const string Routes = "POST /v1/chat/completions, POST /v1/responses, POST /v1/embeddings, GET /v1/models[/{id}] (OpenAI); "
        + "POST /v1/messages, POST /v1/messages/count_tokens, GET /v1/models with anthropic-version (Anthropic)";

    /// <summary>The models <c>GET /v1/models</c> lists: OpenAI's, or Anthropic's to a client that sends <c>anthropic-version</c>.</summary>
    public static readonly string[] OpenAIModels = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"];

    public static readonly string[] AnthropicModels = ["claude-sonnet-4-5", "claude-haiku-4-5"];

    private static Task NotFoundAsync(HttpContext context)
    {
        var detail = $"The provider stub does not implement {context.Request.Method} {context.Request.Path}. It answers {Routes}.";
        context.Response.StatusCode = StatusCodes.Status404NotFound;
        if (context.Request.Headers.ContainsKey("anthropic-version"))
        {
            context.Response.ContentType = "application/json";
            return context.Response.WriteAsync(JsonSerializer.Serialize(new { type = "error", error = new { type = "not_found_error", message = detail } }));
        }
        context.Response.ContentType = "application/problem+json";
        return context.Response.WriteAsync(JsonSerializer.Serialize(new
        {
            type = "urn:funcproxy:stub:not_found",
            title = "Not Found",
            status = 404,
            detail,
            code = "not_found",
            error = new { message = detail, type = "invalid_request_error", code = "not_found" },
        }));
    }

    private static Task ModelsAsync(HttpContext context, string? id)
    {
        const long created = 1_700_000_000;
        if (context.Request.Headers.ContainsKey("anthropic-version"))
        {
            static object Model(string m) => new { type = "model", id = m, display_name = m, created_at = "2025-01-01T00:00:00Z" };
            return id is null
                ? context.Response.WriteAsJsonAsync(new { data = AnthropicModels.Select(Model), has_more = false, first_id = AnthropicModels[0], last_id = AnthropicModels[^1] })
                : context.Response.WriteAsJsonAsync(Model(id));
        }
        static object OpenAIModel(string m) => new { id = m, @object = "model", created, owned_by = "funcproxy-stub" };
        return id is null
            ? context.Response.WriteAsJsonAsync(new { @object = "list", data = OpenAIModels.Select(OpenAIModel) })
            : context.Response.WriteAsJsonAsync(OpenAIModel(id));
    }

    /// <summary>
    /// OpenAI embeddings: one deterministic vector per input (8 numbers, or <c>dimensions</c>), as floats or, when asked
    /// (<c>encoding_format: base64</c>, the .NET and Python SDKs' default), as base64 of little-endian float32s.
    /// </summary>
    private static async Task EmbeddingsAsync(HttpContext context)
    {
        var body = await JsonNode.ParseAsync(context.Request.Body) ?? new JsonObject();
        var model = body["model"]?.GetValue<string>() ?? "text-embedding-3-small";
        var inputs = body["input"] switch
        {
            JsonArray array => array.Select(i => i?.ToJsonString() ?? "").ToList(),
            JsonNode one => new List<string> { one.ToJsonString() },
            _ => new List<string>(),
        };
        var dimensions = body["dimensions"]?.GetValue<int>() is int d and > 0 and <= 4096 ? d : 8;
        var base64 = body["encoding_format"]?.GetValue<string>() == "base64";
        var data = inputs.Select((text, index) =>
        {
            var seed = text.Aggregate(17, (h, c) => unchecked(h * 31 + c));
            var vector = Enumerable.Range(0, dimensions).Select(i => (float)Math.Sin(seed + i)).ToArray();
            object embedding = base64 ? Convert.ToBase64String(System.Runtime.InteropServices.MemoryMarshal.AsBytes(vector.AsSpan())) : vector;
            return new { @object = "embedding", index, embedding };
        }).ToList();
        await context.Response.WriteAsJsonAsync(new
        {
            @object = "list",
            data,
            model,
            usage = new { prompt_tokens = PromptTokens * inputs.Count, total_tokens = PromptTokens * inputs.Count },
        });
    }

    /// <summary>The OpenAI Responses API: one output message, JSON or the documented stream of typed events, with usage.</summary>
    private async Task ResponsesAsync(HttpContext context)
    {
        var body = await JsonNode.ParseAsync(context.Request.Body) ?? new JsonObject();
        var model = body["model"]?.GetValue<string>() ?? "gpt-test";
        var stream = body["stream"]?.GetValue<bool>() == true;
        const string id = "resp_stub";
        const string itemId = "msg_stub";
        const string text = "Hello from the stub.";
        JsonObject Response(string status, JsonArray output, bool withUsage) => new()
        {
            ["id"] = id,
            ["object"] = "response",
            ["created_at"] = 1_700_000_000,
            ["status"] = status,
            ["error"] = null,
            ["incomplete_details"] = null,
            ["instructions"] = body["instructions"]?.DeepClone(),
            ["max_output_tokens"] = body["max_output_tokens"]?.DeepClone(),
            ["model"] = model,
            ["output"] = output,
            ["parallel_tool_calls"] = true,
            ["previous_response_id"] = null,
            ["reasoning"] = new JsonObject { ["effort"] = null, ["summary"] = null },
            ["store"] = true,
            ["temperature"] = 1.0,
            ["text"] = new JsonObject { ["format"] = new JsonObject { ["type"] = "text" } },
            ["tool_choice"] = "auto",
            ["tools"] = new JsonArray(),
            ["top_p"] = 1.0,
            ["truncation"] = "disabled",
            ["usage"] = withUsage
                ? new JsonObject
                {
                    ["input_tokens"] = PromptTokens,
                    ["input_tokens_details"] = new JsonObject { ["cached_tokens"] = CachedTokens },
                    ["output_tokens"] = CompletionTokens,
                    ["output_tokens_details"] = new JsonObject { ["reasoning_tokens"] = 0 },
                    ["total_tokens"] = PromptTokens + CompletionTokens,
                }
                : null,
            ["user"] = null,
            ["metadata"] = new JsonObject(),
        };
        JsonObject Part(string t) => new() { ["type"] = "output_text", ["text"] = t, ["annotations"] = new JsonArray() };
        JsonObject Item(string status, JsonArray content) => new()
        {
            ["type"] = "message", ["id"] = itemId, ["status"] = status, ["role"] = "assistant", ["content"] = content,
        };
        if (!stream)
        {
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(Response("completed", [Item("completed", [Part(text)])], withUsage: true).ToJsonString());
            return;
        }
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        var sequence = 0;
        async Task SendAsync(string type, JsonObject data)
        {
            data["type"] = type;
            data["sequence_number"] = sequence++;
            await WriteEventAsync(context, type, data.ToJsonString());
        }
        await SendAsync("response.created", new JsonObject { ["response"] = Response("in_progress", [], withUsage: false) });
        await SendAsync("response.in_progress", new JsonObject { ["response"] = Response("in_progress", [], withUsage: false) });
        await SendAsync("response.output_item.added", new JsonObject { ["output_index"] = 0, ["item"] = Item("in_progress", []) });
        await SendAsync("response.content_part.added", new JsonObject { ["item_id"] = itemId, ["output_index"] = 0, ["content_index"] = 0, ["part"] = Part("") });
        foreach (var word in new[] { "Hello", " from", " the", " stub", "." })
        {
            await SendAsync("response.output_text.delta", new JsonObject { ["item_id"] = itemId, ["output_index"] = 0, ["content_index"] = 0, ["delta"] = word, ["logprobs"] = new JsonArray() });
            await Task.Delay(StreamDelay, context.RequestAborted);
        }
        await SendAsync("response.output_text.done", new JsonObject { ["item_id"] = itemId, ["output_index"] = 0, ["content_index"] = 0, ["text"] = text, ["logprobs"] = new JsonArray() });
        await SendAsync("response.content_part.done", new JsonObject { ["item_id"] = itemId, ["output_index"] = 0, ["content_index"] = 0, ["part"] = Part(text) });
        await SendAsync("response.output_item.done", new JsonObject { ["output_index"] = 0, ["item"] = Item("completed", [Part(text)]) });
        await SendAsync("response.completed", new JsonObject { ["response"] = Response("completed", [Item("completed", [Part(text)])], withUsage: true) });
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
