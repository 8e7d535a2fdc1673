using System.Collections.Frozen;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;
using Microsoft.Net.Http.Headers;

namespace FuncProxy.Proxying;

/// <summary>
/// What of the client's request may reach an upstream, decided by class (SECURITY.md, "Forwarding"):
/// <list type="bullet">
/// <item>Methods: the ones LLM and other HTTP APIs use (<see cref="AllowedMethods"/>). TRACE would echo the provider
/// credential the gateway attaches, CONNECT asks for a tunnel, and extension methods (WebDAV and the like) have no place
/// in these APIs: all get 405 with <c>Allow</c>.</item>
/// <item>Hop-by-hop headers, those YARP knows and those the client names in <c>Connection</c> (RFC 9110 7.6.1), are
/// removed. A <c>Connection</c> that names a header describing the message itself (<c>Content-*</c>, <c>Host</c>,
/// <c>Transfer-Encoding</c>) is refused with 400: no conforming client sends one.</item>
/// <item>Headers an upstream might believe as the gateway's own word about the client (forwarding, client IP, client
/// certificate, platform identity, URL and method overrides) are removed: the gateway forwards none of them, so the
/// upstream never sees a claim the client made up.</item>
/// </list>
/// </summary>
internal static class RequestHygiene
{
    /// <summary>The methods forwarded; the value of <c>Allow</c> on a 405.</summary>
    public const string AllowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

    private static readonly FrozenSet<string> Methods = FrozenSet.Create(StringComparer.Ordinal,
        HttpMethods.Get, HttpMethods.Head, HttpMethods.Post, HttpMethods.Put, HttpMethods.Patch, HttpMethods.Delete, HttpMethods.Options);

    // Never forwarded, whatever their value: client credentials (the upstream's own is set by the gateway) and claims
    // about the client or the original request that only a trusted proxy may make.
    private static readonly FrozenSet<string> StrippedHeaders = FrozenSet.Create(StringComparer.OrdinalIgnoreCase,
        "Authorization", "x-api-key", "api-key", "Proxy-Authorization", "X-Admin-Key", "Cookie",
        "Forwarded", "X-Real-IP", "X-Client-IP", "Client-IP", "X-Cluster-Client-IP", "True-Client-IP", "CF-Connecting-IP",
        "Fastly-Client-IP", "X-ProxyUser-Ip", "X-Host", "X-Rewrite-URL", "X-HTTP-Method-Override", "X-HTTP-Method",
        "X-Method-Override", "Ssl-Client-Cert", "Client-Cert", "Client-Cert-Chain",
        // Usage is read from the response as it streams; a compressed body could not be read, so ask for identity.
        "Accept-Encoding");

    private static readonly string[] StrippedPrefixes =
    [
        "X-Forwarded-", // -For, -Host, -Proto, -Prefix, -Port, -Server, -Scheme, -Uri, -Ssl, -Client-Cert, ...
        "X-Original-", // -For, -Host, -Proto, -URL, -Method (ASP.NET Core's ForwardedHeaders, IIS rewrite)
        "X-MS-CLIENT-PRINCIPAL", // App Service authentication: its upstreams believe these
        "X-ARR-", // X-ARR-ClientCert, X-ARR-SSL
        "X-SSL-", "X-Client-Cert", "X-Client-Verify", "X-Client-DN",
    ];

    // A Connection option naming one of these would take the message's own description with it.
    private static readonly FrozenSet<string> UnremovableHeaders = FrozenSet.Create(StringComparer.OrdinalIgnoreCase,
        HeaderNames.Host, HeaderNames.TransferEncoding, HeaderNames.ContentLength, HeaderNames.ContentType,
        HeaderNames.ContentEncoding, HeaderNames.ContentRange, HeaderNames.ContentLanguage, HeaderNames.ContentLocation,
        HeaderNames.ContentDisposition, HeaderNames.ContentMD5);

    /// <summary>True when the gateway forwards this method.</summary>
    public static bool IsAllowedMethod(string method) => Methods.Contains(method);

    /// <summary>True when a request header of this name is never forwarded.</summary>
    public static bool IsStrippedHeader(string name)
    {
        if (StrippedHeaders.Contains(name))
        {
            return true;
        }
        foreach (var prefix in StrippedPrefixes)
        {
            if (name.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>False when the client's <c>Connection</c> names a header that describes the message itself.</summary>
    public static bool HasRemovableConnectionOptions(IHeaderDictionary headers)
    {
        foreach (var option in ConnectionOptions(headers[HeaderNames.Connection]))
        {
            if (UnremovableHeaders.Contains(option))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>The header names listed in <c>Connection</c> field values (comma-separated, any number of fields).</summary>
    public static IEnumerable<string> ConnectionOptions(StringValues connection) =>
        // Nearly every call has no Connection options: no iterator is allocated for it (three look-ups per call).
        StringValues.IsNullOrEmpty(connection) ? [] : SplitConnectionOptions(connection);

    private static IEnumerable<string> SplitConnectionOptions(StringValues connection)
    {
        foreach (var value in connection)
        {
            if (string.IsNullOrEmpty(value))
            {
                continue;
            }
            foreach (var option in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                yield return option;
            }
        }
    }
}
