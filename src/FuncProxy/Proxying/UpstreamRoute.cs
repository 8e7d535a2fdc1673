using System.Text;
using Yarp.ReverseProxy.Forwarder;

namespace FuncProxy.Proxying;

/// <summary>A configured upstream, ready to forward to: its base URL, credential and limits.</summary>
public sealed class UpstreamRoute
{
    internal UpstreamRoute(string name, UpstreamOptions options, ProxyOptions defaults)
    {
        Name = name;
        var baseUrl = options.BaseUrl ?? throw new ArgumentException($"Upstream '{name}' has no BaseUrl.", nameof(options));
        Origin = baseUrl.GetLeftPart(UriPartial.Authority);
        BasePath = baseUrl.AbsolutePath.TrimEnd('/');
        BaseUrl = new Uri(Origin + BasePath);
        SecretName = string.IsNullOrWhiteSpace(options.SecretName) ? null : options.SecretName;
        AuthHeader = options.AuthHeader;
        AuthScheme = options.EffectiveAuthScheme;
        MaxRequestBodyBytes = options.MaxRequestBodyBytes ?? defaults.MaxRequestBodyBytes;
        RequestConfig = new ForwarderRequestConfig { ActivityTimeout = options.Timeout ?? defaults.UpstreamTimeout };
    }

    public string Name { get; }

    /// <summary>Scheme, host and port: every forwarded request goes here and nowhere else.</summary>
    public string Origin { get; }

    /// <summary>The base path without a trailing slash ("" for the root); forwarded paths stay below it.</summary>
    public string BasePath { get; }

    public Uri BaseUrl { get; }
    public string? SecretName { get; }
    public string AuthHeader { get; }
    public string AuthScheme { get; }
    public long MaxRequestBodyBytes { get; }
    public ForwarderRequestConfig RequestConfig { get; }

    /// <summary>
    /// The upstream URL for a client path (the part after <c>/api/{upstream}/</c>, as routing decoded it) and raw query.
    /// Refuses dot segments (also "..;x", ".. " and look-alike dots), backslashes, encoded slashes or dots, control
    /// characters and anything that would leave the base URL, so the gateway is never an open proxy.
    /// </summary>
    public bool TryBuildTarget(string? path, string? query, out Uri target)
    {
        target = BaseUrl;
        var builder = new StringBuilder(Origin.Length + BasePath.Length + (path?.Length ?? 0) + (query?.Length ?? 0) + 16);
        builder.Append(Origin).Append(BasePath);
        if (!string.IsNullOrEmpty(path))
        {
            var segments = path.Split('/');
            for (var i = 0; i < segments.Length; i++)
            {
                var segment = segments[i];
                if (!IsSafeSegment(segment, isLast: i == segments.Length - 1))
                {
                    return false;
                }
                builder.Append('/');
                AppendEscaped(builder, segment);
            }
        }
        if (!string.IsNullOrEmpty(query))
        {
            if (query[0] != '?' || query.Contains('#', StringComparison.Ordinal) || query.Any(char.IsControl))
            {
                return false;
            }
            builder.Append(query);
        }
        if (!Uri.TryCreate(builder.ToString(), UriKind.Absolute, out var uri))
        {
            return false;
        }
        // Belt and braces: whatever the string said, the parsed URL must sit on the configured origin and below its path.
        var staysHome = string.Equals(uri.GetLeftPart(UriPartial.Authority), Origin, StringComparison.OrdinalIgnoreCase)
            && (uri.AbsolutePath == BasePath || uri.AbsolutePath == BasePath + "/" || uri.AbsolutePath.StartsWith(BasePath + "/", StringComparison.Ordinal) || BasePath.Length == 0);
        if (!staysHome)
        {
            return false;
        }
        target = uri;
        return true;
    }

    private static readonly System.Buffers.SearchValues<char> DotLike = System.Buffers.SearchValues.Create(". \uFF0E\u2024\uFE52");

    private static bool IsSafeSegment(string segment, bool isLast)
    {
        if (segment.Length == 0)
        {
            return isLast; // a trailing slash is fine; "//" inside a path is not
        }
        // A segment that some upstream could read as "." or "..": Tomcat and Spring drop path parameters (";jsessionid=x",
        // so "..;" is ".."), Windows drops trailing dots and spaces ("... " is ".."), and Unicode-normalising servers read
        // fullwidth or leader dots as ".". So: nothing before the first ';' may be only dots and spaces, nor empty.
        var beforeParameters = segment.AsSpan(0, segment.IndexOf(';', StringComparison.Ordinal) is var semicolon and >= 0 ? semicolon : segment.Length);
        if (beforeParameters.IsEmpty || !beforeParameters.ContainsAnyExcept(DotLike))
        {
            return false;
        }
        foreach (var c in segment)
        {
            if (c == '\\' || char.IsControl(c))
            {
                return false;
            }
        }
        // Routing has decoded the path once; what still looks encoded here was encoded twice, a classic traversal trick.
        return !(segment.Contains("%2e", StringComparison.OrdinalIgnoreCase)
            || segment.Contains("%2f", StringComparison.OrdinalIgnoreCase)
            || segment.Contains("%5c", StringComparison.OrdinalIgnoreCase));
    }

    // RFC 3986 pchar: unreserved, sub-delims, ':' and '@' stay as they are (APIs such as ":generateContent" use them);
    // everything else, '%' included, is percent-encoded as UTF-8.
    private static void AppendEscaped(StringBuilder builder, string segment)
    {
        const string Allowed = "-._~!$&'()*+,;=:@";
        Span<byte> utf8 = stackalloc byte[4];
        for (var i = 0; i < segment.Length; i++)
        {
            var c = segment[i];
            if (char.IsAsciiLetterOrDigit(c) || Allowed.Contains(c, StringComparison.Ordinal))
            {
                builder.Append(c);
                continue;
            }
            var length = char.IsHighSurrogate(c) && i + 1 < segment.Length
                ? Encoding.UTF8.GetBytes(segment.AsSpan(i++, 2), utf8)
                : Encoding.UTF8.GetBytes(segment.AsSpan(i, 1), utf8);
            for (var b = 0; b < length; b++)
            {
                builder.Append('%').Append(utf8[b].ToString("X2", System.Globalization.CultureInfo.InvariantCulture));
            }
        }
    }
}
