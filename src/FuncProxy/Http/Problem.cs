using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace FuncProxy;

/// <summary>
/// Error responses as RFC 9457 <c>application/problem+json</c>: a stable <c>code</c>, a request id, never a stack trace or
/// a secret. They read as each provider's own errors do in its SDKs: an OpenAI-style <c>error</c> object
/// (<c>message</c>, <c>type</c>, <c>code</c>) and the id in <c>x-request-id</c>, which OpenAI's SDKs read; the id also in
/// <c>request-id</c>, which Anthropic's read; and for a client that speaks Anthropic's API (it sends
/// <c>anthropic-version</c>, as Anthropic's SDKs always do) the body is Anthropic's error shape,
/// <c>{"type":"error","error":{"type":"rate_limit_error","message":"..."},"request_id":"..."}</c>, with the problem's
/// members (<c>title</c>, <c>status</c>, <c>detail</c>, <c>code</c>, <c>requestId</c>) beside it. Only <c>type</c> differs
/// then (<c>error</c> instead of the <c>urn:funcproxy:problem:</c> URI): clients should switch on <c>code</c>.
/// </summary>
public static class Problem
{
    public const string ContentType = "application/problem+json";
    public const string RequestIdHeader = "x-request-id";

    /// <summary>The request id header Anthropic's API sends and its SDKs read.</summary>
    public const string AnthropicRequestIdHeader = "request-id";

    /// <summary>The request header by which a client says it speaks Anthropic's API.</summary>
    public const string AnthropicVersionHeader = "anthropic-version";

    /// <summary>Anthropic's error <c>type</c> for a status, as its API documents them.</summary>
    internal static string AnthropicErrorType(int status) => status switch
    {
        400 or 405 or 411 or 415 or 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ when status >= 500 => "api_error",
        _ => "invalid_request_error",
    };

    /// <summary>The id that ties a response to the gateway's logs: the incoming request's trace identifier.</summary>
    public static string RequestId(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.TraceIdentifier;
    }

    public static async Task WriteAsync(
        HttpContext context,
        int status,
        string code,
        string title,
        string detail,
        IReadOnlyDictionary<string, object?>? extensions = null,
        IEnumerable<KeyValuePair<string, string>>? headers = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var response = context.Response;
        if (response.HasStarted)
        {
            return;
        }
        response.Clear();
        response.StatusCode = status;
        response.ContentType = ContentType;
        response.Headers.CacheControl = "no-store";
        response.Headers.XContentTypeOptions = "nosniff";
        var requestId = RequestId(context);
        response.Headers[RequestIdHeader] = requestId;
        response.Headers[AnthropicRequestIdHeader] = requestId;
        var anthropic = context.Request.Headers.ContainsKey(AnthropicVersionHeader);
        if (headers is not null)
        {
            foreach (var (name, value) in headers)
            {
                response.Headers[name] = value;
            }
        }

        using var buffer = new MemoryStream();
        // Relaxed escaping keeps quotes and angle brackets readable; the body is served as problem+json, never embedded in HTML.
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteString("type", anthropic ? "error" : "urn:funcproxy:problem:" + code);
            json.WriteString("title", title);
            json.WriteNumber("status", status);
            json.WriteString("detail", detail);
            json.WriteString("code", code);
            json.WriteString("requestId", requestId);
            if (extensions is not null)
            {
                foreach (var (name, value) in extensions)
                {
                    json.WritePropertyName(name);
                    JsonSerializer.Serialize(json, value);
                }
            }
            json.WriteStartObject("error");
            json.WriteString("message", detail);
            json.WriteString("type", anthropic ? AnthropicErrorType(status) : code);
            json.WriteString("code", code);
            json.WriteEndObject();
            if (anthropic)
            {
                json.WriteString("request_id", requestId);
            }
            json.WriteEndObject();
        }
        response.ContentLength = buffer.Length;
        // The client may already be gone; that is not the gateway's error.
        try
        {
            await response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), context.RequestAborted).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
        }
    }

    /// <summary>400 naming every bad field in an <c>errors</c> extension: <c>[{"field": "name", "message": "..."}]</c>.</summary>
    public static Task InvalidAsync<TError>(HttpContext context, IReadOnlyList<TError> errors, string detail = "The request has invalid fields; see 'errors'.") =>
        WriteAsync(context, StatusCodes.Status400BadRequest, "invalid_request", "Bad Request", detail,
            new Dictionary<string, object?> { ["errors"] = errors });

    /// <summary>429 with <c>Retry-After</c> in whole seconds (at least 1).</summary>
    public static Task TooManyRequestsAsync(HttpContext context, string code, string detail, TimeSpan retryAfter) =>
        WriteAsync(context, StatusCodes.Status429TooManyRequests, code, "Too Many Requests", detail,
            headers: [new("Retry-After", Math.Max(1, (long)Math.Ceiling(retryAfter.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture))]);

    private static readonly KeyValuePair<string, string>[] BearerChallenge = [new("WWW-Authenticate", "Bearer")];

    /// <summary>The one 401 every refused client key gets, whatever the reason: nothing tells an attacker which.</summary>
    public static Task UnauthorizedAsync(HttpContext context) =>
        WriteAsync(context, StatusCodes.Status401Unauthorized, "invalid_api_key", "Unauthorized",
            "A valid API key is required: send it as 'Authorization: Bearer <key>', 'x-api-key' or 'api-key'.",
            headers: BearerChallenge);

    private static readonly KeyValuePair<string, string>[] InvalidTokenChallenge = [new("WWW-Authenticate", "Bearer error=\"invalid_token\"")];

    /// <summary>
    /// The one 401 every refused Entra ID token gets, whatever the reason (invalid, another tenant, missing scope or role,
    /// unmapped, or a mapped key that is disabled, revoked or expired): as for keys, nothing tells an attacker which.
    /// </summary>
    public static Task InvalidTokenAsync(HttpContext context) =>
        WriteAsync(context, StatusCodes.Status401Unauthorized, "invalid_token", "Unauthorized",
            "A valid access token for this gateway, or an API key, is required.",
            headers: InvalidTokenChallenge);
}
