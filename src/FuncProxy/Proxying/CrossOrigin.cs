using System.Collections.Frozen;
using Microsoft.AspNetCore.Cors.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;
using Microsoft.Net.Http.Headers;

namespace FuncProxy.Proxying;

/// <summary>
/// CORS for browser apps calling the proxy (docs/cors.md), answered by the gateway with ASP.NET Core's own
/// <see cref="ICorsService"/> and one <see cref="CorsPolicy"/> per upstream (<see cref="UpstreamCorsOptions"/>):
/// <list type="bullet">
/// <item>A preflight (<c>OPTIONS</c> with <c>Origin</c> and <c>Access-Control-Request-Method</c>) is answered here, before
/// the lockout and key checks, and never reaches the upstream: 204 with the grant when the origin, the method and every
/// requested header are allowed; otherwise 403 problem+json <c>cors_not_allowed</c> without any <c>Access-Control-*</c>
/// header. <see cref="ICorsService"/> leaves the method and header checks to the browser (it answers with the policy's
/// lists), so the gateway checks them itself and refuses in the open instead of granting a preflight the browser then
/// drops.</item>
/// <item>Every other response to an allowed origin, whatever its status (401, 403, 429, problem+json from the gateway,
/// or the upstream's own answer streamed as SSE), carries the grant, so a page can read why it was refused. It is put on
/// when the response starts, after the upstream's own <c>Access-Control-*</c> headers have been dropped
/// (<see cref="UpstreamCall"/>): only the gateway's policy ever speaks.</item>
/// <item>A key's <c>allowedOrigins</c> narrows its upstreams' policies for calls made with it: a call bearing another
/// <c>Origin</c> is refused with 403 <c>origin_not_allowed</c> before anything is forwarded, and gets no grant.</item>
/// </list>
/// <c>Access-Control-Allow-Origin</c> is the caller's origin echoed only when it is listed (or <c>*</c> when the policy
/// lists <c>*</c> and allows no credentials); <see cref="CorsPolicy"/> itself refuses <c>*</c> with credentials. Responses
/// of an upstream with a policy carry <c>Vary: Origin</c>.
/// </summary>
public sealed class CrossOrigin
{
    /// <summary>Response headers every grant exposes to the page: the gateway's rate-limit and retry headers and request ids.</summary>
    public static readonly IReadOnlyList<string> GatewayExposedHeaders =
        ["RateLimit", "RateLimit-Policy", "Retry-After", "retry-after-ms", Problem.AnthropicRequestIdHeader, Problem.RequestIdHeader];

    private const string AccessControlPrefix = "Access-Control-";
    private static readonly TimeSpan MaxMaxAge = TimeSpan.FromHours(2);
    private static readonly FrozenSet<string> ForwardedMethods =
        RequestHygiene.AllowedMethods.Split(", ").ToFrozenSet(StringComparer.Ordinal);

    private readonly ICorsService _cors;

    public CrossOrigin(ICorsService cors)
    {
        ArgumentNullException.ThrowIfNull(cors);
        _cors = cors;
    }

    /// <summary>The policy for an upstream's options; null when it lists no origin (no cross-origin access).</summary>
    public static CorsPolicy? BuildPolicy(UpstreamCorsOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.AllowedOrigins.Count == 0)
        {
            return null;
        }
        var builder = new CorsPolicyBuilder();
        if (options.AllowedOrigins.Contains("*"))
        {
            builder.AllowAnyOrigin();
        }
        else
        {
            // Added as the browser sends them (lower-case scheme and host, no default port): the service compares ordinally.
            builder.WithOrigins([.. options.AllowedOrigins.Select(o => TryNormalizeOrigin(o, out var normal) ? normal : o)]);
        }
        var methods = options.EffectiveAllowedMethods;
        builder.WithMethods(methods.Contains("*") ? [.. ForwardedMethods] : [.. methods.Select(m => m.Trim().ToUpperInvariant())]);
        var headers = options.EffectiveAllowedHeaders;
        if (headers.Contains("*"))
        {
            builder.AllowAnyHeader();
        }
        else
        {
            builder.WithHeaders([.. headers.Select(h => h.Trim())]);
        }
        builder.WithExposedHeaders([.. GatewayExposedHeaders.Concat(options.ExposedHeaders.Select(h => h.Trim())).Distinct(StringComparer.OrdinalIgnoreCase)]);
        if (options.AllowCredentials)
        {
            builder.AllowCredentials();
        }
        builder.SetPreflightMaxAge(options.MaxAge);
        return builder.Build();
    }

    /// <summary>The start-time checks of an upstream's <c>Cors</c> section (messages name <paramref name="at"/>).</summary>
    public static void Validate(string at, UpstreamCorsOptions options, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(errors);
        foreach (var origin in options.AllowedOrigins)
        {
            if (origin == "*")
            {
                if (options.AllowCredentials)
                {
                    errors.Add($"{at}:AllowedOrigins may not contain '*' while AllowCredentials is true: list the origins.");
                }
                continue;
            }
            if (!TryNormalizeOrigin(origin, out _))
            {
                errors.Add($"{at}:AllowedOrigins: '{origin}' is not an origin; write one as browsers send it: an absolute http or https origin without a path, e.g. https://app.example.com or http://localhost:5173.");
            }
        }
        foreach (var method in options.EffectiveAllowedMethods.Where(m => m != "*"))
        {
            if (!ForwardedMethods.Contains((method ?? "").Trim().ToUpperInvariant()))
            {
                errors.Add($"{at}:AllowedMethods: '{method}' is not a method the gateway forwards ({RequestHygiene.AllowedMethods}).");
            }
        }
        foreach (var header in options.EffectiveAllowedHeaders.Concat(options.ExposedHeaders).Where(h => h != "*"))
        {
            if (!IsToken(header))
            {
                errors.Add($"{at}: '{header}' in AllowedHeaders or ExposedHeaders is not a header name.");
            }
        }
        if (options.ExposedHeaders.Contains("*"))
        {
            errors.Add($"{at}:ExposedHeaders must name headers ('*' is not allowed).");
        }
        if (options.MaxAge < TimeSpan.Zero || options.MaxAge > MaxMaxAge)
        {
            errors.Add($"{at}:MaxAge must be between 0 and 2 hours.");
        }
    }

    /// <summary>
    /// Reads an origin as browsers send it in <c>Origin</c>: <c>http</c> or <c>https</c>, a host, an optional non-default
    /// port, nothing else (no path, not even <c>/</c>, no user info, query or fragment). <paramref name="normalized"/> is its
    /// lower-case form. The opaque origin <c>null</c> (sandboxed frames, <c>file:</c> pages) is never an origin here.
    /// </summary>
    public static bool TryNormalizeOrigin(string? text, out string normalized)
    {
        normalized = "";
        if (string.IsNullOrWhiteSpace(text) || text.Length > 2048 || text.Trim() != text
            || !Uri.TryCreate(text, UriKind.Absolute, out var uri)
            || uri.Scheme is not ("http" or "https") || uri.UserInfo.Length > 0 || uri.HostNameType == UriHostNameType.Unknown)
        {
            return false;
        }
        var canonical = uri.GetComponents(UriComponents.SchemeAndServer, UriFormat.UriEscaped);
        if (!string.Equals(canonical, text, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }
        normalized = canonical.ToLowerInvariant();
        return true;
    }

    /// <summary>True when the request is a CORS preflight (what the gateway answers itself).</summary>
    public static bool IsPreflight(HttpRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return HttpMethods.IsOptions(request.Method) && request.Headers.ContainsKey(HeaderNames.Origin)
            && request.Headers.ContainsKey(HeaderNames.AccessControlRequestMethod);
    }

    /// <summary>Answers a preflight for <paramref name="route"/>: 204 with the grant, or 403 <c>cors_not_allowed</c> without one.</summary>
    public Task AnswerPreflightAsync(HttpContext context, UpstreamRoute route)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(route);
        var response = context.Response;
        var policy = route.Cors;
        if (policy is null)
        {
            return RefuseAsync(context, "This upstream does not allow cross-origin calls from browsers.");
        }
        var result = _cors.EvaluatePolicy(context, policy);
        if (!result.IsOriginAllowed)
        {
            return RefuseAsync(context, "Cross-origin calls from this origin are not allowed on this upstream.");
        }
        var method = context.Request.Headers[HeaderNames.AccessControlRequestMethod].ToString();
        if (!policy.Methods.Contains(method, StringComparer.Ordinal))
        {
            return RefuseAsync(context, $"Cross-origin calls may not use the method '{Shorten(method)}' on this upstream.");
        }
        if (!policy.AllowAnyHeader)
        {
            foreach (var header in RequestedHeaders(context.Request.Headers[HeaderNames.AccessControlRequestHeaders]))
            {
                if (!policy.Headers.Contains(header, StringComparer.OrdinalIgnoreCase))
                {
                    return RefuseAsync(context, $"Cross-origin calls may not send the header '{Shorten(header)}' on this upstream.");
                }
            }
        }
        _cors.ApplyResult(result, response);
        AddVaryOrigin(response);
        response.StatusCode = StatusCodes.Status204NoContent;
        response.Headers.CacheControl = "no-store";
        return Task.CompletedTask;
    }

    /// <summary>
    /// For a call bearing <c>Origin</c> to an upstream with a policy: puts the grant (or nothing, for an origin not listed)
    /// on the response when it starts. The returned grant can be withdrawn until then (a key that does not allow the origin).
    /// </summary>
    public CorsGrant? GrantOnStart(HttpContext context, UpstreamRoute route)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(route);
        if (route.Cors is not { } policy)
        {
            return null;
        }
        var origin = context.Request.Headers[HeaderNames.Origin];
        // Two Origin headers are no browser's: joined, they match no listed origin.
        var grant = new CorsGrant(origin.Count == 0 ? null : origin.ToString(),
            origin.Count == 0 ? null : _cors.EvaluatePolicy(context, policy));
        context.Response.OnStarting(static state =>
        {
            var (grant, cors, response) = ((CorsGrant, ICorsService, HttpResponse))state;
            // The upstream's own grants were dropped with its answer (UpstreamCall); the gateway's policy alone decides.
            foreach (var name in response.Headers.Keys.Where(n => n.StartsWith(AccessControlPrefix, StringComparison.OrdinalIgnoreCase)).ToList())
            {
                response.Headers.Remove(name);
            }
            if (grant.Result is { IsOriginAllowed: true } result && !grant.Withdrawn)
            {
                cors.ApplyResult(result, response);
            }
            AddVaryOrigin(response);
            return Task.CompletedTask;
        }, (grant, _cors, context.Response));
        return grant;
    }

    /// <summary>True when a key's <c>allowedOrigins</c> (empty: its upstreams' policies alone decide) lets <paramref name="origin"/> use it.</summary>
    public static bool KeyAllows(IReadOnlyList<string> allowedOrigins, string? origin)
    {
        ArgumentNullException.ThrowIfNull(allowedOrigins);
        if (allowedOrigins.Count == 0 || origin is null)
        {
            return true;
        }
        foreach (var allowed in allowedOrigins)
        {
            if (string.Equals(allowed, origin, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }
        return false;
    }

    private static void AddVaryOrigin(HttpResponse response)
    {
        if (!response.Headers.Vary.Any(v => v is not null && v.Contains(HeaderNames.Origin, StringComparison.OrdinalIgnoreCase)))
        {
            response.Headers.Append(HeaderNames.Vary, HeaderNames.Origin);
        }
    }

    private static IEnumerable<string> RequestedHeaders(StringValues values)
    {
        foreach (var value in values)
        {
            foreach (var name in (value ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                yield return name;
            }
        }
    }

    private static Task RefuseAsync(HttpContext context, string detail) =>
        Problem.WriteAsync(context, StatusCodes.Status403Forbidden, "cors_not_allowed", "Forbidden", detail,
            headers: [new(HeaderNames.Vary, HeaderNames.Origin)]);

    private static string Shorten(string text) => text.Length <= 64 ? text : string.Concat(text.AsSpan(0, 64), "...");

    private static bool IsToken(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= 256 && name.All(c => c < 127 && c > 32 && !"\"(),/:;<=>?@[\\]{}".Contains(c, StringComparison.Ordinal));
}

/// <summary>The CORS grant of one call: its <c>Origin</c> and the policy's verdict, until the response starts.</summary>
public sealed class CorsGrant
{
    internal CorsGrant(string? origin, CorsResult? result)
    {
        Origin = origin;
        Result = result;
    }

    /// <summary>The request's <c>Origin</c> (null when absent; several are joined with commas and match nothing).</summary>
    public string? Origin { get; }

    internal CorsResult? Result { get; }

    internal bool Withdrawn { get; private set; }

    /// <summary>The call is refused for its origin: the response gets no grant.</summary>
    public void Withdraw() => Withdrawn = true;
}
