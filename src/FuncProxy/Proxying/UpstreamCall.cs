using System.Collections.Frozen;
using System.Net;
using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;

namespace FuncProxy.Proxying;

/// <summary>
/// One forwarded call: YARP's transformer for it, holding the target URL and the provider credential. Strips every client
/// credential, hop-by-hop and forwarding header (<see cref="RequestHygiene"/>), adds the provider's, holds back a 401 from
/// the upstream so the caller can refresh the credential and retry once, and strips the upstream's host-level response
/// headers (cookies, server banner, HSTS).
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

    private readonly UpstreamRoute _route;
    private readonly Uri _target;
    private readonly string? _credential;

    public UpstreamCall(UpstreamRoute route, Uri target, string? credential)
    {
        _route = route;
        _target = target;
        _credential = credential;
    }

    /// <summary>The upstream answered 401 to the gateway's credential; its body was not sent to the client.</summary>
    public bool CredentialRejected { get; private set; }

    /// <summary>The upstream's status code, once it answered.</summary>
    public int? UpstreamStatus { get; private set; }

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
        foreach (var name in headers.NonValidated.Select(h => h.Key).Where(RequestHygiene.IsStrippedHeader).ToList())
        {
            headers.Remove(name);
        }
        headers.Remove(_route.AuthHeader);
        headers.Host = null;
        if (_credential is not null)
        {
            var value = _route.AuthScheme.Length == 0 ? _credential : string.Concat(_route.AuthScheme, " ", _credential);
            headers.TryAddWithoutValidation(_route.AuthHeader, value);
        }
        proxyRequest.RequestUri = _target;
    }

    public override ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        UpstreamStatus = proxyResponse is null ? null : (int)proxyResponse.StatusCode;
        if (proxyResponse?.StatusCode == HttpStatusCode.Unauthorized && _credential is not null)
        {
            // Some providers echo part of the rejected key in this body; it is never passed on.
            CredentialRejected = true;
            return ValueTask.FromResult(false);
        }
        return TransformAnswerAsync(httpContext, proxyResponse, cancellationToken);
    }

    private async ValueTask<bool> TransformAnswerAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        var headers = httpContext.Response.Headers;
        // The gateway's own headers (request id, RateLimit) are set before the answer is copied; Connection cannot name them away.
        var own = new HashSet<string>(headers.Keys, StringComparer.OrdinalIgnoreCase);
        var forward = await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken).ConfigureAwait(false);
        if (proxyResponse is not null)
        {
            foreach (var option in RequestHygiene.ConnectionOptions(proxyResponse.Headers.NonValidated.TryGetValues("Connection", out var values) ? values.ToArray() : default))
            {
                if (!own.Contains(option))
                {
                    headers.Remove(option);
                }
            }
        }
        foreach (var name in headers.Keys.Where(StrippedResponseHeaders.Contains).ToList())
        {
            headers.Remove(name);
        }
        headers.XContentTypeOptions = "nosniff";
        return forward;
    }
}
