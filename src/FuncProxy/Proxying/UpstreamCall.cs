using System.Net;
using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;

namespace FuncProxy.Proxying;

/// <summary>
/// One forwarded call: YARP's transformer for it, holding the target URL and the provider credential. Strips every client
/// credential and hop-by-hop header, adds the provider's, and holds back a 401 from the upstream so the caller can refresh
/// the credential and retry once.
/// </summary>
internal sealed class UpstreamCall : HttpTransformer
{
    // Headers the client may send that must never reach the provider: its own credentials, the admin key, cookies, and
    // forwarding headers it could spoof. The upstream's own credential header is removed too, then set by the gateway.
    private static readonly string[] StrippedRequestHeaders =
    [
        "Authorization", "x-api-key", "api-key", "Proxy-Authorization", "X-Admin-Key", "Cookie",
        "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Prefix", "X-Real-IP",
        // Usage is read from the response as it streams; a compressed body could not be read, so ask for identity.
        "Accept-Encoding",
    ];

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
        foreach (var name in StrippedRequestHeaders)
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
        return base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
    }
}
