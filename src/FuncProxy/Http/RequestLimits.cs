using System.Globalization;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace FuncProxy.Http;

/// <summary>
/// The gateway's own limits on a request's target and header block (<see cref="RequestLimitOptions"/>), checked first,
/// before routing, keys or bodies: an oversize request gets 414 or 431 problem+json, which Kestrel cannot give (its own
/// refusals are empty bodies with no hook to write one: aspnet/KestrelHttpServer#2947). The host therefore sets
/// Kestrel's limits above these. Every response also says <c>X-Content-Type-Options: nosniff</c> from here on, whichever
/// part of the pipeline writes it.
/// </summary>
public sealed class RequestLimits
{
    private readonly RequestDelegate _next;
    private readonly RequestLimitOptions _limits;

    public RequestLimits(RequestDelegate next, IOptions<FuncProxyOptions> options)
    {
        ArgumentNullException.ThrowIfNull(next);
        ArgumentNullException.ThrowIfNull(options);
        _next = next;
        _limits = options.Value.Requests;
    }

    public Task InvokeAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.Response.Headers.XContentTypeOptions = "nosniff";
        var target = TargetLength(context);
        if (target > _limits.MaxTargetLength)
        {
            return Problem.WriteAsync(context, StatusCodes.Status414UriTooLong, "uri_too_long", "URI Too Long",
                string.Create(CultureInfo.InvariantCulture, $"The request target (path and query) is {target} characters long; the gateway accepts at most {_limits.MaxTargetLength}."),
                new Dictionary<string, object?> { ["limit"] = _limits.MaxTargetLength });
        }
        var (count, bytes) = HeaderBlock(context.Request.Headers);
        if (count > _limits.MaxHeaderCount)
        {
            return Problem.WriteAsync(context, StatusCodes.Status431RequestHeaderFieldsTooLarge, "request_headers_too_large", "Request Header Fields Too Large",
                string.Create(CultureInfo.InvariantCulture, $"The request has {count} header fields; the gateway accepts at most {_limits.MaxHeaderCount}."),
                new Dictionary<string, object?> { ["limit"] = _limits.MaxHeaderCount });
        }
        if (bytes > _limits.MaxHeadersTotalBytes)
        {
            return Problem.WriteAsync(context, StatusCodes.Status431RequestHeaderFieldsTooLarge, "request_headers_too_large", "Request Header Fields Too Large",
                string.Create(CultureInfo.InvariantCulture, $"The request's headers take {bytes} bytes; the gateway accepts at most {_limits.MaxHeadersTotalBytes}."),
                new Dictionary<string, object?> { ["limit"] = _limits.MaxHeadersTotalBytes });
        }
        return _next(context);
    }

    /// <summary>The target as the client sent it (Kestrel keeps it raw); path and query otherwise.</summary>
    internal static int TargetLength(HttpContext context)
    {
        if (context.Features.Get<IHttpRequestFeature>()?.RawTarget is { Length: > 0 } raw)
        {
            return raw.Length;
        }
        var request = context.Request;
        return (request.PathBase.Value?.Length ?? 0) + (request.Path.Value?.Length ?? 0) + (request.QueryString.Value?.Length ?? 0);
    }

    /// <summary>Fields and bytes as Kestrel counts them: one field per value, each <c>name: value</c> plus CRLF.</summary>
    internal static (int Count, long Bytes) HeaderBlock(IHeaderDictionary headers)
    {
        var count = 0;
        long bytes = 0;
        foreach (var (name, values) in headers)
        {
            if (values.Count == 0)
            {
                count++;
                bytes += name.Length + 4;
                continue;
            }
            foreach (var value in values)
            {
                count++;
                bytes += name.Length + 4 + (value?.Length ?? 0);
            }
        }
        return (count, bytes);
    }
}
