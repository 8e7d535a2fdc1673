using System.Globalization;
using System.Text;

namespace FuncProxy.Proxying;

/// <summary>
/// A client's path below <c>/api/{upstream}/</c> and its raw query, checked once: no dot segments (also "..;x", ".. " and
/// look-alike dots), backslashes, encoded slashes or dots, control characters. Each backend appends it to its own base URL (<see cref="Backends.Backend.TryBuildTarget"/>).
/// </summary>
public sealed class UpstreamPath
{
    private string[]? _segments;

    private UpstreamPath(string query, string path)
    {
        Query = query;
        Path = path;
    }

    /// <summary>The path as the client sent it (already checked), the key of <see cref="Backends.Backend.TryBuildTarget"/>'s cache.</summary>
    internal string Path { get; }

    /// <summary>The decoded path segments (empty for the base URL itself; a trailing slash is a last empty segment).</summary>
    public IReadOnlyList<string> Segments => _segments ??= Path.Length == 0 ? [] : Path.Split('/');

    /// <summary>The raw query with its leading <c>?</c>, or empty.</summary>
    public string Query { get; }

    /// <param name="path">The <c>{**path}</c> route value, as routing decoded it.</param>
    /// <param name="query">The raw query string.</param>
    /// <param name="parsed">The checked path, when the result is true.</param>
    public static bool TryParse(string? path, string? query, out UpstreamPath parsed)
    {
        parsed = null!;
        // Checked segment by segment in place; the segments themselves are split only when a target URL is built (once per
        // path and backend: Backend.TryBuildTarget caches it) or a deployment is looked for.
        var rest = path.AsSpan();
        while (!rest.IsEmpty)
        {
            var slash = rest.IndexOf('/');
            if (!IsSafeSegment(slash < 0 ? rest : rest[..slash], isLast: slash < 0))
            {
                return false;
            }
            if (slash < 0)
            {
                break;
            }
            rest = rest[(slash + 1)..];
            if (rest.IsEmpty)
            {
                break; // a trailing slash: a last empty segment
            }
        }
        query ??= "";
        if (query.Length > 0 && (query[0] != '?' || query.Contains('#', StringComparison.Ordinal) || query.Any(char.IsControl)))
        {
            return false;
        }
        parsed = new UpstreamPath(query, path ?? "");
        return true;
    }

    /// <summary>
    /// The URL below <paramref name="origin"/> + <paramref name="basePath"/>, with <paramref name="segments"/> percent-encoded.
    /// False when the result would leave the base URL, so the gateway is never an open proxy.
    /// </summary>
    internal static bool TryBuild(string origin, string basePath, IReadOnlyList<string> segments, string query, out Uri target)
    {
        target = null!;
        var builder = new StringBuilder(origin.Length + basePath.Length + query.Length + 64);
        builder.Append(origin).Append(basePath);
        foreach (var segment in segments)
        {
            builder.Append('/');
            AppendEscaped(builder, segment);
        }
        builder.Append(query);
        if (!Uri.TryCreate(builder.ToString(), UriKind.Absolute, out var uri))
        {
            return false;
        }
        // Belt and braces: whatever the string said, the parsed URL must sit on the configured origin and below its path.
        var staysHome = string.Equals(uri.GetLeftPart(UriPartial.Authority), origin, StringComparison.OrdinalIgnoreCase)
            && (uri.AbsolutePath == basePath || uri.AbsolutePath == basePath + "/" || uri.AbsolutePath.StartsWith(basePath + "/", StringComparison.Ordinal) || basePath.Length == 0);
        if (!staysHome)
        {
            return false;
        }
        target = uri;
        return true;
    }

    private static readonly System.Buffers.SearchValues<char> DotLike = System.Buffers.SearchValues.Create(". \uFF0E\u2024\uFE52");

    private static bool IsSafeSegment(ReadOnlySpan<char> segment, bool isLast)
    {
        if (segment.Length == 0)
        {
            return isLast; // a trailing slash is fine; "//" inside a path is not
        }
        // A segment that some upstream could read as "." or "..": Tomcat and Spring drop path parameters (";jsessionid=x",
        // so "..;" is ".."), Windows drops trailing dots and spaces ("... " is ".."), and Unicode-normalising servers read
        // fullwidth or leader dots as ".". So: nothing before the first ';' may be only dots and spaces, nor empty.
        var beforeParameters = segment[..(segment.IndexOf(';') is var semicolon and >= 0 ? semicolon : segment.Length)];
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
        // (Most segments hold no '%' at all: one vectorised search settles them.)
        return !segment.Contains('%') || !(segment.Contains("%2e", StringComparison.OrdinalIgnoreCase)
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
                builder.Append('%').Append(utf8[b].ToString("X2", CultureInfo.InvariantCulture));
            }
        }
    }
}
