using System.Collections.Frozen;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;

namespace FuncProxy.Admin.OperatorConsole;

/// <summary>
/// The operator console: static files embedded in this assembly (so the Kestrel and the Functions host serve the same
/// bytes) under <c>/api/admin/console/</c>. The page talks only to the management API beside it, with the credential the
/// operator types in; the files themselves hold nothing secret and need no credential. Every answer carries a strict
/// Content-Security-Policy (no inline script or style, no eval, nothing from another origin) and is revalidated by ETag.
/// </summary>
internal sealed class ConsoleAssets
{
    public const string Segment = "console";

    /// <summary>The policy of every console response; <c>connect-src 'self'</c> keeps the page on this gateway's API.</summary>
    public const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

    private const string ResourcePrefix = "FuncProxy.Console/";
    private const string IndexFile = "index.html";

    private static readonly Lazy<ConsoleAssets> Embedded = new(() => Load(typeof(ConsoleAssets).Assembly));

    private static readonly FrozenDictionary<string, string> ContentTypes = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        [".html"] = "text/html; charset=utf-8",
        [".js"] = "text/javascript; charset=utf-8",
        [".css"] = "text/css; charset=utf-8",
        [".svg"] = "image/svg+xml",
        [".png"] = "image/png",
    }.ToFrozenDictionary(StringComparer.Ordinal);

    private readonly FrozenDictionary<string, Asset> _assets;

    private ConsoleAssets(FrozenDictionary<string, Asset> assets) => _assets = assets;

    /// <summary>The console embedded in the engine assembly.</summary>
    public static ConsoleAssets Instance => Embedded.Value;

    /// <summary>File names served, e.g. <c>app.js</c>.</summary>
    public IEnumerable<string> Names => _assets.Keys;

    /// <summary>Whether <paramref name="segments"/> (the management API path, split) is the console's.</summary>
    public static bool Handles(string[] segments) => segments is [Segment, ..];

    /// <summary>Answers a console request. <paramref name="segments"/> starts with <see cref="Segment"/>.</summary>
    public Task ServeAsync(HttpContext context, string[] segments)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(segments);
        var response = context.Response;
        var headers = response.Headers;
        headers.ContentSecurityPolicy = ContentSecurityPolicy;
        headers.XContentTypeOptions = "nosniff";
        headers.XFrameOptions = "DENY";
        headers["Referrer-Policy"] = "no-referrer";
        headers["Cross-Origin-Opener-Policy"] = "same-origin";
        headers["Cross-Origin-Resource-Policy"] = "same-origin";

        var request = context.Request;
        if (!HttpMethods.IsGet(request.Method) && !HttpMethods.IsHead(request.Method))
        {
            return Problem.WriteAsync(context, StatusCodes.Status405MethodNotAllowed, "method_not_allowed", "Method Not Allowed",
                "The console's files accept GET.", headers: [new("Allow", "GET, HEAD")]);
        }
        // The page's relative links (app.js, console.css, ../keys) need the trailing slash: /api/admin/console -> console/.
        if (segments.Length == 1 && !(request.Path.Value ?? "").EndsWith('/'))
        {
            response.StatusCode = StatusCodes.Status308PermanentRedirect;
            headers.Location = Segment + "/";
            return Task.CompletedTask;
        }
        // Routing decoded the path, so only an exact file name matches: no directory walk is possible.
        var name = segments.Length == 1 ? IndexFile : segments.Length == 2 ? segments[1] : null;
        if (name is null || !_assets.TryGetValue(name, out var asset))
        {
            return Problem.WriteAsync(context, StatusCodes.Status404NotFound, "not_found", "Not Found", "The console has no such file.");
        }

        // no-cache: the browser keeps the file but asks each time; an unchanged file costs a 304 and no body.
        headers.CacheControl = "no-cache";
        headers.ETag = asset.ETag;
        if (request.Headers.IfNoneMatch.Any(v => v is not null && v.Split(',').Any(t => t.Trim() is var tag && (tag == asset.ETag || tag == "*"))))
        {
            response.StatusCode = StatusCodes.Status304NotModified;
            return Task.CompletedTask;
        }
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = asset.ContentType;
        response.ContentLength = asset.Content.Length;
        return HttpMethods.IsHead(request.Method) ? Task.CompletedTask : response.Body.WriteAsync(asset.Content, context.RequestAborted).AsTask();
    }

    internal static ConsoleAssets Load(System.Reflection.Assembly assembly)
    {
        var assets = new Dictionary<string, Asset>(StringComparer.Ordinal);
        foreach (var resource in assembly.GetManifestResourceNames().Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal)))
        {
            var name = resource[ResourcePrefix.Length..];
            if (!ContentTypes.TryGetValue(Path.GetExtension(name), out var type))
            {
                throw new InvalidOperationException($"The console file '{name}' has no known content type.");
            }
            using var stream = assembly.GetManifestResourceStream(resource)!;
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            var content = copy.ToArray();
            var etag = "\"" + Convert.ToBase64String(SHA256.HashData(content), 0, 16).TrimEnd('=').Replace('+', '-').Replace('/', '_') + "\"";
            assets[name] = new Asset(content, type, etag);
        }
        if (!assets.ContainsKey(IndexFile))
        {
            throw new InvalidOperationException("The console is not embedded (no index.html).");
        }
        return new ConsoleAssets(assets.ToFrozenDictionary(StringComparer.Ordinal));
    }

    private sealed record Asset(byte[] Content, string ContentType, string ETag);
}
