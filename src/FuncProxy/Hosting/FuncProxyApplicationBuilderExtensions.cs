using FuncProxy.Http;
using FuncProxy.Proxying;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Microsoft.AspNetCore.Builder;

/// <summary>The gateway's middleware for a plain ASP.NET Core host.</summary>
public static class FuncProxyApplicationBuilderExtensions
{
    /// <summary>
    /// The gateway's own limits on a request's target and header block (414/431 problem+json) and
    /// <c>X-Content-Type-Options: nosniff</c> on every response; add it first, before <see cref="FuncProxyEndpointRouteBuilderExtensions.MapFuncProxy"/>.
    /// </summary>
    public static IApplicationBuilder UseFuncProxyRequestLimits(this IApplicationBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        return app.UseMiddleware<RequestLimits>();
    }

    /// <summary>
    /// Hands a client call (<c>/api/{upstream}/...</c>) to the proxy before endpoint routing, which would otherwise match it
    /// to the same handler and allocate its route values on every call (docs/benchmarks.md, issue 11). Everything else,
    /// and <c>/api/admin/...</c> and <c>/api/health</c> in any case, goes on to routing as before. Add it after
    /// <see cref="UseFuncProxyRequestLimits"/> and before <c>UseRouting</c>.
    /// </summary>
    public static IApplicationBuilder UseFuncProxyCalls(this IApplicationBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        var services = app.ApplicationServices;
        ProxyHandler? proxy = null;
        UpstreamCatalog? catalog = null;
        return app.Use(next => context =>
        {
            catalog ??= services.GetRequiredService<UpstreamCatalog>();
            if (!TryMatchCall(context.Request.Path.Value, catalog, out var upstream, out var path))
            {
                return next(context);
            }
            return (proxy ??= services.GetRequiredService<ProxyHandler>()).HandleAsync(context, upstream, path);
        });
    }

    /// <summary>
    /// <c>/api/{upstream}/{**path}</c> as routing reads it (the path is already decoded; "api" in any case), for an upstream
    /// name that is not "admin" or "health" (those routes, and the 404 for an empty name, stay with routing). The
    /// upstream comes back as its configured name when it is one, so no string is made for it.
    /// </summary>
    internal static bool TryMatchCall(string? requestPath, UpstreamCatalog catalog, out string upstream, out string? path)
    {
        upstream = null!;
        path = null;
        const string Prefix = "/api/";
        if (requestPath is null || !requestPath.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }
        var rest = requestPath.AsSpan(Prefix.Length);
        var slash = rest.IndexOf('/');
        var name = slash < 0 ? rest : rest[..slash];
        if (name.IsEmpty || name.Equals("admin", StringComparison.OrdinalIgnoreCase) || name.Equals("health", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }
        upstream = catalog.NameOf(name) ?? name.ToString();
        path = slash < 0 ? null : requestPath[(Prefix.Length + slash + 1)..];
        return true;
    }
}
