using System.Collections.Frozen;
using System.Net;
using System.Net.Http.Headers;
using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;

namespace FuncProxy.Proxying;

/// <summary>
/// One attempt of a forwarded call on one backend: YARP's transformer for it, holding the target URL and the backend's
/// credential. Strips every client credential, hop-by-hop and forwarding header (<see cref="RequestHygiene"/>), adds the
/// backend's, holds back a 401 from the backend so the caller can refresh the credential and retry once, holds back a
/// status that fails over (429, the configured 5xx) while another backend may still take the call, so the client never
/// sees it, and strips the upstream's host-level response headers (cookies, server banner, HSTS).
/// </summary>
internal sealed class UpstreamCall : HttpTransformer
{
    // Headers of the upstream's answer that are about the upstream's own host or software, not the API call: its cookies
    // (the client's Cookie is never forwarded, so they could only track), its server banner, and browser policies it
    // would otherwise set for the gateway's host name (HSTS, reporting endpoints, site data clearing).
    private static readonly FrozenSet<string> StrippedResponseHeaders = FrozenSet.Create(StringComparer.OrdinalIgnoreCase,
        "Set-Cookie", "Set-Cookie2", "Server", "X-Powered-By", "X-AspNet-Version", "X-AspNetMvc-Version", "X-SourceFiles", "Via",
        "Strict-Transport-Security", "Public-Key-Pins", "Public-Key-Pins-Report-Only", "Expect-CT", "Report-To", "Reporting-Endpoints",
        "NEL", "Clear-Site-Data");

    private readonly Backends.Backend _backend;
    private readonly Uri _target;
    private readonly string? _credential;
    private readonly IReadOnlySet<int>? _holdBack;
    private readonly DateTimeOffset _now;

    /// <param name="backend">The backend this attempt goes to.</param>
    /// <param name="target">The URL on it.</param>
    /// <param name="credential">Its credential (secret or token), or null.</param>
    /// <param name="holdBack">Statuses to keep from the client because the call will fail over; null on the last possible attempt.</param>
    /// <param name="now">The time the attempt starts, for the backend's rate-limit headers.</param>
    public UpstreamCall(Backends.Backend backend, Uri target, string? credential, IReadOnlySet<int>? holdBack, DateTimeOffset now)
    {
        _backend = backend;
        _target = target;
        _credential = credential;
        _holdBack = holdBack;
        _now = now;
    }

    /// <summary>The upstream answered 401 to the gateway's credential; its body was not sent to the client.</summary>
    public bool CredentialRejected { get; private set; }

    /// <summary>The upstream answered a status that fails over; its answer was not sent to the client.</summary>
    public bool HeldBack { get; private set; }

    /// <summary>The upstream's status code, once it answered.</summary>
    public int? UpstreamStatus { get; private set; }

    /// <summary>How long a 429 or 503 asked the gateway to stay away (<c>retry-after-ms</c>, else <c>Retry-After</c>).</summary>
    public TimeSpan? RetryAfter { get; private set; }

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken).ConfigureAwait(false);
        var headers = proxyRequest.Headers;
        // RFC 9110 7.6.1: what the client names in Connection was meant for this hop only (YARP drops Connection itself).
        foreach (var option in RequestHygiene.ConnectionOptions(httpContext.Request.Headers.Connection))
        {
            headers.Remove(option);
            proxyRequest.Content?.Headers.Remove(option);
        }
        // One at a time (a header collection cannot change while it is enumerated): a request carries one or two of them
        // (its key), so a few short walks cost less than a list per call.
        while (FirstStripped(headers) is { } name)
        {
            if (!headers.Remove(name))
            {
                break;
            }
        }
        headers.Remove(_backend.AuthHeader);
        headers.Host = null;
        if (_credential is not null)
        {
            headers.TryAddWithoutValidation(_backend.AuthHeader, _backend.AuthHeaderValue(_credential));
        }
        proxyRequest.RequestUri = _target;
    }

    private static string? FirstStripped(HttpRequestHeaders headers)
    {
        foreach (var header in headers.NonValidated)
        {
            if (RequestHygiene.IsStrippedHeader(header.Key))
            {
                return header.Key;
            }
        }
        return null;
    }

    public override ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        UpstreamStatus = proxyResponse is null ? null : (int)proxyResponse.StatusCode;
        if (proxyResponse is null)
        {
            return TransformAnswerAsync(httpContext, proxyResponse, cancellationToken);
        }
        _backend.ObserveRoom(proxyResponse, _now);
        if (proxyResponse.StatusCode is HttpStatusCode.TooManyRequests or HttpStatusCode.ServiceUnavailable)
        {
            RetryAfter = ReadRetryAfter(proxyResponse, _now);
        }
        if (proxyResponse.StatusCode == HttpStatusCode.Unauthorized && _credential is not null)
        {
            // Some providers echo part of the rejected key in this body; it is never passed on.
            CredentialRejected = true;
            return ValueTask.FromResult(false);
        }
        if (_holdBack is not null && _holdBack.Contains((int)proxyResponse.StatusCode))
        {
            HeldBack = true;
            return ValueTask.FromResult(false);
        }
        return TransformAnswerAsync(httpContext, proxyResponse, cancellationToken);
    }

    private async ValueTask<bool> TransformAnswerAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        var headers = httpContext.Response.Headers;
        var connection = proxyResponse is not null && proxyResponse.Headers.NonValidated.TryGetValues("Connection", out var values) ? values.ToArray() : null;
        // The gateway's own headers (request id, RateLimit) are set before the answer is copied; Connection cannot name them
        // away. Only an answer with Connection options needs them listed.
        var own = connection is null ? null : new HashSet<string>(headers.Keys, StringComparer.OrdinalIgnoreCase);
        var forward = await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken).ConfigureAwait(false);
        foreach (var option in RequestHygiene.ConnectionOptions(connection))
        {
            if (!own!.Contains(option))
            {
                headers.Remove(option);
            }
        }
        // The upstream's CORS grants (some providers answer 'Access-Control-Allow-Origin: *') are not the gateway's:
        // CrossOrigin puts the upstream's configured policy on instead, or nothing. Only what the upstream sent can be
        // among them, so its headers are walked (struct enumerators), not the response's dictionary (a boxed one).
        if (proxyResponse is not null)
        {
            RemoveStripped(headers, proxyResponse.Headers.NonValidated);
            RemoveStripped(headers, proxyResponse.Content.Headers.NonValidated);
        }
        headers.XContentTypeOptions = "nosniff";
        return forward;
    }

    private static void RemoveStripped(IHeaderDictionary headers, HttpHeadersNonValidated upstream)
    {
        foreach (var header in upstream)
        {
            if (StrippedResponseHeaders.Contains(header.Key) || header.Key.StartsWith("Access-Control-", StringComparison.OrdinalIgnoreCase))
            {
                headers.Remove(header.Key);
            }
        }
    }

    // Azure OpenAI sends retry-after-ms (and x-ms-retry-after-ms) next to Retry-After; the finer one wins.
    private static TimeSpan? ReadRetryAfter(HttpResponseMessage response, DateTimeOffset now)
    {
        foreach (var name in (ReadOnlySpan<string>)["retry-after-ms", "x-ms-retry-after-ms"])
        {
            if (response.Headers.TryGetValues(name, out var values) && double.TryParse(values.FirstOrDefault(),
                System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var ms) && ms > 0)
            {
                return TimeSpan.FromMilliseconds(Math.Min(ms, TimeSpan.FromDays(2).TotalMilliseconds));
            }
        }
        return response.Headers.RetryAfter switch
        {
            { Delta: { } delta } when delta > TimeSpan.Zero => delta,
            { Date: { } date } when date > now => date - now,
            _ => null,
        };
    }
}
